//! Dense single-threaded matrix products and sums: the inner loops of the CPU convolutions.
use num_traits::Float;
use std::any::TypeId;

/// `c (m×n) = [c +] a (m×k) · b (k×n)`, each matrix given as a slice with (row stride, column
/// stride), single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into<E: 'static + Copy + Float>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    (c_rs, c_cs): (usize, usize),
    accumulate: bool,
    a: &[E],
    (a_rs, a_cs): (usize, usize),
    b: &[E],
    (b_rs, b_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // The bounds checks that make the raw-pointer call below sound.
    assert!(
        (m - 1) * c_rs + (n - 1) * c_cs < c.len(),
        "gemm: destination too small"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                (0..n).for_each(|j| c[i * c_rs + j * c_cs] = E::zero());
            }
        }
        return;
    }
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "gemm: lhs too small"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "gemm: rhs too small"
    );
    // The `gemm` crate's entry point, for f32 and f64 only: its crates for complex numbers and
    // f16, which we never call, took 17 of the 52 s of a dependent crate's cold build. As
    // `gemm::gemm` does, a column-major destination is computed as its transpose (the kernels
    // prefer row-major), so the same kernels run on the same data.
    let (m, n, c_cs, c_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) = if c_cs < c_rs {
        (n, m, c_rs, c_cs, b, b_rs, b_cs, a, a_rs, a_cs)
    } else {
        (m, n, c_cs, c_rs, a, a_cs, a_rs, b, b_cs, b_rs)
    };
    let one = E::one();
    // SAFETY: the asserts above prove that every element the kernel reads (row index < m or k,
    // column index < k or n, times the given strides) lies inside `a` and `b`, and every element
    // it writes (likewise with c's strides) lies inside `c`; `c` is borrowed mutably, so it
    // does not alias `a` or `b`. Each branch runs the kernel of E's own type (checked by type
    // id), so the casts keep the element type.
    macro_rules! call {
        ($T:ty, $kernel:expr) => {
            unsafe {
                $kernel(
                    m,
                    n,
                    k,
                    c.as_mut_ptr() as *mut $T,
                    c_cs as isize,
                    c_rs as isize,
                    accumulate,
                    lhs.as_ptr() as *const $T,
                    lhs_cs as isize,
                    lhs_rs as isize,
                    rhs.as_ptr() as *const $T,
                    rhs_cs as isize,
                    rhs_rs as isize,
                    *(&one as *const E as *const $T),
                    *(&one as *const E as *const $T),
                    false,
                    false,
                    false,
                    gemm_common::Parallelism::None,
                )
            }
        };
    }
    if TypeId::of::<E>() == TypeId::of::<f32>() {
        call!(f32, gemm_f32::gemm::f32::get_gemm_fn())
    } else if TypeId::of::<E>() == TypeId::of::<f64>() {
        call!(f64, gemm_f64::gemm::f64::get_gemm_fn())
    } else {
        unreachable!("gemm: the CPU kernels run in f32 and f64 only")
    }
}

simd_kernel! {
    /// The sum of `v` in 16 interleaved partial sums: a single running sum is one dependent
    /// add per element (latency-bound, and not vectorizable without reassociation), and the
    /// bias gradients sum every output-gradient plane.
    pub(crate) fn sum<E: Kernel>(v: &[E]) -> E {
        let mut lanes = [E::zero(); 16];
        let chunks = v.chunks_exact(16);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                *l = *l + *x;
            }
        }
        let total = lanes.iter().fold(E::zero(), |a, l| a + *l);
        tail.iter().fold(total, |a, x| a + *x)
    }
}
