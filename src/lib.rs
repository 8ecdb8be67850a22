//! # dfdx-flows
//!
//! Normalizing flows for images on [`dfdx`], with shapes checked at compile time.
//!
//! Every flow layer maps a batch of images [`Img<C, H, W>`](shape::Img) to another, and layers
//! compose with [`Chain`] only when each output shape is the next input shape. The crate
//! implements every layer and model of the tutorial "Normalizing Flows for Image Modeling"
//! (UvA DL tutorial 11 — RealNVP-style coupling flows on MNIST): dequantization, variational
//! dequantization, affine coupling with checkerboard and channel masks, squeeze and split,
//! and the [`ImageFlow`] model with exact log-likelihoods in bits per dimension.
//!
//! ```
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! let dev: Cpu = Default::default();
//! // A small flow on 1×4×4 images: dequantization and two checkerboard couplings.
//! type Tiny = Chain<(
//!     Dequantization<1, 4, 4>,
//!     CheckerboardCoupling<1, 4, 4, 8, false, f64, Cpu>,
//!     CheckerboardCoupling<1, 4, 4, 8, true, f64, Cpu>,
//! )>;
//! let model = ImageFlow::new(dev.build_module::<Tiny, f64>());
//! let images = dev.tensor_from_vec(vec![128.0; 2 * 16], Img::<1, 4, 4>::with_batch(2));
//! let bpd = model.bpd(images, &mut FlowCtx::default()).unwrap();
//! assert!(bpd.array() > 0.0);
//! ```
#![warn(missing_docs)]
// Tensor types with tapes and shapes are long by nature; aliases would only hide them.
#![allow(clippy::type_complexity)]

pub mod chain;
#[cfg(feature = "charts")]
pub mod charts;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod device;
pub mod flow;
pub mod layers;
pub mod model;
pub mod models;
pub mod nn;
pub mod optim;
pub mod params;
pub mod shape;
pub mod train;
pub mod viz;

pub use chain::Chain;
pub use flow::{Flow, FlowCtx, ImgShape, LayerInfo, Ldj};
pub use model::ImageFlow;

/// The element types flows compute in: `f32` (training) and `f64` (exact checks).
pub trait FlowDtype:
    dfdx::shapes::Dtype
    + num_traits::Float
    + rand_distr::uniform::SampleUniform
    + dfdx::tensor::safetensors::SafeDtype
    + Send
    + Sync
{
}
impl<E> FlowDtype for E where
    E: dfdx::shapes::Dtype
        + num_traits::Float
        + rand_distr::uniform::SampleUniform
        + dfdx::tensor::safetensors::SafeDtype
        + Send
        + Sync
{
}

/// The devices flows run on: dfdx's `Cpu` (and `Cuda` with feature `cuda`), with the
/// convolution of [`nn::ConvDevice`] and the fused ops of [`nn::FusedOps`].
pub trait FlowDevice<E: FlowDtype>: nn::ConvDevice<E> + nn::FusedOps<E> {}
impl<E: FlowDtype, D: nn::ConvDevice<E> + nn::FusedOps<E>> FlowDevice<E> for D {}

/// Everything needed to build and run the tutorial's flows.
pub mod prelude {
    pub use crate::chain::Chain;
    pub use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo};
    pub use crate::layers::*;
    pub use crate::model::ImageFlow;
    pub use crate::models::*;
    pub use crate::nn::{ConcatElu, Conv2d, GatedConv, GatedConvNet, LayerNormChannels};
    pub use crate::shape::{Double, Doubled, Halve, Halved, Img, Quadruple, Quadrupled};
    pub use crate::{FlowDevice, FlowDtype};
}

/// The README's code, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
