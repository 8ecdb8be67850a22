//! Affine coupling (RealNVP) with the tutorial's tanh-stabilised scale.
use crate::flow::{Flow, FlowCtx, Ldj};
use crate::layers::mask::{fill_mask, ChannelMask, Checkerboard, MaskKind};
use crate::layers::variational::ConditionalFlow;
use crate::nn::gated::{chunk2, Conditioner, GatedConvNet};
use crate::shape::{Double, Doubled, Img};
use crate::{FlowDevice, FlowDtype, LayerInfo};
use dfdx::prelude::*;

/// Affine coupling layer on `C`×`H`×`W` images.
///
/// With `mask` 1 on the kept half: `(s, t) = chunk(network(z · mask))` (plus the conditioning
/// image concatenated on channels, for variational dequantization), `s = tanh(s / e^f) · e^f`
/// with the learnable per-channel `scaling_factor` f, both masked to the transformed half, then
/// `z' = (z + t) · e^s` with `log |det| = Σ s`; the inverse is `z = z' · e^{−s} − t`.
///
/// Tensor names: `network.nn.*`, `scaling_factor` (C), `mask` (a buffer, not trained).
#[derive(Clone, Debug)]
pub struct Coupling<
    const C: usize,
    const H: usize,
    const W: usize,
    M: MaskKind,
    N,
    E: Dtype,
    D: Storage<E>,
> {
    /// Predicts `(s, t)` from the kept half (and the condition).
    pub network: N,
    /// Per-channel log-scale `f` of the tanh limit, starts at 0.
    pub scaling_factor: Tensor<Rank1<C>, E, D>,
    /// The mask buffer, 1 on the half that is kept.
    pub mask: Tensor<M::Shape<C, H, W>, E, D>,
}

/// Coupling with a checkerboard mask and the tutorial's `GatedConvNet(c_in=C, c_hidden=HIDDEN)`.
pub type CheckerboardCoupling<
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    const INVERT: bool,
    E,
    D,
> = Coupling<
    C,
    H,
    W,
    Checkerboard<INVERT>,
    GatedConvNet<Const<C>, Const<HIDDEN>, Doubled<C>, E, D>,
    E,
    D,
>;

/// Coupling with a channel mask and the tutorial's `GatedConvNet(c_in=C, c_hidden=HIDDEN)`.
pub type ChannelCoupling<
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    const INVERT: bool,
    E,
    D,
> = Coupling<
    C,
    H,
    W,
    ChannelMask<INVERT>,
    GatedConvNet<Const<C>, Const<HIDDEN>, Doubled<C>, E, D>,
    E,
    D,
>;

/// Checkerboard coupling conditioned on an image of the same shape (variational
/// dequantization): its network sees `2·C` channels, `GatedConvNet(c_in=2C, c_out=2C)`.
pub type CondCheckerboardCoupling<
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    const INVERT: bool,
    E,
    D,
> = Coupling<
    C,
    H,
    W,
    Checkerboard<INVERT>,
    GatedConvNet<Doubled<C>, Const<HIDDEN>, Doubled<C>, E, D>,
    E,
    D,
>;

impl<const C: usize, const H: usize, const W: usize, M, N, E, D> TensorCollection<E, D>
    for Coupling<C, H, W, M, N, E, D>
where
    M: MaskKind,
    N: TensorCollection<E, D>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Coupling<C, H, W, M, N::To<E2, D2>, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("network", |s| &s.network, |s| &mut s.network),
                Self::tensor(
                    "scaling_factor",
                    |s| &s.scaling_factor,
                    |s| &mut s.scaling_factor,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "mask",
                    |s| &s.mask,
                    |s| &mut s.mask,
                    TensorOptions::detached(fill_mask::<M, C, H, W, E, D>),
                ),
            ),
            |(network, scaling_factor, mask)| Coupling {
                network,
                scaling_factor,
                mask,
            },
        )
    }
}

impl<const C: usize, const H: usize, const W: usize, M, N, E, D> BuildOnDevice<D, E>
    for Coupling<C, H, W, M, N, E, D>
where
    M: MaskKind,
    N: TensorCollection<E, D, To<E, D> = N>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, M, N, E, D> Coupling<C, H, W, M, N, E, D>
