//! Glow's split with a learned prior: the kept half predicts the distribution of the other.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::nn::gated::{cat2, chunk2};
use crate::nn::ZeroConv2d;
use crate::prior::{split_latent, standard_normal_log_prob};
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

pub(crate) type HalfC<const C: usize, const H: usize, const W: usize> =
    <() as SplitChannels<C, H, W>>::Half;

/// `C×H×W → (C/2)×H×W`, like [`Split`](crate::layers::Split), but the half that leaves is
/// scored under a normal distribution whose mean and log-scale the kept half predicts (Glow's
/// `split2d` with its learned prior):
/// `(mean, logs) = chunk(conv₃ₓ₃(z₁) · e^{3·logscale})`, `log p(z₂ | z₁) = Σ log N(z₂; mean, e^{2 logs})`.
///
/// The convolution starts at zero ([`ZeroConv2d`], Glow's `Conv2dZeros`), so a fresh layer is the
/// tutorial's split with a standard normal prior. What the density direction records in
/// [`FlowCtx::latents`], and what the sampling direction takes from there or draws from
/// `N(0, temperature²)`, is the standardised latent `ε = (z₂ − mean) · e^{−logs}`, so that the
/// temperature and the interpolations act on it as on the tutorial's split.
///
/// # Shapes
/// `C`×`H`×`W` → `C/2`×`H`×`W`; an odd `C` does not compile. Tensor names: `conv.weight`
/// (C, C/2, 3, 3), `conv.bias` (C), `conv.logscale` (C).
#[derive(Clone, Debug)]
pub struct SplitPrior<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>>
where
    (): SplitChannels<C, H, W>,
{
    /// The prior network: from the kept half to mean and log-scale, zero-initialised.
    pub conv: ZeroConv2d<HalfC<C, H, W>, Const<C>, E, D>,
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    TensorCollection<E, D> for SplitPrior<C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
{
    type To<E2: Dtype, D2: Device<E2>> = SplitPrior<C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("conv", |s| &s.conv, |s| &mut s.conv), |conv| {
            SplitPrior { conv }
        })
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    BuildOnDevice<D, E> for SplitPrior<C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    SplitPrior<C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
{
    /// The predicted mean and log-scale of the split-off half, from the kept half.
    pub fn mean_and_logs<T: Tape<E, D>>(
        &self,
        kept: Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<
        (
            Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
            Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        ),
        D::Err,
    > {
        let h = self.conv.try_apply(kept)?;
        chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(h)
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for SplitPrior<C, H, W, E, D>
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
        split_forward::<C, H, W, E, D, T>(x, ldj, ctx, |kept, _| Ok(self.mean_and_logs(kept)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        split_inverse::<C, H, W, E, D>(z, ctx, |kept, _| Ok(self.mean_and_logs(kept)?))
    }

    fn name(&self) -> String {
        "SplitPrior".into()
    }
}

/// The mean and log-scale of the split-off half, each `(batch, C/2, H, W)`.
pub(crate) type HalfPair<const C: usize, const H: usize, const W: usize, E, D, T> = (
    Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
    Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
);

/// The density direction of a split with a learned prior: keeps the first half of the
/// channels, scores the second under `N(mean, e^{2 logs})` from `prior(kept, ctx)`, records its
/// standardised value if asked. Shared by [`SplitPrior`] and
/// [`ClassSplitPrior`](crate::layers::ClassSplitPrior).
pub(crate) fn split_forward<const C: usize, const H: usize, const W: usize, E, D, T>(
    x: Tensor<Img<C, H, W>, E, D, T>,
    ldj: Ldj<E, D, T>,
    ctx: &mut FlowCtx<E>,
    prior: impl FnOnce(
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        &FlowCtx<E>,
    ) -> Result<HalfPair<C, H, W, E, D, T>, FlowError<D::Err>>,
) -> Result<
    (
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        Ldj<E, D, T>,
    ),
    FlowError<D::Err>,
>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
{
    let (kept, split) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(x)?;
    let (mean, logs) = prior(kept.retaped::<T>(), ctx)?;
    let eps = split
        .try_sub(mean)?
        .try_mul(logs.retaped::<T>().try_negate()?.try_exp()?)?;
    if ctx.record_latents {
        ctx.latents.push(eps.as_vec());
    }
    // log N(z₂; mean, e^{2 logs}) = log N(ε; 0, 1) − logs, summed per image.
    let log_p =
        standard_normal_log_prob(eps)?.try_sub(logs.try_sum::<(usize,), Axes3<1, 2, 3>>()?)?;
    Ok((kept, ldj.try_add(log_p)?))
}

/// The sampling direction of [`split_forward`]: the split-off half from the recorded or drawn
/// standardised latent and the prior of the kept half.
pub(crate) fn split_inverse<const C: usize, const H: usize, const W: usize, E, D>(
    z: Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D>,
    ctx: &mut FlowCtx<E>,
    prior: impl FnOnce(
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D>,
        &FlowCtx<E>,
    ) -> Result<HalfPair<C, H, W, E, D, NoneTape>, FlowError<D::Err>>,
) -> Result<Tensor<Img<C, H, W>, E, D>, FlowError<D::Err>>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    // The prior first: a class-conditional one checks its labels before a latent is taken.
    let (mean, logs) = prior(z.clone(), ctx)?;
    let dev = z.device().clone();
    let eps = split_latent(ctx, &dev, *z.shape(), || {
        format!("SplitPrior {C}x{H}x{W} -> {}x{H}x{W}", C / 2)
    })?;
    let split = logs.try_exp()?.try_mul(eps)?.try_add(mean)?;
    Ok(cat2(z, split)?)
}
