//! The [`Flow`] trait, its run-time context [`FlowCtx`], and composition by [`Chain`].
use crate::shape::describe_img;
use crate::{FlowDevice, FlowDtype};
use dfdx::prelude::*;

/// The log-determinant accumulator: one value per image of the batch.
pub type Ldj<E, D, T> = Tensor<(usize,), E, D, T>;

/// A batch-of-images shape with compile-time channels, height and width: `(usize, C, H, W)`.
pub trait ImgShape: Shape<Concrete = [usize; 4]> {
    /// Channels.
    const C: usize;
    /// Height.
    const H: usize;
    /// Width.
    const W: usize;
    /// Dimensions per image, `C·H·W`.
    const NUMEL: usize = Self::C * Self::H * Self::W;
    /// This shape for a batch of `batch` images.
    fn with_batch(batch: usize) -> Self;
}

impl<C: ConstDim, H: ConstDim, W: ConstDim> ImgShape for (usize, C, H, W) {
    const C: usize = C::SIZE;
    const H: usize = H::SIZE;
    const W: usize = W::SIZE;
    fn with_batch(batch: usize) -> Self {
        (batch, C::default(), H::default(), W::default())
    }
}

/// What a pass through a flow may take from, or give to, its caller besides tensors.
///
/// - `dequant_noise`: the dequantization noise `u ∈ [0, 1)` (one value per input dimension, in
///   the layout of the input batch). `None` draws it uniformly at random; giving it makes
///   likelihoods deterministic and comparable across implementations.
/// - `latents`: the parts that split layers take off. In the density direction they are
///   recorded here when `record_latents` is set; in the sampling direction a split layer takes
///   the last entry if there is one (so `inverse(forward(x))` is exact), and otherwise draws
///   from the prior with standard deviation `temperature`.
#[derive(Clone, Debug)]
pub struct FlowCtx<E> {
    /// Dequantization noise `u ∈ [0, 1)` for the next dequantization layer, or `None` to draw it.
    pub dequant_noise: Option<Vec<E>>,
    /// Latents split off in the density direction (outermost first).
    pub latents: Vec<Vec<E>>,
    /// Whether the density direction records split-off latents into `latents`.
    pub record_latents: bool,
    /// Standard deviation of the prior when split layers draw latents while sampling.
    pub temperature: f64,
}

impl<E> Default for FlowCtx<E> {
    fn default() -> Self {
        Self {
            dequant_noise: None,
            latents: Vec::new(),
            record_latents: false,
            temperature: 1.0,
        }
    }
}

impl<E> FlowCtx<E> {
    /// A context that records split-off latents, for an exact round trip.
    pub fn recording() -> Self {
        Self {
            record_latents: true,
            ..Default::default()
        }
    }
    /// A context with fixed dequantization noise.
    pub fn with_noise(noise: Vec<E>) -> Self {
        Self {
            dequant_noise: Some(noise),
            ..Default::default()
        }
    }
}

/// Draws `N(0, 1)` samples on the device by Box–Muller from two uniform draws (dfdx's
/// `sample_normal` needs a `StandardNormal: Distribution<E>` bound that generic code would
/// have to carry everywhere).
pub fn standard_normal<S: Shape, E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
    shape: &S,
) -> Result<Tensor<S, E, D>, D::Err> {
    let uniform = rand_distr::Uniform::new(E::zero(), E::one());
    // 1 − u ∈ (0, 1] keeps the logarithm finite.
    let radius = dev
        .try_sample_like(shape, rand_distr::Uniform::new(E::zero(), E::one()))?
        .try_negate()?
        .try_add(E::one())?
        .try_ln()?
        .try_mul(E::from_f64(-2.0).unwrap())?
        .try_sqrt()?;
    let angle = dev
        .try_sample_like(shape, uniform)?
        .try_mul(E::from_f64(2.0 * std::f64::consts::PI).unwrap())?
        .try_cos()?;
    radius.try_mul(angle)
}

/// One row of a model summary: see [`Flow::describe`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// Layer name, e.g. `Coupling(checkerboard, hidden 32)`.
    pub name: String,
    /// Input shape per image, `CxHxW`.
    pub input: String,
    /// Output shape per image, `CxHxW`.
    pub output: String,
    /// Trainable parameters.
    pub params: usize,
}

