//! "Same" 2-D convolutions (stride 1; 3×3 with padding 1, 1×1 with padding 0) on stable Rust.
//!
//! dfdx 0.13 compiles its own `conv2d` only on nightly (DESIGN.md §2), so the convolution is ours,
//! behind the small device trait [`ConvDevice`] so that layers stay device-generic. On the CPU it
//! is a custom autograd op: per image, im2col then one GEMM (the `gemm` crate), in parallel over
//! the images of the batch with rayon; the backward pass recomputes im2col instead of keeping it,
//! which keeps peak memory at one column buffer per thread (DESIGN.md §4 measured this as the
//! fastest of the approaches possible with dfdx's public API).
use dfdx::prelude::*;
use num_traits::Float;
use rayon::prelude::*;

/// A device that can run the same-padded convolutions of the flows' conditioner networks.
pub trait ConvDevice<E: Dtype>: Device<E> {
    /// Convolves `x` (batch, `CI`, H, W) with `weight` (`CO`, `CI`, K, K) plus `bias` (`CO`),
    /// stride 1 and zero padding `K / 2` ("same"), recording the backward pass on `x`'s tape.
    /// Gradients flow to `x`, `weight` and `bias`.
    fn try_conv2d_same<const K: usize, CI: Dim, CO: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, CI, H, W), E, Self, T>,
        weight: &Tensor<(CO, CI, Const<K>, Const<K>), E, Self>,
        bias: &Tensor<(CO,), E, Self>,
    ) -> Result<Tensor<(usize, CO, H, W), E, Self, T>, Self::Err>;
}

/// Shapes of one convolution, in elements.
#[derive(Clone, Copy, Debug)]
struct ConvDims {
    batch: usize,
    c_in: usize,
    c_out: usize,
    height: usize,
    width: usize,
    kernel: usize,
}

impl ConvDims {
    fn hw(&self) -> usize {
        self.height * self.width
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }
}

/// `c (m×n) = [c +] a (m×k) · b (k×n)`, each matrix given as a slice with (row stride, column
/// stride), single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
fn gemm_into<E: 'static + Copy + Float>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    accumulate: bool,
    a: &[E],
    (a_rs, a_cs): (usize, usize),
    b: &[E],
    (b_rs, b_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].iter_mut().for_each(|v| *v = E::zero());
        }
        return;
    }
    // The bounds checks that make the raw-pointer call below sound.
    assert!(c.len() >= m * n, "gemm: destination too small");
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "gemm: lhs too small"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "gemm: rhs too small"
    );
    assert!(
        std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
            || std::any::TypeId::of::<E>() == std::any::TypeId::of::<f64>(),
        "gemm: only f32 and f64 are supported"
    );
    // SAFETY: the asserts above prove that every element the kernel reads (row index < m or k,
    // column index < k or n, times the given strides) lies inside `a` and `b`, and every element
    // it writes (row-major m×n, row stride n) lies inside `c`; `c` is borrowed mutably, so it
    // does not alias `a` or `b`. gemm dispatches on the type id, checked above to be f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The columns `x` of an output row whose tap `x + dx` lies inside a row of width `w`.
fn valid_columns(w: usize, dx: isize) -> std::ops::Range<usize> {
    let start = (-dx).max(0) as usize;
    let end = (w as isize - dx).clamp(0, w as isize) as usize;
    start.min(end)..end
}

/// Unfolds one image (c_in, H, W) into the im2col matrix (c_in·K·K, H·W), zero outside the image.
fn im2col<E: Float>(d: &ConvDims, img: &[E], cols: &mut [E]) {
    let (h, w, k) = (d.height, d.width, d.kernel);
    let pad = (k / 2) as isize;
    let hw = d.hw();
    for c in 0..d.c_in {
        let plane = &img[c * hw..(c + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * hw..][..hw];
                let (dy, dx) = (ky as isize - pad, kx as isize - pad);
                let valid = valid_columns(w, dx);
                for y in 0..h {
                    let out_row = &mut row[y * w..(y + 1) * w];
                    let sy = y as isize + dy;
                    if sy < 0 || sy >= h as isize {
                        out_row.fill(E::zero());
                        continue;
                    }
                    let src_row = &plane[sy as usize * w..(sy as usize + 1) * w];
                    // Interior: one contiguous copy; only the padding columns are zeroed.
                    out_row[..valid.start].fill(E::zero());
                    out_row[valid.end..].fill(E::zero());
                    let (s0, s1) = (
                        (valid.start as isize + dx) as usize,
                        (valid.end as isize + dx) as usize,
                    );
                    out_row[valid.clone()].copy_from_slice(&src_row[s0..s1]);
                }
            }
        }
    }
}

