//! Split: half of the channels leave the flow and are scored under the prior.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, Ldj};
use crate::nn::gated::{cat2, chunk2};
use crate::prior::{split_latent, standard_normal_log_prob};
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
        let dev = z.device().clone();
        let z_split = split_latent(ctx, &dev, *z.shape(), || {
            format!("Split {C}x{H}x{W} -> {}x{H}x{W}", C / 2)
        })?;
        Ok(cat2(z, z_split)?)
    }

    fn name(&self) -> String {
        "Split".into()
    }
}
