//! Glow's affine coupling: half of the channels scale and shift the other half.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{forward_values, Flow, FlowCtx, FlowDevice, Ldj};
use crate::layers::glow_net::GlowNet;
use crate::nn::gated::{cat2, chunk2};
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

pub(crate) type HalfC<const C: usize, const H: usize, const W: usize> =
    <() as SplitChannels<C, H, W>>::Half;

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
        glow_affine_forward::<C, H, W, E, D, T>(x, ldj, |a| Ok(self.net.try_apply(a)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        glow_affine_inverse::<C, H, W, E, D>(z, |a| Ok(self.net.try_apply(a)?))
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
        self.net.try_initialize(a, None)?;
        forward_values(self, x, ctx)
    }

    fn name(&self) -> String {
        format!("GlowCoupling(hidden {HIDDEN})")
    }
}

/// The output of a Glow network for the kept half: scale pre-activations, then shifts.
pub(crate) type NetOut<const C: usize, const H: usize, const W: usize, E, D, T> =
    Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D, T>;

/// The scale `s = sigmoid(h_s + 2)` and shift `t` for the second half from the network's
/// output `h = (h_s, t)`.
#[allow(clippy::type_complexity)]
fn scale_and_shift<const C: usize, const H: usize, const W: usize, E, D, T>(
    h: NetOut<C, H, W, E, D, T>,
) -> Result<
    (
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
    ),
    D::Err,
>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
{
    let (h_s, t) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(h)?;
    let s = h_s
        .try_add(E::from_f64(2.0).unwrap_or(E::one()))?
        .try_sigmoid()?;
    Ok((s, t))
}

/// Glow's affine coupling in the density direction, with `net` the network of the kept half
/// `a`: `(a, (b + t) · s)`, `log |det| = Σ log s`. Shared by [`GlowCoupling`] and
/// [`ClassGlowCoupling`](crate::layers::ClassGlowCoupling).
pub(crate) fn glow_affine_forward<const C: usize, const H: usize, const W: usize, E, D, T>(
    x: Tensor<Img<C, H, W>, E, D, T>,
    ldj: Ldj<E, D, T>,
    net: impl FnOnce(
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<NetOut<C, H, W, E, D, T>, FlowError<D::Err>>,
) -> Result<(Tensor<Img<C, H, W>, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
{
    let (a, b) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(x)?;
    let (s, t) = scale_and_shift::<C, H, W, E, D, T>(net(a.retaped::<T>())?)?;
    let b = b.try_add(t)?.try_mul(s.retaped::<T>())?;
    let log_det = s.try_ln()?.try_sum::<(usize,), Axes3<1, 2, 3>>()?;
    Ok((cat2(a, b)?, ldj.try_add(log_det)?))
}

/// The sampling direction of [`glow_affine_forward`]: `(a, b / s − t)`.
pub(crate) fn glow_affine_inverse<const C: usize, const H: usize, const W: usize, E, D>(
    z: Tensor<Img<C, H, W>, E, D>,
    net: impl FnOnce(
        Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D>,
    ) -> Result<NetOut<C, H, W, E, D, NoneTape>, FlowError<D::Err>>,
) -> Result<Tensor<Img<C, H, W>, E, D>, FlowError<D::Err>>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    let (a, b) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, NoneTape>(z)?;
    let (s, t) = scale_and_shift::<C, H, W, E, D, NoneTape>(net(a.clone())?)?;
    let b = b.try_div(s)?.try_sub(t)?;
    Ok(cat2(a, b)?)
}