/// Folds an im2col-shaped gradient back onto the image, adding overlapping taps.
fn col2im_add<E: Float>(d: &ConvDims, cols: &[E], img: &mut [E]) {
    let (h, w, k) = (d.height, d.width, d.kernel);
    let pad = (k / 2) as isize;
    let hw = d.hw();
    for c in 0..d.c_in {
        let plane = &mut img[c * hw..(c + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &cols[((c * k + ky) * k + kx) * hw..][..hw];
                let (dy, dx) = (ky as isize - pad, kx as isize - pad);
                let valid = valid_columns(w, dx);
                let (s0, s1) = (
                    (valid.start as isize + dx) as usize,
                    (valid.end as isize + dx) as usize,
                );
                for y in 0..h {
                    let sy = y as isize + dy;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let src = &row[y * w + valid.start..y * w + valid.end];
                    let dst = &mut plane[sy as usize * w + s0..sy as usize * w + s1];
                    dst.iter_mut().zip(src).for_each(|(a, g)| *a = *a + *g);
                }
            }
        }
    }
}

/// Forward pass over a batch: `out` (batch, c_out, H·W).
fn conv_forward<E: 'static + Float + Send + Sync>(
    d: &ConvDims,
    x: &[E],
    weight: &[E],
    bias: &[E],
) -> Vec<E> {
    let (hw, patch) = (d.hw(), d.patch());
    let mut out = vec![E::zero(); d.batch * d.c_out * hw];
    out.par_chunks_mut(d.c_out * hw)
        .zip(x.par_chunks(d.c_in * hw))
        .for_each_init(
            || vec![E::zero(); if d.kernel == 1 { 0 } else { patch * hw }],
            |cols, (o, img)| {
                for (co, row) in o.chunks_mut(hw).enumerate() {
                    row.iter_mut().for_each(|v| *v = bias[co]);
                }
                let cols: &[E] = if d.kernel == 1 {
                    img
                } else {
                    im2col(d, img, cols);
                    cols
                };
                gemm_into(
                    (d.c_out, hw, patch),
                    o,
                    true,
                    weight,
                    (patch, 1),
                    cols,
                    (hw, 1),
                );
            },
        );
    out
}

/// Images per task in the backward pass. The weight gradient is summed per chunk and the
/// chunk sums are then added in a fixed order, so results do not depend on the thread count
/// or on scheduling (training is reproducible from a seed).
const BACKWARD_CHUNK: usize = 4;

/// Backward pass: returns (grad x, grad weight, grad bias) for the output gradient `grad_out`.
fn conv_backward<E: 'static + Float + Send + Sync>(
    d: &ConvDims,
    x: &[E],
    weight: &[E],
    grad_out: &[E],
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let (hw, patch) = (d.hw(), d.patch());
    let mut grad_x = vec![E::zero(); d.batch * d.c_in * hw];
    let zeros = |n| vec![E::zero(); n];
    let partials: Vec<(Vec<E>, Vec<E>)> = grad_out
        .par_chunks(BACKWARD_CHUNK * d.c_out * hw)
        .zip(x.par_chunks(BACKWARD_CHUNK * d.c_in * hw))
        .zip(grad_x.par_chunks_mut(BACKWARD_CHUNK * d.c_in * hw))
        .map(|((go_chunk, x_chunk), gx_chunk)| {
            let scratch = if d.kernel == 1 { 0 } else { patch * hw };
            let (mut gw, mut gb) = (zeros(d.c_out * patch), zeros(d.c_out));
            let (mut cols, mut gcols) = (zeros(scratch), zeros(scratch));
            let images = go_chunk
                .chunks(d.c_out * hw)
                .zip(x_chunk.chunks(d.c_in * hw))
                .zip(gx_chunk.chunks_mut(d.c_in * hw));
            for ((go, img), gx) in images {
                for (co, row) in go.chunks(hw).enumerate() {
                    gb[co] = row.iter().fold(gb[co], |acc, v| acc + *v);
                }
                let cols_ref: &[E] = if d.kernel == 1 {
                    img
                } else {
                    im2col(d, img, &mut cols);
                    &cols
                };
                // grad weight += grad_out (c_out × hw) · colsᵀ (hw × patch)
                gemm_into(
                    (d.c_out, patch, hw),
                    &mut gw,
                    true,
                    go,
                    (hw, 1),
                    cols_ref,
                    (1, hw),
                );
                // grad cols = weightᵀ (patch × c_out) · grad_out (c_out × hw), folded onto x
                if d.kernel == 1 {
                    gemm_into(
                        (patch, hw, d.c_out),
                        gx,
                        true,
                        weight,
                        (1, patch),
                        go,
                        (hw, 1),
                    );
                } else {
                    gemm_into(
                        (patch, hw, d.c_out),
                        &mut gcols,
                        false,
                        weight,
                        (1, patch),
                        go,
                        (hw, 1),
                    );
                    col2im_add(d, &gcols, gx);
                }
            }
            (gw, gb)
        })
        .collect();
    let (mut grad_w, mut grad_b) = (zeros(d.c_out * patch), zeros(d.c_out));
    for (gw, gb) in partials {
        add_into(&mut grad_w, &gw);
        add_into(&mut grad_b, &gb);
    }
    (grad_x, grad_w, grad_b)
}

