//! [`FlowDtype`]: the element types flows compute in.

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