/// An invertible layer with a tractable log-determinant, mapping images of shape [`Flow::In`]
/// to [`Flow::Out`].
///
/// - [`Flow::try_forward`] is the density direction (image → latent), generic over the tape so
///   that it trains (`OwnedTape`) and evaluates (`NoneTape`) with the same code; it adds the
///   layer's `log |det ∂out/∂in|` to `ldj`.
/// - [`Flow::try_inverse`] is the sampling direction (latent → image), without a tape.
///
/// Every flow is also a dfdx [`TensorCollection`], so optimizers, `reset_params`,
/// `num_trainable_params`, `to_dtype` and safetensors work on it.
pub trait Flow<E: FlowDtype, D: FlowDevice<E>>: TensorCollection<E, D> {
    /// Input shape (density direction).
    type In: ImgShape;
    /// Output shape (density direction).
    type Out: ImgShape;

    /// Density direction: `x ↦ z`, adding `log |det J|` to `ldj`.
    #[allow(clippy::type_complexity)]
    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err>;

    /// Sampling direction: `z ↦ x`.
    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err>;

    /// A short human-readable name of the layer.
    fn name(&self) -> String;

    /// Appends one [`LayerInfo`] per layer (a composite appends its parts).
    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        layers.push(LayerInfo {
            name: self.name(),
            input: describe_img(&Self::In::with_batch(1)),
            output: describe_img(&Self::Out::with_batch(1)),
            params: self.num_trainable_params(),
        });
    }
}

/// A flow made of flows, applied in order: `Chain((a, b, c))` runs `a`, then `b`, then `c`.
///
/// It is a flow only if each layer's output shape is the next layer's input shape, so a stack
/// that does not fit does not compile. Its tensors are named by flat position (`0.…`, `1.…`),
/// like a PyTorch `ModuleList`. Implemented for tuples of 1 to 16 layers.
#[derive(Clone, Debug, Default)]
pub struct Chain<T>(pub T);

// The impls below are written out for 1 to 16 layers by a small generator (dfdx implements
// `ModuleFields` for tuples of at most 6 fields, so the fields are visited in nested groups).

impl<E: FlowDtype, D: FlowDevice<E>, L0: TensorCollection<E, D>> TensorCollection<E, D>
    for Chain<(L0,)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(L0::To<E2, D2>,)>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),),
            |(x0,)| Chain((x0,)),
        )
    }
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: BuildOnDevice<D, E>> BuildOnDevice<D, E> for Chain<(L0,)>
where
    Chain<(L0::Built,)>: BuildModule<D, E>,
{
    type Built = Chain<(L0::Built,)>;
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: Flow<E, D>> Flow<E, D> for Chain<(L0,)> {
    type In = L0::In;
    type Out = L0::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
    }
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: TensorCollection<E, D>, L1: TensorCollection<E, D>>
    TensorCollection<E, D> for Chain<(L0, L1)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(L0::To<E2, D2>, L1::To<E2, D2>)>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
            ),
            |(x0, x1)| Chain((x0, x1)),
        )
    }
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: BuildOnDevice<D, E>, L1: BuildOnDevice<D, E>>
    BuildOnDevice<D, E> for Chain<(L0, L1)>
where
    Chain<(L0::Built, L1::Built)>: BuildModule<D, E>,
{
    type Built = Chain<(L0::Built, L1::Built)>;
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: Flow<E, D>, L1: Flow<E, D>> Flow<E, D> for Chain<(L0, L1)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L1::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(L0::To<E2, D2>, L1::To<E2, D2>, L2::To<E2, D2>)>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
            ),
            |(x0, x1, x2)| Chain((x0, x1, x2)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2)>
where
    Chain<(L0::Built, L1::Built, L2::Built)>: BuildModule<D, E>,
{
    type Built = Chain<(L0::Built, L1::Built, L2::Built)>;
}

impl<E: FlowDtype, D: FlowDevice<E>, L0: Flow<E, D>, L1: Flow<E, D>, L2: Flow<E, D>> Flow<E, D>
    for Chain<(L0, L1, L2)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L2::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
            ),
            |(x0, x1, x2, x3)| Chain((x0, x1, x2, x3)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3)>
where
    Chain<(L0::Built, L1::Built, L2::Built, L3::Built)>: BuildModule<D, E>,
{
    type Built = Chain<(L0::Built, L1::Built, L2::Built, L3::Built)>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L3::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
            ),
            |(x0, x1, x2, x3, x4)| Chain((x0, x1, x2, x3, x4)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4)>