/// Copies a contiguous CPU tensor's storage (`as_vec` walks it index by index, several times
/// slower). Panics, rather than reading wrong data, if the storage is not exactly the tensor's
/// elements (a broadcast or strided view): callers make inputs contiguous first.
pub(crate) fn host_copy<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Vec<E> {
    let mut out = vec![E::default(); t.shape().num_elements()];
    t.copy_into(&mut out);
    out
}

/// Moves an intermediate's gradient out of the gradient store, leaving it empty.
///
/// Backward ops run in reverse order of the forward ops, so when an op's backward runs, every
/// consumer of its output has already added its contribution: the output's gradient is
/// complete and nothing reads it again. Taking it (instead of copying) frees it at once, which
/// keeps dfdx from holding every intermediate gradient until the end of the backward pass.
/// (The outputs of these ops are internal to the model, never tensors a caller asks for the
/// gradient of.)
pub(crate) fn take_grad<E>(g: &mut Vec<E>) -> Vec<E> {
    std::mem::take(g)
}

fn add_into<E: Float>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(a, b)| *a = *a + *b);
}

macro_rules! cpu_conv_impl {
    ($E:ty) => {
        impl ConvDevice<$E> for Cpu {
            fn try_conv2d_same<
                const K: usize,
                CI: Dim,
                CO: Dim,
                H: Dim,
                W: Dim,
                T: Tape<$E, Self>,
            >(
                x: Tensor<(usize, CI, H, W), $E, Self, T>,
                weight: &Tensor<(CO, CI, Const<K>, Const<K>), $E, Self>,
                bias: &Tensor<(CO,), $E, Self>,
            ) -> Result<Tensor<(usize, CO, H, W), $E, Self, T>, Self::Err> {
                assert!(
                    K % 2 == 1,
                    "same-padded convolution needs an odd kernel size, got {K}"
                );
                // Gradient buffers follow storage order: make the input contiguous (a no-op if it is).
                let shape = *x.shape();
                let x = x.try_reshape_like(&shape)?;
                let (x, mut tape) = x.split_tape();
                let (batch, ci, h, w) = shape;
                let co = weight.shape().0;
                let dims = ConvDims {
                    batch,
                    c_in: ci.size(),
                    c_out: co.size(),
                    height: h.size(),
                    width: w.size(),
                    kernel: K,
                };
                let (x_vec, w_vec, b_vec) = (host_copy(&x), host_copy(weight), host_copy(bias));
                let out = conv_forward(&dims, &x_vec, &w_vec, &b_vec);
                let dev = x.device().clone();
                let out = dev.tensor_from_vec(out, (batch, co, h, w));
                if T::OWNS_TAPE {
                    // Ghosts (ids and shapes, no data): the backward pass keeps only the host
                    // copies of x and the weight.
                    let (out_ref, x_ref) = (out.ghost(), x.ghost());
                    let (weight, bias) = (weight.ghost(), bias.ghost());
                    tape.add_backward_op(move |grads| {
                        let grad_out = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let (gx, gw, gb) = conv_backward(&dims, &x_vec, &w_vec, &grad_out);
                        add_into(grads.get_or_alloc_mut(&x_ref)?, &gx);
                        add_into(grads.get_or_alloc_mut(&weight)?, &gw);
                        add_into(grads.get_or_alloc_mut(&bias)?, &gb);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }
        }
    };
}

cpu_conv_impl!(f32);
cpu_conv_impl!(f64);

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution by definition, the reference for the im2col + GEMM path.
    fn naive(d: &ConvDims, x: &[f64], wt: &[f64], b: &[f64]) -> Vec<f64> {
        let (h, w, k) = (d.height as isize, d.width as isize, d.kernel as isize);
        let mut out = vec![0.0; d.batch * d.c_out * d.hw()];
        for n in 0..d.batch {
            for o in 0..d.c_out {
                for y in 0..h {
                    for xx in 0..w {
                        let mut acc = b[o];
                        for c in 0..d.c_in {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (sy, sx) = (y + ky - k / 2, xx + kx - k / 2);
                                    if sy < 0 || sy >= h || sx < 0 || sx >= w {
                                        continue;
                                    }
                                    let xi = ((n * d.c_in + c) * d.height + sy as usize) * d.width
                                        + sx as usize;
                                    let wi = ((o * d.c_in + c) * d.kernel + ky as usize) * d.kernel
                                        + kx as usize;
                                    acc += x[xi] * wt[wi];
                                }
                            }
                        }
                        out[((n * d.c_out + o) * d.height + y as usize) * d.width + xx as usize] =
                            acc;
                    }
                }
            }
        }
        out
    }

    fn check<const K: usize>() {
        let dev: Cpu = Default::default();
        let d = ConvDims {
            batch: 3,
            c_in: 2,
            c_out: 3,
            height: 5,
            width: 4,
            kernel: K,
        };
        let x = dev.sample_normal_like(&(3, Const::<2>, Const::<5>, Const::<4>));
        let wt: Tensor<(Const<3>, Const<2>, Const<K>, Const<K>), f64, Cpu> = dev.sample_normal();
        let b: Tensor<(Const<3>,), f64, Cpu> = dev.sample_normal();
        let r: Tensor<(usize, Const<3>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const::<3>, Const::<5>, Const::<4>));
        let out = Cpu::try_conv2d_same(x.leaky_trace(), &wt, &b).unwrap();
        let expect = naive(&d, &x.as_vec(), &wt.as_vec(), &b.as_vec());
        for (a, e) in out.as_vec().iter().zip(&expect) {
            assert!((a - e).abs() < 1e-12, "forward {a} vs {e}");
        }
        // loss = sum(out * r): its gradient by central differences on each input.
        let grads = (out * r.clone()).sum().backward();
        let loss = |x: &[f64], wt: &[f64], b: &[f64]| -> f64 {
            naive(&d, x, wt, b)
                .iter()
                .zip(r.as_vec())
                .map(|(o, r)| o * r)
                .sum()
        };
        let (xv, wv, bv) = (x.as_vec(), wt.as_vec(), b.as_vec());
        let eps = 1e-6;
        let numeric = |which: usize, i: usize| {
            let (mut p, mut m) = (
                [xv.clone(), wv.clone(), bv.clone()],
                [xv.clone(), wv.clone(), bv.clone()],
            );
            p[which][i] += eps;
            m[which][i] -= eps;
            (loss(&p[0], &p[1], &p[2]) - loss(&m[0], &m[1], &m[2])) / (2.0 * eps)
        };
        for (which, g) in [
            grads.get(&x).as_vec(),
            grads.get(&wt).as_vec(),
            grads.get(&b).as_vec(),
        ]
        .iter()
        .enumerate()
        {
            for (i, gi) in g.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (gi - n).abs() < 1e-6 * (1.0 + n.abs()),
                    "grad {which}[{i}]: {gi} vs {n}"
                );
            }
        }
    }

    #[test]
    fn conv3x3_matches_direct_convolution_values_and_gradients() {
        check::<3>();
    }

    #[test]
    fn conv1x1_matches_direct_convolution_values_and_gradients() {
        check::<1>();
    }
}
