//! The conditioner networks of the coupling layers (the tutorial's gated ResNet and its parts)
//! and the device traits of their ops.
//!
//! Each op trait's default methods are compositions of dfdx ops (any device, and the reference
//! the CPU kernels are tested against): [`ConvDevice`] (the same-padded convolution),
//! [`FusedOps`] (ConcatELU, channel layer norm, gated residual) and [`NetDevice`] (the whole
//! network as one op). The CPU kernels that override them are in the private `cpu` module.
pub mod conv;
pub(crate) mod conv_compose;
pub mod fused;
pub mod gated;
pub mod glow_net_op;
pub mod zero_conv;

pub use conv::ConvDevice;
pub use fused::FusedOps;
pub use gated::{
    ConcatElu, Conditioner, Conv2d, GatedConv, GatedConvNet, LayerNormChannels, NetDevice,
};
pub use glow_net_op::{GlowNetOps, GlowNetParams};
pub use zero_conv::ZeroConv2d;
