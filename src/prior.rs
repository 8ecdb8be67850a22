//! The standard normal prior of the flows' latents: its log-density (the last term of every
//! likelihood, and of each split-off half) and sampling on the device.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{FlowCtx, FlowDevice, Ldj};
use dfdx::prelude::*;

/// Draws `N(0, 1)` samples on the device by Box–Muller from two uniform draws (dfdx's
/// `sample_normal` needs a `StandardNormal: Distribution<E>` bound that generic code would
/// have to carry everywhere).
pub fn standard_normal<S: Shape, E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
    shape: &S,
) -> Result<Tensor<S, E, D>, D::Err> {
    let uniform = rand_distr::Uniform::new(E::zero(), E::one());
    // 1 − u ∈ (0, 1] keeps the logarithm finite.
    let radius = dev
        .try_sample_like(shape, rand_distr::Uniform::new(E::zero(), E::one()))?
        .try_negate()?
        .try_add(E::one())?
        .try_ln()?
        .try_mul(E::from_f64(-2.0).unwrap())?
        .try_sqrt()?;
    let angle = dev
        .try_sample_like(shape, uniform)?
        .try_mul(E::from_f64(2.0 * std::f64::consts::PI).unwrap())?
        .try_cos()?;
    radius.try_mul(angle)
}

/// `Σ log N(z; 0, 1)` over each image.
pub fn standard_normal_log_prob<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
>(
    z: Tensor<(usize, C, H, W), E, D, T>,
) -> Result<Ldj<E, D, T>, D::Err> {
    let half_log_2pi = E::from_f64(0.5 * (2.0 * std::f64::consts::PI).ln()).unwrap();
    z.try_square()?
        .try_mul(E::from_f64(-0.5).unwrap())?
        .try_sub(half_log_2pi)?
        .try_sum::<(usize,), Axes3<1, 2, 3>>()
}

/// The split-off latent a split layer uses in the sampling direction: the last entry of
/// [`FlowCtx::latents`] if there is one (checked to have `shape`'s size first, so that a rejected
/// latent stays in the context), else a draw from `N(0, temperature²)`. `layer` names the layer
/// in the error.
pub(crate) fn split_latent<S: Shape, E: FlowDtype, D: FlowDevice<E>>(
    ctx: &mut FlowCtx<E>,
    dev: &D,
    shape: S,
    layer: impl FnOnce() -> String,
) -> Result<Tensor<S, E, D>, FlowError<D::Err>> {
    match ctx.latents.last().map(Vec::len) {
        Some(got) if got != shape.num_elements() => Err(FlowError::LatentLength {
            layer: layer(),
            expected: shape.num_elements(),
            got,
        }),
        Some(_) => {
            let values = ctx.latents.pop().unwrap_or_default();
            Ok(dev.try_tensor_from_vec(values, shape)?)
        }
        None => Ok(standard_normal(dev, &shape)?.try_mul(ctx.checked_temperature()?)?),
    }
}
