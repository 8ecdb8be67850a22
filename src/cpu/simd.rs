//! Run-time dispatch of the CPU kernels to AVX2 + FMA code where the CPU has them.
//!
//! A library cannot be compiled for its users' CPUs (`-C target-cpu=native` would make binaries
//! that crash on older ones), so the elementwise kernels are compiled twice: for the baseline
//! x86-64 (SSE2, 4 floats per instruction) and, with `#[target_feature(enable = "avx2,fma")]`,
//! for AVX2 (8 per instruction, fused multiply-add). [`simd_kernel!`] writes both from one body
//! and picks one per call; the check is a cached atomic load. The GEMM (`gemm` crate) does its own
//! dispatch, up to AVX-512.

/// The element types of the CPU kernels (`f32`, `f64`).
pub(crate) trait Kernel:
    num_traits::Float + super::exp::KernelExp + Send + Sync + 'static
{
    /// Runs `f` with a scratch buffer of `n` values (contents unspecified) that belongs to the
    /// calling thread and is kept for its next call: the per-image work of the convolutions and
    /// the fused network needs a few MB of scratch per image, and allocating (page-faulting,
    /// zeroing) it per call or per rayon task cost more than the kernels that use it.
    fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

macro_rules! kernel_impl {
    ($E:ty) => {
        impl Kernel for $E {
            fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                thread_local! {
                    static SCRATCH: std::cell::RefCell<Vec<$E>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                SCRATCH.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < n {
                            buf.resize(n, 0.0);
                        }
                        f(&mut buf[..n])
                    }
                    // Re-entered on this thread (no kernel of ours does: none waits on rayon
                    // while holding the buffer, which could run another task here): a buffer of
                    // its own rather than a panic.
                    Err(_) => f(&mut vec![0.0; n]),
                })
            }
        }
    };
}
kernel_impl!(f32);
kernel_impl!(f64);

/// Splits a scratch buffer into consecutive pieces.
pub(crate) struct Carve<'a, E>(&'a mut [E]);

impl<'a, E> Carve<'a, E> {
    pub(crate) fn new(buf: &'a mut [E]) -> Self {
        Carve(buf)
    }
    /// The next `n` values. Panics if fewer are left.
    pub(crate) fn take(&mut self, n: usize) -> &'a mut [E] {
        let (head, tail) = std::mem::take(&mut self.0).split_at_mut(n);
        self.0 = tail;
        head
    }
}

/// `s` as f32 values, if `E` is f32: for the kernels written with AVX-512 intrinsics.
#[inline]
pub(crate) fn as_f32<E: 'static>(s: &[E]) -> Option<&[f32]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>())
        // SAFETY: E is f32, so this is the same slice with its own type.
        .then(|| unsafe { &*(s as *const [E] as *const [f32]) })
}

/// `s` as f32 values, if `E` is f32 (see [`as_f32`]).
#[inline]
pub(crate) fn as_f32_mut<E: 'static>(s: &mut [E]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>())
        // SAFETY: E is f32, so this is the same slice with its own type.
        .then(|| unsafe { &mut *(s as *mut [E] as *mut [f32]) })
}

/// Whether this CPU runs AVX2 and FMA instructions.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU runs the AVX-512 subsets the kernels are compiled for (F, VL, BW, DQ) and
/// AVX2 + FMA.
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines `fn NAME<E: Kernel>(args) [-> R] { body }` compiled for baseline x86-64, for AVX2 +
/// FMA and for AVX-512, dispatching at run time. The body is written once, as portable Rust:
/// the compiler vectorises it for each target.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<E: Kernel>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name<E: $crate::cpu::simd::Kernel>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable<E: $crate::cpu::simd::Kernel>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn avx512<E: $crate::cpu::simd::Kernel>($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if $crate::cpu::simd::has_avx512() {
                    // SAFETY: this CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<E: $crate::cpu::simd::Kernel>($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if $crate::cpu::simd::has_avx2_fma() {
                    // SAFETY: this CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Allocates `n` values without zero-filling them, lets `init(i, chunk)` write the `i`-th chunk
/// of `chunk` values (in parallel), and returns the vector. For kernel outputs that are
/// overwritten entirely: zero-filling them first was ~9 % of a training step.
///
/// # Safety
/// `init` must write every element of every chunk it is given.
pub(crate) unsafe fn par_init<E: Copy + Send + Sync>(
    n: usize,
    chunk: usize,
    init: impl Fn(usize, &mut [MaybeUninit<E>]) + Sync + Send,
) -> Vec<E> {
    let mut v: Vec<E> = Vec::with_capacity(n);
    if n > 0 {
        v.spare_capacity_mut()[..n]
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, c)| init(i, c));
    }
    // SAFETY: the capacity is n, and the caller guarantees that all n values were written.
    unsafe { v.set_len(n) };
    v
}

/// `s` as initialised values.
///
/// # Safety
/// Every element of `s` must have been written.
pub(crate) unsafe fn assume_init_mut<E>(s: &mut [MaybeUninit<E>]) -> &mut [E] {
    // SAFETY: MaybeUninit<E> has E's layout, and the caller guarantees initialisation.
    unsafe { &mut *(s as *mut [MaybeUninit<E>] as *mut [E]) }
}

/// `s` as a slice to be (over)written by a kernel that takes uninitialised outputs.
///
/// # Safety
/// Whoever writes through the result must write only initialised values (never
/// `MaybeUninit::uninit()`), so that `s` stays initialised. The kernels of this crate write
/// with `MaybeUninit::write`.
pub(crate) unsafe fn as_uninit_mut<E>(s: &mut [E]) -> &mut [MaybeUninit<E>] {
    // SAFETY: MaybeUninit<E> has E's layout; the caller writes only initialised values.
    unsafe { &mut *(s as *mut [E] as *mut [MaybeUninit<E>]) }
}
