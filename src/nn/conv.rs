//! The "same" 2-D convolution (stride 1, zero padding `K / 2`) of the conditioner networks, as a
//! device trait.
//!
//! dfdx 0.13 compiles its own `conv2d` only on nightly Rust, so the convolution is ours, behind
//! the small trait [`ConvDevice`] so that layers stay device-generic: the CPU runs its own
//! kernels (`crate::cpu::conv`), CUDA a composition of dfdx ops
//! (`conv_compose`, the reference the CPU kernels are tested against).
use dfdx::prelude::*;

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
