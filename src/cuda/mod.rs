//! CUDA support (feature `cuda`): the convolution as a composition of dfdx ops with a cached
//! gather index ([`conv`]), dfdx's run-time kernels compiled at build time ([`dfdx_kernels`]),
//! and the other op traits with their composed defaults.
//!
//! Implementation detail: nothing here is public API.
#[cfg(feature = "cuda")]
mod conv;
pub(crate) mod dfdx_kernels;
#[cfg(feature = "cuda")]
pub(crate) mod driver;

#[cfg(feature = "cuda")]
mod op_defaults {
    use crate::layers::AffineCouplingOps;
    use crate::nn::{FusedOps, GlowNetOps, NetDevice};
    use dfdx::tensor::Cuda;

    impl FusedOps<f32> for Cuda {}
    impl FusedOps<f64> for Cuda {}
    impl NetDevice<f32> for Cuda {}
    impl NetDevice<f64> for Cuda {}
    impl AffineCouplingOps<f32> for Cuda {}
    impl AffineCouplingOps<f64> for Cuda {}
    impl GlowNetOps<f32> for Cuda {}
    impl GlowNetOps<f64> for Cuda {}
}
