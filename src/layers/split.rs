//! Split: half of the channels leave the flow and are scored under the prior.
use crate::flow::{standard_normal, Flow, FlowCtx, Ldj};
use crate::nn::gated::chunk2;
use crate::shape::{Img, SplitChannels};
use crate::{FlowDevice, FlowDtype};
use dfdx::prelude::*;

/// `C×H×W → (C/2)×H×W`: keeps the first half of the channels and adds the standard normal
/// log-density of the second half to the log-determinant (the tutorial's `SplitFlow`).
///
/// Sampling direction: the second half is the last latent in [`FlowCtx::latents`] if there is
/// one (recorded by a forward pass with [`FlowCtx::record_latents`]), otherwise drawn from
/// `N(0, temperature²)`. Only compiles for an even channel count (`cargo check` says e.g.
/// "cannot split 3x32x32 images (CxHxW) in half along the channels: 3 channels is an odd number").
#[derive(Clone, Copy, Debug, Default)]
pub struct Split<const C: usize, const H: usize, const W: usize>;

impl<const C: usize, const H: usize, const W: usize> dfdx::nn::ZeroSizedModule for Split<C, H, W> {}

type HalfC<const C: usize, const H: usize, const W: usize> = <() as SplitChannels<C, H, W>>::Half;

/// `Σ log N(z; 0, 1)` over each image.
pub(crate) fn standard_normal_log_prob<
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

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for Split<C, H, W>
where
    (): SplitChannels<C, H, W>,
{
    type In = Img<C, H, W>;
    type Out = (usize, HalfC<C, H, W>, Const<H>, Const<W>);

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (z, z_split) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(x)?;
        if ctx.record_latents {
            ctx.latents.push(z_split.as_vec());
        }
        let ldj = ldj.try_add(standard_normal_log_prob(z_split)?)?;
        Ok((z, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let shape = *z.shape();
        let dev = z.device().clone();
        let z_split = match ctx.latents.pop() {
            Some(values) => {
                assert_eq!(
                    values.len(),
                    shape.num_elements(),
                    "split latent of the wrong size"
                );
                dev.try_tensor_from_vec(values, shape)?
            }
            None => {
                standard_normal(&dev, &shape)?.try_mul(E::from_f64(ctx.temperature).unwrap())?
            }
        };
        let z = z
            .try_realize::<(usize, usize, Const<H>, Const<W>)>()
            .unwrap_or_else(|_| unreachable!());
        let z_split = z_split
            .try_realize::<(usize, usize, Const<H>, Const<W>)>()
            .unwrap_or_else(|_| unreachable!());
        Ok((z, z_split)
            .try_concat_along(Axis::<1>)?
            .try_realize()
            .unwrap_or_else(|_| unreachable!("C/2 + C/2 = C channels")))
    }

    fn name(&self) -> String {
        "Split".into()
    }
}