where
    Chain<(L0::Built, L1::Built, L2::Built, L3::Built, L4::Built)>: BuildModule<D, E>,
{
    type Built = Chain<(L0::Built, L1::Built, L2::Built, L3::Built, L4::Built)>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L4::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
            ),
            |(x0, x1, x2, x3, x4, x5)| Chain((x0, x1, x2, x3, x4, x5)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L5::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6,))| Chain((x0, x1, x2, x3, x4, x5, x6)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L6::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7))| Chain((x0, x1, x2, x3, x4, x5, x6, x7)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L7::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8))| Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8)),
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L8::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9))| {
                Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8, x9))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L9::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10))| {
                Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L10::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
        L11: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
        L11::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                    Self::module("11", |s| &s.0 .11, |s| &mut s.0 .11),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10, x11))| {
                Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
        L11: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
        L11: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
    L11: Flow<E, D, In = <L10 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L11::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .11.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .11.try_inverse(z, ctx)?;
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
        self.0 .11.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
        L11: TensorCollection<E, D>,
        L12: TensorCollection<E, D>,
    > TensorCollection<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
        L11::To<E2, D2>,
        L12::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                    Self::module("11", |s| &s.0 .11, |s| &mut s.0 .11),
                ),
                (Self::module("12", |s| &s.0 .12, |s| &mut s.0 .12),),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10, x11), (x12,))| {
                Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
        L11: BuildOnDevice<D, E>,
        L12: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
        L11: Flow<E, D>,
        L12: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
    L11: Flow<E, D, In = <L10 as Flow<E, D>>::Out>,
    L12: Flow<E, D, In = <L11 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L12::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .11.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .12.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .12.try_inverse(z, ctx)?;
        let z = self.0 .11.try_inverse(z, ctx)?;
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
        self.0 .11.describe(layers);
        self.0 .12.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
        L11: TensorCollection<E, D>,
        L12: TensorCollection<E, D>,
        L13: TensorCollection<E, D>,
    > TensorCollection<E, D>
    for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13)>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
        L11::To<E2, D2>,
        L12::To<E2, D2>,
        L13::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                    Self::module("11", |s| &s.0 .11, |s| &mut s.0 .11),
                ),
                (
                    Self::module("12", |s| &s.0 .12, |s| &mut s.0 .12),
                    Self::module("13", |s| &s.0 .13, |s| &mut s.0 .13),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10, x11), (x12, x13))| {
                Chain((x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
        L11: BuildOnDevice<D, E>,
        L12: BuildOnDevice<D, E>,
        L13: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13)>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
        L11: Flow<E, D>,
        L12: Flow<E, D>,
        L13: Flow<E, D>,
    > Flow<E, D> for Chain<(L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13)>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
    L11: Flow<E, D, In = <L10 as Flow<E, D>>::Out>,
    L12: Flow<E, D, In = <L11 as Flow<E, D>>::Out>,
    L13: Flow<E, D, In = <L12 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L13::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .11.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .12.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .13.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .13.try_inverse(z, ctx)?;
        let z = self.0 .12.try_inverse(z, ctx)?;
        let z = self.0 .11.try_inverse(z, ctx)?;
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
        self.0 .11.describe(layers);
        self.0 .12.describe(layers);
        self.0 .13.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
        L11: TensorCollection<E, D>,
        L12: TensorCollection<E, D>,
        L13: TensorCollection<E, D>,
        L14: TensorCollection<E, D>,
    > TensorCollection<E, D>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
    )>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
        L11::To<E2, D2>,
        L12::To<E2, D2>,
        L13::To<E2, D2>,
        L14::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                    Self::module("11", |s| &s.0 .11, |s| &mut s.0 .11),
                ),
                (
                    Self::module("12", |s| &s.0 .12, |s| &mut s.0 .12),
                    Self::module("13", |s| &s.0 .13, |s| &mut s.0 .13),
                    Self::module("14", |s| &s.0 .14, |s| &mut s.0 .14),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10, x11), (x12, x13, x14))| {
                Chain((
                    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14,
                ))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
        L11: BuildOnDevice<D, E>,
        L12: BuildOnDevice<D, E>,
        L13: BuildOnDevice<D, E>,
        L14: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
    )>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
        L14::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
        L14::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
        L11: Flow<E, D>,
        L12: Flow<E, D>,
        L13: Flow<E, D>,
        L14: Flow<E, D>,
    > Flow<E, D>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
    )>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
    L11: Flow<E, D, In = <L10 as Flow<E, D>>::Out>,
    L12: Flow<E, D, In = <L11 as Flow<E, D>>::Out>,
    L13: Flow<E, D, In = <L12 as Flow<E, D>>::Out>,
    L14: Flow<E, D, In = <L13 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L14::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .11.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .12.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .13.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .14.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .14.try_inverse(z, ctx)?;
        let z = self.0 .13.try_inverse(z, ctx)?;
        let z = self.0 .12.try_inverse(z, ctx)?;
        let z = self.0 .11.try_inverse(z, ctx)?;
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
        self.0 .11.describe(layers);
        self.0 .12.describe(layers);
        self.0 .13.describe(layers);
        self.0 .14.describe(layers);
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: TensorCollection<E, D>,
        L1: TensorCollection<E, D>,
        L2: TensorCollection<E, D>,
        L3: TensorCollection<E, D>,
        L4: TensorCollection<E, D>,
        L5: TensorCollection<E, D>,
        L6: TensorCollection<E, D>,
        L7: TensorCollection<E, D>,
        L8: TensorCollection<E, D>,
        L9: TensorCollection<E, D>,
        L10: TensorCollection<E, D>,
        L11: TensorCollection<E, D>,
        L12: TensorCollection<E, D>,
        L13: TensorCollection<E, D>,
        L14: TensorCollection<E, D>,
        L15: TensorCollection<E, D>,
    > TensorCollection<E, D>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
        L15,
    )>
{
    type To<E2: Dtype, D2: Device<E2>> = Chain<(
        L0::To<E2, D2>,
        L1::To<E2, D2>,
        L2::To<E2, D2>,
        L3::To<E2, D2>,
        L4::To<E2, D2>,
        L5::To<E2, D2>,
        L6::To<E2, D2>,
        L7::To<E2, D2>,
        L8::To<E2, D2>,
        L9::To<E2, D2>,
        L10::To<E2, D2>,
        L11::To<E2, D2>,
        L12::To<E2, D2>,
        L13::To<E2, D2>,
        L14::To<E2, D2>,
        L15::To<E2, D2>,
    )>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("0", |s| &s.0 .0, |s| &mut s.0 .0),
                    Self::module("1", |s| &s.0 .1, |s| &mut s.0 .1),
                    Self::module("2", |s| &s.0 .2, |s| &mut s.0 .2),
                    Self::module("3", |s| &s.0 .3, |s| &mut s.0 .3),
                    Self::module("4", |s| &s.0 .4, |s| &mut s.0 .4),
                    Self::module("5", |s| &s.0 .5, |s| &mut s.0 .5),
                ),
                (
                    Self::module("6", |s| &s.0 .6, |s| &mut s.0 .6),
                    Self::module("7", |s| &s.0 .7, |s| &mut s.0 .7),
                    Self::module("8", |s| &s.0 .8, |s| &mut s.0 .8),
                    Self::module("9", |s| &s.0 .9, |s| &mut s.0 .9),
                    Self::module("10", |s| &s.0 .10, |s| &mut s.0 .10),
                    Self::module("11", |s| &s.0 .11, |s| &mut s.0 .11),
                ),
                (
                    Self::module("12", |s| &s.0 .12, |s| &mut s.0 .12),
                    Self::module("13", |s| &s.0 .13, |s| &mut s.0 .13),
                    Self::module("14", |s| &s.0 .14, |s| &mut s.0 .14),
                    Self::module("15", |s| &s.0 .15, |s| &mut s.0 .15),
                ),
            ),
            |((x0, x1, x2, x3, x4, x5), (x6, x7, x8, x9, x10, x11), (x12, x13, x14, x15))| {
                Chain((
                    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
                ))
            },
        )
    }
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: BuildOnDevice<D, E>,
        L1: BuildOnDevice<D, E>,
        L2: BuildOnDevice<D, E>,
        L3: BuildOnDevice<D, E>,
        L4: BuildOnDevice<D, E>,
        L5: BuildOnDevice<D, E>,
        L6: BuildOnDevice<D, E>,
        L7: BuildOnDevice<D, E>,
        L8: BuildOnDevice<D, E>,
        L9: BuildOnDevice<D, E>,
        L10: BuildOnDevice<D, E>,
        L11: BuildOnDevice<D, E>,
        L12: BuildOnDevice<D, E>,
        L13: BuildOnDevice<D, E>,
        L14: BuildOnDevice<D, E>,
        L15: BuildOnDevice<D, E>,
    > BuildOnDevice<D, E>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
        L15,
    )>
