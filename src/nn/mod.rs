//! The conditioner networks of the coupling layers: convolutions and the tutorial's gated ResNet.
#[macro_use]
mod simd;
mod affine;
pub mod conv;
mod conv_compose;
#[cfg(feature = "cuda")]
mod conv_cuda;
pub(crate) mod dfdx_kernels;
pub mod fused;
mod fused_net;
pub mod gated;
mod transpose;
mod winograd;

pub use conv::ConvDevice;
pub use fused::FusedOps;
pub use gated::{ConcatElu, Conditioner, Conv2d, GatedConv, GatedConvNet, LayerNormChannels};
