//! [`Chain`]: flows composed in order, with a compile-time check that neighbouring shapes fit.
//!
//! ```
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! // 1x8x8 images: a coupling, a squeeze to 4x4x4, a channel coupling, a split to 2x4x4.
//! type Small = Chain<(
//!     CheckerboardCoupling<1, 8, 8, 4, false, f64, Cpu>,
//!     Squeeze<1, 8, 8>,
//!     ChannelCoupling<4, 4, 4, 4, false, f64, Cpu>,
//!     Split<4, 4, 4>,
//! )>;
//! let dev: Cpu = Default::default();
//! let flow = dev.build_module::<Small, f64>();
//! let x = dev.sample_normal_like(&Img::<1, 8, 8>::with_batch(3));
//! let ldj = dev.zeros_like(&(3,));
//! let (z, _ldj) = flow.try_forward(x, ldj, &mut FlowCtx::default()).unwrap();
//! assert_eq!(z.shape().concrete(), [3, 2, 4, 4]);
//! ```
//!
//! A stack whose shapes do not line up is rejected by `cargo check`, naming both layers and
//! both shapes:
//!
//! ```compile_fail
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! // Forgot the squeeze between the 1x28x28 and the 4x14x14 coupling.
//! type Broken = Chain<(
//!     CheckerboardCoupling<1, 28, 28, 32, false, f32, Cpu>,
//!     ChannelCoupling<4, 14, 14, 48, false, f32, Cpu>,
//! )>;
//! let dev: Cpu = Default::default();
//! let flow = ImageFlow::new(dev.build_module::<Broken, f32>());
//! let x = dev.zeros_like(&Img::<1, 28, 28>::with_batch(1));
//! // error: layers 0 and 1 of this `Chain` do not fit: layer 0 outputs 1x28x28 images
//! // (CxHxW), but layer 1 expects 4x14x14
//! let _ = flow.bpd(x, &mut FlowCtx::default());
//! ```
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, LayerInfo, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// A flow made of flows, applied in order: `Chain((a, b, c))` runs `a`, then `b`, then `c`.
///
/// It is a flow only if each layer's output shape is the next layer's input shape
/// ([`FitsInto`]), so a stack that does not fit does not compile. Its tensors are named by flat
/// position (`0.…`, `1.…`), like a PyTorch `ModuleList`. Implemented for tuples of 1 to 16
/// layers; nest chains for longer stacks.
#[derive(Clone, Debug, Default)]
pub struct Chain<T>(pub T);

/// The output shape `Self` of layer `I` (of type `A`) is the input shape `Next` of layer `J`
/// (of type `B`) in a [`Chain`].
///
/// Implemented for every pair of image shapes, on the condition [`LayersFit`] that the two are
/// equal. The indirection exists for the error message: when the shapes differ, the compiler
/// reports the unmet [`LayersFit`], whose parameters are the two layers, their positions and
/// their shapes in numbers. `fit`/`unfit` are the identity (they only restate the type).
pub trait FitsInto<Next: Shape, A, B, const I: usize, const J: usize>: Shape {
    /// Passes layer `I`'s output on as layer `J`'s input (the identity).
    fn fit<E: Dtype, D: Storage<E>, T>(x: Tensor<Self, E, D, T>) -> Tensor<Next, E, D, T>;
    /// Passes layer `J`'s inverse output back as layer `I`'s (the identity).
    fn unfit<E: Dtype, D: Storage<E>, T>(z: Tensor<Next, E, D, T>) -> Tensor<Self, E, D, T>;
}

impl<
        A,
        B,
        const I: usize,
        const J: usize,
        const C1: usize,
        const H1: usize,
        const W1: usize,
        const C2: usize,
        const H2: usize,
        const W2: usize,
    > FitsInto<Img<C2, H2, W2>, A, B, I, J> for Img<C1, H1, W1>
where
    (): LayersFit<A, B, I, J, C1, H1, W1, C2, H2, W2>,
{
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Self, E, D, T>,
    ) -> Tensor<Img<C2, H2, W2>, E, D, T> {
        <() as LayersFit<A, B, I, J, C1, H1, W1, C2, H2, W2>>::fit(x)
    }
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<C2, H2, W2>, E, D, T>,
    ) -> Tensor<Self, E, D, T> {
        <() as LayersFit<A, B, I, J, C1, H1, W1, C2, H2, W2>>::unfit(z)
    }
}

/// Layer `I` (`A`) outputs `C1`×`H1`×`W1` images and layer `J` (`B`) takes `C2`×`H2`×`W2`
/// images: implemented only when the two shapes are equal. See [`FitsInto`].
#[diagnostic::on_unimplemented(
    message = "layers {I} and {J} of this `Chain` do not fit: layer {I} outputs {C1}x{H1}x{W1} images (CxHxW), but layer {J} expects {C2}x{H2}x{W2}",
    label = "layer {J} cannot take the output of layer {I}",
    note = "layer {I} is `{A}`",
    note = "layer {J} is `{B}`",
    note = "each layer's output shape must be the next layer's input shape: `Squeeze<C, H, W>` turns CxHxW into 4C x H/2 x W/2, `Split<C, H, W>` keeps C/2 channels, the other layers keep the shape"
)]
pub trait LayersFit<
    A,
    B,
    const I: usize,
    const J: usize,
    const C1: usize,
    const H1: usize,
    const W1: usize,
    const C2: usize,
    const H2: usize,
    const W2: usize,
>
{
    /// The identity from layer `I`'s output to layer `J`'s input.
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Img<C1, H1, W1>, E, D, T>,
    ) -> Tensor<Img<C2, H2, W2>, E, D, T>;
    /// The identity back.
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<C2, H2, W2>, E, D, T>,
    ) -> Tensor<Img<C1, H1, W1>, E, D, T>;
}

impl<A, B, const I: usize, const J: usize, const C: usize, const H: usize, const W: usize>
    LayersFit<A, B, I, J, C, H, W, C, H, W> for ()
{
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Tensor<Img<C, H, W>, E, D, T> {
        x
    }
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Tensor<Img<C, H, W>, E, D, T> {
        z
    }
}

/// Every layer of this crate builds as itself, so a chain does too. Building does not require
/// the layers to fit: that is checked where the chain is used as a [`Flow`] — e.g. by
/// [`ImageFlow::build`](crate::ImageFlow::build), whose errors name the layers and shapes.
/// (dfdx's blanket `BuildOnDevice` impl for zero-sized modules makes any failure inside
/// `build_module` surface only as "`BuildOnDevice` is not implemented for `Chain<…>`".)
impl<E: FlowDtype, D: FlowDevice<E>, T> BuildOnDevice<D, E> for Chain<T>
where
    Chain<T>: TensorCollection<E, D, To<E, D> = Chain<T>>,
{
    type Built = Chain<T>;
}

// `TensorCollection` and `Flow` for tuples of 1 to 16 layers, written out by
// build.rs (dfdx implements `ModuleFields` for tuples of at most 6 fields, so the fields of
// longer chains are visited in nested groups; the names stay flat: "0" … "15").
include!(concat!(env!("OUT_DIR"), "/chain.rs"));
