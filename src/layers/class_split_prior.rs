//! Glow's split with a learned prior that also sees the class.
use crate::classes::class_rows;
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::layers::split_prior::{split_forward, split_inverse, HalfC, HalfPair};
use crate::nn::gated::chunk2;
use crate::nn::ZeroConv2d;
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

/// [`SplitPrior`](crate::layers::SplitPrior) conditioned on the class `y` of each image: the
/// kept half `z₁` and the class together predict the prior of the split-off half `z₂`,
/// `(mean, logs) = chunk(conv₃ₓ₃(z₁) · e^{3·logscale} + class_bias[y])`,
/// `log p(z₂ | z₁, y) = Σ log N(z₂; mean, e^{2 logs})` (Glow's `--ycond` split prior adds a
/// linear map of the one-hot class to the same pre-activations; a row per class is that map).
///
/// The class comes from [`FlowCtx::classes`] (see [`crate::classes`]). The convolution and the
/// table start at zero: a fresh layer is the tutorial's split with a standard normal prior.
///
/// # Shapes
/// `C`×`H`×`W` → `C/2`×`H`×`W`; an odd `C` does not compile. Tensor names: `conv.weight`
/// (C, C/2, 3, 3), `conv.bias` (C), `conv.logscale` (C), `class_bias` (K, C).
#[derive(Clone, Debug)]
pub struct ClassSplitPrior<
    const K: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    E: Dtype,
    D: Storage<E>,
> where
    (): SplitChannels<C, H, W>,
{
    /// The prior network of the kept half, zero-initialised.
    pub conv: ZeroConv2d<HalfC<C, H, W>, Const<C>, E, D>,
    /// What each class adds to the network's output (mean, then log-scale channels).
    pub class_bias: Tensor<Rank2<K, C>, E, D>,
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> TensorCollection<E, D>
    for ClassSplitPrior<K, C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ClassSplitPrior<K, C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv", |s| &s.conv, |s| &mut s.conv),
                Self::tensor(
                    "class_bias",
                    |s| &s.class_bias,
                    |s| &mut s.class_bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(conv, class_bias)| ClassSplitPrior { conv, class_bias },
        )
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> BuildOnDevice<D, E>
    for ClassSplitPrior<K, C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D>
    ClassSplitPrior<K, C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// The predicted mean and log-scale of the split-off half, from the kept half and the
    /// classes in `ctx`.
    pub fn mean_and_logs<T: Tape<E, D>>(
        &self,
        kept: Tensor<(usize, HalfC<C, H, W>, Const<H>, Const<W>), E, D, T>,
        ctx: &FlowCtx<E>,
    ) -> Result<HalfPair<C, H, W, E, D, T>, FlowError<D::Err>> {
        let shape = (kept.shape().0, Const::<C>, Const::<H>, Const::<W>);
        let labels = ctx.class_labels(K, shape.0, || self.name())?;
        let bias = class_rows::<K, C, E, D, T>(&self.class_bias, labels)?
            .try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        let h = self.conv.try_apply(kept)?.try_add(bias)?;
        Ok(chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, T>(h)?)
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> Flow<E, D>
    for ClassSplitPrior<K, C, H, W, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type In = Img<C, H, W>;
    type Out = (usize, HalfC<C, H, W>, Const<H>, Const<W>);

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        split_forward::<C, H, W, E, D, T>(x, ldj, ctx, |kept, ctx| self.mean_and_logs(kept, ctx))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        split_inverse::<C, H, W, E, D>(z, ctx, |kept, ctx| self.mean_and_logs(kept, ctx))
    }

    fn name(&self) -> String {
        format!("ClassSplitPrior({K} classes)")
    }
}