where
    Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
        L14::Built,
        L15::Built,
    )>: BuildModule<D, E>,
{
    type Built = Chain<(
        L0::Built,
        L1::Built,
        L2::Built,
        L3::Built,
        L4::Built,
        L5::Built,
        L6::Built,
        L7::Built,
        L8::Built,
        L9::Built,
        L10::Built,
        L11::Built,
        L12::Built,
        L13::Built,
        L14::Built,
        L15::Built,
    )>;
}

impl<
        E: FlowDtype,
        D: FlowDevice<E>,
        L0: Flow<E, D>,
        L1: Flow<E, D>,
        L2: Flow<E, D>,
        L3: Flow<E, D>,
        L4: Flow<E, D>,
        L5: Flow<E, D>,
        L6: Flow<E, D>,
        L7: Flow<E, D>,
        L8: Flow<E, D>,
        L9: Flow<E, D>,
        L10: Flow<E, D>,
        L11: Flow<E, D>,
        L12: Flow<E, D>,
        L13: Flow<E, D>,
        L14: Flow<E, D>,
        L15: Flow<E, D>,
    > Flow<E, D>
    for Chain<(
        L0,
        L1,
        L2,
        L3,
        L4,
        L5,
        L6,
        L7,
        L8,
        L9,
        L10,
        L11,
        L12,
        L13,
        L14,
        L15,
    )>