where
    M: MaskKind,
    N: Conditioner<E, D, COut = Doubled<C>>,
    Const<C>: Double,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// The coupling transform in either direction, with an optional conditioning image.
    ///
    /// The network's input is `z · mask`, concatenated with `cond` on channels if given; the
    /// callers' trait bounds guarantee that this has `N::CIn` channels.
    #[allow(clippy::type_complexity)]
    pub fn try_couple<T: Tape<E, D>>(
        &self,
        z: Tensor<Img<C, H, W>, E, D, T>,
        ldj: Ldj<E, D, T>,
        cond: Option<&Tensor<Img<C, H, W>, E, D>>,
        reverse: bool,
    ) -> Result<(Tensor<Img<C, H, W>, E, D, T>, Ldj<E, D, T>), D::Err> {
        let shape = *z.shape();
        let mask = M::expand::<C, H, W, E, D>(&self.mask, shape.0)?;
        let z_in = z.retaped::<T>().try_mul(mask.clone())?;
        let nn_in = match cond {
            None => z_in
                .try_realize::<(usize, N::CIn, Const<H>, Const<W>)>()
                .ok(),
            Some(cond) => {
                let z_in = z_in
                    .try_realize::<(usize, usize, Const<H>, Const<W>)>()
                    .unwrap_or_else(|_| unreachable!());
                let cond = cond
                    .clone()
                    .try_realize::<(usize, usize, Const<H>, Const<W>)>()
                    .unwrap_or_else(|_| unreachable!());
                (z_in, cond)
                    .try_concat_along(Axis::<1>)?
                    .try_realize::<(usize, N::CIn, Const<H>, Const<W>)>()
                    .ok()
            }
        }
        .expect("network input channels are checked by the trait bounds");
        let nn_out = self.network.try_condition(nn_in)?;
        let (s, t) = chunk2::<_, Const<C>, Const<H>, Const<W>, E, D, T>(nn_out)?;
        // s = tanh(s / e^f) · e^f keeps |s| below the learnable limit e^f.
        let s_fac = self
            .scaling_factor
            .retaped::<T>()
            .try_exp()?
            .try_broadcast_like(&shape)?;
        let s = s
            .try_div(s_fac.retaped::<T>())?
            .try_tanh()?
            .try_mul(s_fac)?;
        let transformed = mask.try_negate()?.try_add(E::ONE)?;
        let s = s.try_mul(transformed.clone())?;
        let t = t.try_mul(transformed)?;
        let log_det = s.retaped::<T>().try_sum::<(usize,), Axes3<1, 2, 3>>()?;
        if !reverse {
            let z = z.try_add(t)?.try_mul(s.try_exp()?)?;
            Ok((z, ldj.try_add(log_det)?))
        } else {
            let z = z.try_mul(s.try_negate()?.try_exp()?)?.try_sub(t)?;
            Ok((z, ldj.try_sub(log_det)?))
        }
    }

    fn summary(&self) -> String {
        format!("Coupling({}, hidden {})", M::NAME, self.network.hidden())
    }
}

impl<const C: usize, const H: usize, const W: usize, M, N, E, D> Flow<E, D>
    for Coupling<C, H, W, M, N, E, D>
where
    M: MaskKind,
    N: Conditioner<E, D, CIn = Const<C>, COut = Doubled<C>>,
    Const<C>: Double,
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
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        self.try_couple(x, ldj, None, false)
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let ldj = z.device().try_zeros_like(&(z.shape().0,))?;
        Ok(self.try_couple(z, ldj, None, true)?.0)
    }

    fn name(&self) -> String {
        self.summary()
    }
}

impl<const C: usize, const H: usize, const W: usize, M, N, E, D> ConditionalFlow<E, D>
    for Coupling<C, H, W, M, N, E, D>
where
    M: MaskKind,
    N: Conditioner<E, D, CIn = Doubled<C>, COut = Doubled<C>>,
    Const<C>: Double,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Img = Img<C, H, W>;

    fn try_forward_cond<T: Tape<E, D>>(
        &self,
        z: Tensor<Self::Img, E, D, T>,
        ldj: Ldj<E, D, T>,
        cond: &Tensor<Self::Img, E, D>,
    ) -> Result<(Tensor<Self::Img, E, D, T>, Ldj<E, D, T>), D::Err> {
        self.try_couple(z, ldj, Some(cond), false)
    }

    fn try_inverse_cond(
        &self,
        z: Tensor<Self::Img, E, D>,
        cond: &Tensor<Self::Img, E, D>,
    ) -> Result<Tensor<Self::Img, E, D>, D::Err> {
        let ldj = z.device().try_zeros_like(&(z.shape().0,))?;
        Ok(self.try_couple(z, ldj, Some(cond), true)?.0)
    }

    fn describe_cond(&self, layers: &mut Vec<LayerInfo>) {
        let shape = format!("{C}x{H}x{W}");
        layers.push(LayerInfo {
            name: format!("{} | conditioned", self.summary()),
            input: shape.clone(),
            output: shape,
            params: self.num_trainable_params(),
        });
    }
}
