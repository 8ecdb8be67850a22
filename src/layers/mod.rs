//! The flow layers of the tutorial.
pub mod coupling;
pub mod coupling_op;
pub mod dequantization;
pub mod mask;
pub mod split;
pub mod squeeze;
pub mod variational;

pub use coupling::{ChannelCoupling, CheckerboardCoupling, CondCheckerboardCoupling, Coupling};
pub use coupling_op::AffineCouplingOps;
pub use dequantization::Dequantization;
pub use mask::{ChannelMask, Checkerboard, MaskKind};
pub use split::Split;
pub use squeeze::Squeeze;
pub use variational::{ConditionalFlow, VariationalDequantization};
