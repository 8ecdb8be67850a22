//! Glow's affine coupling whose network also sees the class.
use crate::classes::class_rows;
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{forward_values, Flow, FlowCtx, FlowDevice, Ldj};
use crate::layers::glow_coupling::{glow_affine_forward, glow_affine_inverse, HalfC};
use crate::layers::glow_net::GlowNet;
use crate::nn::gated::chunk2;
use crate::shape::{Img, SplitChannels};
use dfdx::prelude::*;

/// [`GlowCoupling`](crate::layers::GlowCoupling) whose network is told the class `y` of each
/// image: a learned embedding of the class (`class_bias[y]`, `HIDDEN` values) enters the
/// network as constant input channels, which through a 1×1 convolution is one added row per
/// class after the first convolution ([`GlowNet::try_apply_with`]). The coupling is otherwise
/// Glow's: `(h_s, t) = chunk(net(a, y))`, `s = sigmoid(h_s + 2)`, output `(a, (b + t) · s)`.
///
/// The class comes from [`FlowCtx::classes`] (see [`crate::classes`]). The table starts at
/// zero, so a fresh layer is a fresh [`GlowCoupling`](crate::layers::GlowCoupling).
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`; an odd `C` does not compile. Tensor names: `net.*`,
/// `class_bias` (K, HIDDEN).
#[derive(Clone, Debug)]
pub struct ClassGlowCoupling<
    const K: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    E: Dtype,
    D: Storage<E>,
> where
    (): SplitChannels<C, H, W>,
{
    /// From the kept half (and the class) to the scale and shift of the other.
    pub net: GlowNet<HalfC<C, H, W>, HIDDEN, Const<C>, H, W, E, D>,
    /// The class embedding added after the network's first convolution, one row per class.
    pub class_bias: Tensor<Rank2<K, HIDDEN>, E, D>,
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    TensorCollection<E, D> for ClassGlowCoupling<K, C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ClassGlowCoupling<K, C, H, W, HIDDEN, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("net", |s| &s.net, |s| &mut s.net),
                Self::tensor(
                    "class_bias",
                    |s| &s.class_bias,
                    |s| &mut s.class_bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(net, class_bias)| ClassGlowCoupling { net, class_bias },
        )
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    BuildOnDevice<D, E> for ClassGlowCoupling<K, C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    ClassGlowCoupling<K, C, H, W, HIDDEN, E, D>
where
    (): SplitChannels<C, H, W>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// The class embedding of each image of a batch of `batch`, from the labels in `ctx`.
    fn embedding<T: Tape<E, D>>(
        &self,
        ctx: &FlowCtx<E>,
        batch: usize,
    ) -> Result<Tensor<(usize, Const<HIDDEN>), E, D, T>, FlowError<D::Err>> {
        let labels = ctx.class_labels(K, batch, || self.name())?;
        Ok(class_rows::<K, HIDDEN, E, D, T>(&self.class_bias, labels)?)
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D>
    Flow<E, D> for ClassGlowCoupling<K, C, H, W, HIDDEN, E, D>
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
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let embedding = self.embedding::<T>(ctx, x.shape().0)?;
        glow_affine_forward::<C, H, W, E, D, T>(x, ldj, |a| {
            Ok(self.net.try_apply_with(a, Some(embedding))?)
        })
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let embedding = self.embedding::<NoneTape>(ctx, z.shape().0)?;
        glow_affine_inverse::<C, H, W, E, D>(z, |a| {
            Ok(self.net.try_apply_with(a, Some(embedding))?)
        })
    }

    fn needs_initialization(&self) -> bool {
        self.net.needs_initialization()
    }

    fn try_initialize(
        &mut self,
        x: Tensor<Self::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {
        let embedding = self.embedding::<NoneTape>(ctx, x.shape().0)?;
        let (a, _) = chunk2::<_, HalfC<C, H, W>, Const<H>, Const<W>, E, D, NoneTape>(x.clone())?;
        self.net.try_initialize(a, Some(embedding))?;
        forward_values(self, x, ctx)
    }

    fn name(&self) -> String {
        format!("ClassGlowCoupling({K} classes, hidden {HIDDEN})")
    }
}
