//! Glow's split with a learned prior: the kept half predicts the distribution of the other.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::nn::gated::chunk2;
use crate::nn::ZeroConv2d;
use crate::prior::standard_normal;
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

type HalfC<const C: usize, const H: usize, const W: usize> = <() as SplitChannels<C, H, W>>::Half;

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
        let (kept, split) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(x)?;
        let (mean, logs) = self.mean_and_logs(kept.retaped::<T>())?;
        let eps = split
            .try_sub(mean)?
            .try_mul(logs.retaped::<T>().try_negate()?.try_exp()?)?;
        if ctx.record_latents {
            ctx.latents.push(eps.as_vec());
        }
        let half_log_2pi =
            E::from_f64(0.5 * (2.0 * std::f64::consts::PI).ln()).unwrap_or(E::zero());
        let log_p = eps
            .try_square()?
            .try_mul(E::from_f64(-0.5).unwrap_or(E::zero()))?
            .try_sub(logs)?
            .try_sub(half_log_2pi)?
            .try_sum::<(usize,), Axes3<1, 2, 3>>()?;
        Ok((kept, ldj.try_add(log_p)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let shape = *z.shape();
        let dev = z.device().clone();
        let eps = match ctx.latents.last().map(Vec::len) {
            Some(got) if got != shape.num_elements() => {
                // Checked before taking it, so a rejected latent stays in the context.
                return Err(FlowError::LatentLength {
                    layer: format!("SplitPrior {C}x{H}x{W} -> {}x{H}x{W}", C / 2),
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
        let (mean, logs) = self.mean_and_logs(z.clone())?;
        let split = logs.try_exp()?.try_mul(eps)?.try_add(mean)?;
        let z = z
            .try_realize::<(usize, usize, Const<H>, Const<W>)>()
            .unwrap_or_else(|_| unreachable!());
        let split = split
            .try_realize::<(usize, usize, Const<H>, Const<W>)>()
            .unwrap_or_else(|_| unreachable!());
        Ok((z, split)
            .try_concat_along(Axis::<1>)?
            .try_realize()
            .unwrap_or_else(|_| unreachable!("C/2 + C/2 = C channels")))
    }

    fn name(&self) -> String {
        "SplitPrior".into()
    }
}
