//! The flow layers: the tutorial's, and Glow's (ActNorm, the invertible 1×1 convolution, the
//! affine and additive couplings, the split with a learned prior, the learned top prior), and
//! their class-conditional variants ([`ClassPrior`], [`ClassSplitPrior`], [`ClassGlowCoupling`]).
pub mod actnorm;
pub mod additive_coupling;
pub mod class_glow_coupling;
pub mod class_prior;
pub mod class_split_prior;
pub mod coupling;
pub mod coupling_op;
pub mod dequantization;
pub mod glow_coupling;
pub mod glow_net;
pub mod invconv;
pub mod learned_prior;
mod lu;
pub mod mask;
pub mod split;
pub mod split_prior;
pub mod squeeze;
pub mod variational;

pub use actnorm::{ActNorm, ACTNORM_MIN_STD};
pub use additive_coupling::AdditiveCoupling;
pub use class_glow_coupling::ClassGlowCoupling;
pub use class_prior::ClassPrior;
pub use class_split_prior::ClassSplitPrior;
pub use coupling::{ChannelCoupling, CheckerboardCoupling, CondCheckerboardCoupling, Coupling};
pub use coupling_op::AffineCouplingOps;
pub use dequantization::Dequantization;
pub use glow_coupling::GlowCoupling;
pub use glow_net::GlowNet;
pub use invconv::InvConv1x1;
pub use learned_prior::LearnedPrior;
pub use mask::{ChannelMask, Checkerboard, MaskKind};
pub use split::Split;
pub use split_prior::SplitPrior;
pub use squeeze::Squeeze;
pub use variational::{ConditionalFlow, VariationalDequantization};