where
    L1: Flow<E, D, In = <L0 as Flow<E, D>>::Out>,
    L2: Flow<E, D, In = <L1 as Flow<E, D>>::Out>,
    L3: Flow<E, D, In = <L2 as Flow<E, D>>::Out>,
    L4: Flow<E, D, In = <L3 as Flow<E, D>>::Out>,
    L5: Flow<E, D, In = <L4 as Flow<E, D>>::Out>,
    L6: Flow<E, D, In = <L5 as Flow<E, D>>::Out>,
    L7: Flow<E, D, In = <L6 as Flow<E, D>>::Out>,
    L8: Flow<E, D, In = <L7 as Flow<E, D>>::Out>,
    L9: Flow<E, D, In = <L8 as Flow<E, D>>::Out>,
    L10: Flow<E, D, In = <L9 as Flow<E, D>>::Out>,
    L11: Flow<E, D, In = <L10 as Flow<E, D>>::Out>,
    L12: Flow<E, D, In = <L11 as Flow<E, D>>::Out>,
    L13: Flow<E, D, In = <L12 as Flow<E, D>>::Out>,
    L14: Flow<E, D, In = <L13 as Flow<E, D>>::Out>,
    L15: Flow<E, D, In = <L14 as Flow<E, D>>::Out>,
{
    type In = L0::In;
    type Out = L15::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), D::Err> {
        let (x, ldj) = self.0 .0.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .1.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .2.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .3.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .4.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .5.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .6.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .7.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .8.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .9.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .10.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .11.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .12.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .13.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .14.try_forward(x, ldj, ctx)?;
        let (x, ldj) = self.0 .15.try_forward(x, ldj, ctx)?;
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, D::Err> {
        let z = self.0 .15.try_inverse(z, ctx)?;
        let z = self.0 .14.try_inverse(z, ctx)?;
        let z = self.0 .13.try_inverse(z, ctx)?;
        let z = self.0 .12.try_inverse(z, ctx)?;
        let z = self.0 .11.try_inverse(z, ctx)?;
        let z = self.0 .10.try_inverse(z, ctx)?;
        let z = self.0 .9.try_inverse(z, ctx)?;
        let z = self.0 .8.try_inverse(z, ctx)?;
        let z = self.0 .7.try_inverse(z, ctx)?;
        let z = self.0 .6.try_inverse(z, ctx)?;
        let z = self.0 .5.try_inverse(z, ctx)?;
        let z = self.0 .4.try_inverse(z, ctx)?;
        let z = self.0 .3.try_inverse(z, ctx)?;
        let z = self.0 .2.try_inverse(z, ctx)?;
        let z = self.0 .1.try_inverse(z, ctx)?;
        let z = self.0 .0.try_inverse(z, ctx)?;
        Ok(z)
    }

    fn name(&self) -> String {
        "Chain".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        self.0 .0.describe(layers);
        self.0 .1.describe(layers);
        self.0 .2.describe(layers);
        self.0 .3.describe(layers);
        self.0 .4.describe(layers);
        self.0 .5.describe(layers);
        self.0 .6.describe(layers);
        self.0 .7.describe(layers);
        self.0 .8.describe(layers);
        self.0 .9.describe(layers);
        self.0 .10.describe(layers);
        self.0 .11.describe(layers);
        self.0 .12.describe(layers);
        self.0 .13.describe(layers);
        self.0 .14.describe(layers);
        self.0 .15.describe(layers);
    }
}
