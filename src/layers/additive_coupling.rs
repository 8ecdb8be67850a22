//! Glow's additive coupling: half of the channels shift the other half.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{forward_values, Flow, FlowCtx, FlowDevice, Ldj};
use crate::layers::glow_net::GlowNet;
use crate::nn::gated::{cat2, chunk2};
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

type HalfC<const C: usize, const H: usize, const W: usize> = <() as SplitChannels<C, H, W>>::Half;

/// Glow's additive coupling on `C`×`H`×`W` images (`C` even), with a [`GlowNet`] of `HIDDEN`
/// channels: `x = (a, b)` split along the channels, output `(a, b + net(a))`, `log |det| = 0`
/// (NICE's coupling; Glow's `--flow_coupling 0`).
///
/// Volume-preserving: only the other layers of a step (ActNorm, the 1×1 convolution, the
/// priors) change the density's scale. Cheaper than [`GlowCoupling`](crate::layers::GlowCoupling)
/// (the network's last convolution has half the outputs, no sigmoid, no logarithm), and it cannot
/// shrink a channel towards zero, which is why Glow's authors offer it as the stabler choice.
/// A fresh layer is the identity (the network's last convolution starts at zero).
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`; an odd `C` does not compile. Tensor names: `net.*`.
#[derive(Clone, Debug)]
pub struct AdditiveCoupling<
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    E: Dtype,
    D: Storage<E>,
> where
    (): SplitChannels<C, H, W>,
{
    /// From the kept half to the shift of the other.
    pub net: GlowNet<HalfC<C, H, W>, HIDDEN, HalfC<C, H, W>, H, W, E, D>,
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    TensorCollection<E, D> for AdditiveCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = AdditiveCoupling<C, H, W, HIDDEN, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("net", |s| &s.net, |s| &mut s.net), |net| {
            AdditiveCoupling { net }
        })
    }
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D> BuildOnDevice<D, E>
    for AdditiveCoupling<C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D> Flow<E, D>
    for AdditiveCoupling<C, H, W, HIDDEN, E, D>
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
        let shift = self.net.try_apply(a.retaped::<T>())?;
        Ok((cat2(a, b.try_add(shift)?)?, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let (a, b) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, NoneTape>(z)?;
        let shift = self.net.try_apply(a.clone())?;
        Ok(cat2(a, b.try_sub(shift)?)?)
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
        format!("AdditiveCoupling(hidden {HIDDEN})")
    }
}
