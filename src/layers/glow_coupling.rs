//! Glow's affine coupling: half of the channels scale and shift the other half.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{forward_values, Flow, FlowCtx, FlowDevice, Ldj};
use crate::layers::glow_net::GlowNet;
use crate::nn::gated::{cat2, chunk2};
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

type HalfC<const C: usize, const H: usize, const W: usize> = <() as SplitChannels<C, H, W>>::Half;

/// Glow's affine coupling on `C`×`H`×`W` images (`C` even), with a [`GlowNet`] of `HIDDEN`
/// channels: `x = (a, b)` split along the channels, `(h_s, t) = chunk(net(a))`,
/// `s = sigmoid(h_s + 2)`, output `(a, (b + t) · s)`, `log |det| = Σ log s`.
///
/// The sigmoid keeps each scale in (0, 1), and the `+ 2` starts it near 0.88; with the
/// network's last convolution at zero a fresh layer only scales `b` by `sigmoid(2)`. Follows
/// rosinality/glow-pytorch's `AffineCoupling` (`(log_s, t) = net(in_a).chunk(2, 1)`,
/// `s = sigmoid(log_s + 2)`, `out_b = (in_b + t) · s`), with openai/glow's network (ActNorm
/// instead of biases' role, initialised from data); the last convolution pads with zeros.
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`; an odd `C` does not compile. Tensor names: `net.*`.
#[derive(Clone, Debug)]
pub struct GlowCoupling<
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    E: Dtype,
    D: Storage<E>,
> where
    (): SplitChannels<C, H, W>,
{
    /// From the kept half to the scale and shift of the other.
    pub net: GlowNet<HalfC<C, H, W>, HIDDEN, Const<C>, H, W, E, D>,
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    TensorCollection<E, D> for GlowCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GlowCoupling<C, H, W, HIDDEN, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("net", |s| &s.net, |s| &mut s.net), |net| {
            GlowCoupling { net }
        })
    }
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D> BuildOnDevice<D, E>
    for GlowCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    GlowCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// The scale `s = sigmoid(h_s + 2)` and shift `t` for the second half, from the first.
    #[allow(clippy::type_complexity)]
    fn scale_and_shift<T: Tape<E, D>>(
        &self,
        kept: Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<
        (
            Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
            Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        ),
        D::Err,
    > {
        let h = self.net.try_apply(kept)?;
        let (h_s, t) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(h)?;
        let s = h_s
            .try_add(E::from_f64(2.0).unwrap_or(E::one()))?
            .try_sigmoid()?;
        Ok((s, t))
    }
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D> Flow<E, D>
    for GlowCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let (a, b) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(x)?;
        let (s, t) = self.scale_and_shift(a.retaped::<T>())?;
        let b = b.try_add(t)?.try_mul(s.retaped::<T>())?;
        let log_det = s.try_ln()?.try_sum::<(usize,), Axes3<1, 2, 3>>()?;
        Ok((cat2(a, b)?, ldj.try_add(log_det)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let (a, b) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, NoneTape>(z)?;
        let (s, t) = self.scale_and_shift(a.clone())?;
        let b = b.try_div(s)?.try_sub(t)?;
        Ok(cat2(a, b)?)
    }

    fn needs_initialization(&self) -> bool {
        self.net.needs_initialization()
    }

    fn try_initialize(
        &mut self,
        x: Tensor<Self::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {
        let (a, _) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, NoneTape>(x.clone())?;
        self.net.try_initialize(a)?;
        forward_values(self, x, ctx)
    }

    fn name(&self) -> String {
        format!("GlowCoupling(hidden {HIDDEN})")
    }
}
