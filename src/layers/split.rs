//! Split: half of the channels leave the flow and are scored under the prior.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, Ldj};
use crate::nn::gated::chunk2;
use crate::prior::{standard_normal, standard_normal_log_prob};
use crate::shape::{Img, SplitChannels};
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
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
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
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let shape = *z.shape();
        let dev = z.device().clone();
        let z_split = match ctx.latents.last().map(Vec::len) {
            Some(got) if got != shape.num_elements() => {
                // Checked before taking it, so a rejected latent stays in the context.
                return Err(FlowError::LatentLength {
                    layer: format!("Split {C}x{H}x{W} -> {}x{H}x{W}", C / 2),
                    expected: shape.num_elements(),
                    got,
                });
            }
            Some(_) => {
                let values = ctx.latents.pop().unwrap_or_default();
                dev.try_tensor_from_vec(values, shape)?
            }
            None => standard_normal(&dev, &shape)?.try_mul(ctx.checked_temperature()?)?,
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
