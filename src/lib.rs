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

pub mod atomic_file;
pub mod chain;
pub mod checkpoint;
pub mod classes;
#[cfg(feature = "cli")]
pub mod cli;
mod cpu;
mod cuda;
pub mod data;
pub mod device;
pub mod dtype;
pub mod error;
pub mod flow;
pub mod guide;
pub mod image_flow;
pub mod layers;
pub mod models;
pub mod nn;
pub mod optim;
pub mod params;
pub mod prior;
pub mod repeat;
pub mod sampling;
pub mod shape;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod train;
pub mod viz;

pub use chain::Chain;
pub use dtype::FlowDtype;
pub use error::FlowError;
pub use flow::{Flow, FlowCtx, FlowDevice, ImgShape, LayerInfo, Ldj};
pub use image_flow::ImageFlow;
pub use repeat::Repeat;

/// Everything needed to build and run the tutorial's flows.
pub mod prelude {
    pub use crate::chain::Chain;
    pub use crate::classes::Labels;
    pub use crate::dtype::FlowDtype;
    pub use crate::error::FlowError;
    pub use crate::flow::FlowDevice;
    pub use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo, Ldj};
    pub use crate::image_flow::ImageFlow;
    pub use crate::layers::*;
    pub use crate::models::*;
    pub use crate::nn::{ConcatElu, Conv2d, GatedConv, GatedConvNet, LayerNormChannels};
    pub use crate::repeat::Repeat;
    pub use crate::shape::{Double, Doubled, Halve, Halved, Img, Quadruple, Quadrupled};
}

/// The README's code, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
