//! The [`Flow`] trait, the devices flows run on ([`FlowDevice`]), the run-time context
//! [`FlowCtx`], and composition by [`Chain`](crate::Chain).
use crate::classes::{ClassBatch, Labels};
pub use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::layers::coupling_op::AffineCouplingOps;
use crate::nn::{GlowNetOps, NetDevice};
use crate::shape::describe_img;
use dfdx::prelude::*;

/// The devices flows run on: dfdx's `Cpu` (and `Cuda` with feature `cuda`). Beyond dfdx's
/// `Device`, the ops of the conditioner networks ([`NetDevice`]: convolution, fused elementwise
/// ops, the whole network; Glow's network, [`GlowNetOps`]) and the affine coupling transform
/// ([`AffineCouplingOps`]), whose default methods compose dfdx ops and which the CPU
/// overrides with its own kernels.
pub trait FlowDevice<E: FlowDtype>: NetDevice<E> + AffineCouplingOps<E> + GlowNetOps<E> {}
impl<E: FlowDtype, D: NetDevice<E> + AffineCouplingOps<E> + GlowNetOps<E>> FlowDevice<E> for D {}

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
/// - `classes`: the class of each image, for class-conditional layers (see
///   [`classes`](crate::classes)); `None` for an unconditional flow.
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
    /// The class of each image of the batch, for class-conditional layers.
    pub classes: Option<ClassBatch>,
}

impl<E> Default for FlowCtx<E> {
    fn default() -> Self {
        Self {
            dequant_noise: None,
            latents: Vec::new(),
            record_latents: false,
            temperature: 1.0,
            classes: None,
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
    /// A context with fixed dequantization noise: one value in `[0, 1)` per input value of the
    /// batch (batch × C × H × W, image after image).
    ///
    /// The noise is taken by the next pass through a dequantization layer: for a second
    /// deterministic call, give a new context (`FlowCtx::with_noise(noise.clone())`); a reused
    /// one draws random noise. Noise of another length, or with a value outside `[0, 1)`, is
    /// an error ([`FlowError::NoiseLength`], [`FlowError::NoiseValue`]) that leaves it in place.
    pub fn with_noise(noise: Vec<E>) -> Self {
        Self {
            dequant_noise: Some(noise),
            ..Default::default()
        }
    }
}

impl<E> FlowCtx<E> {
    /// This context with the class of each image, for a class-conditional flow.
    pub fn with_labels<const K: usize>(mut self, labels: Labels<K>) -> Self {
        self.classes = Some(labels.into());
        self
    }

    /// The labels for a class-conditional layer `layer` of `classes` classes on a batch of
    /// `batch` images: an error that says what is missing if the context has none, has labels
    /// for another number of classes, or not one label per image.
    pub fn class_labels<DeviceErr>(
        &self,
        classes: usize,
        batch: usize,
        layer: impl FnOnce() -> String,
    ) -> Result<&[usize], FlowError<DeviceErr>> {
        let Some(given) = &self.classes else {
            return Err(FlowError::Labels(format!(
                "{} is class-conditional: give the class of each image (the `_given` methods of \
                 ImageFlow, or FlowCtx::with_labels)",
                layer()
            )));
        };
        if given.classes() != classes {
            return Err(FlowError::Labels(format!(
                "{} is conditioned on {classes} classes, but the labels are for {}",
                layer(),
                given.classes()
            )));
        }
        if given.labels().len() != batch {
            return Err(FlowError::Labels(format!(
                "{} got {} labels for a batch of {batch} images (give one per image)",
                layer(),
                given.labels().len()
            )));
        }
        Ok(given.labels())
    }
}

impl<E: FlowDtype> FlowCtx<E> {
    /// Checks that the dequantization noise, if any, has `expected` values, each in `[0, 1)`.
    pub fn check_noise<DeviceErr>(&self, expected: usize) -> Result<(), FlowError<DeviceErr>> {
        let Some(noise) = &self.dequant_noise else {
            return Ok(());
        };
        if noise.len() != expected {
            return Err(FlowError::NoiseLength {
                expected,
                got: noise.len(),
            });
        }
        match noise
            .iter()
            .position(|&u| !(u >= E::zero() && u < E::one()))
        {
            Some(index) => Err(FlowError::NoiseValue {
                index,
                value: noise[index].to_f64().unwrap_or(f64::NAN),
            }),
            None => Ok(()),
        }
    }

    /// The temperature as `E`, if it is a finite number `>= 0`.
    pub fn checked_temperature<DeviceErr>(&self) -> Result<E, FlowError<DeviceErr>> {
        let t = self.temperature;
        match E::from_f64(t) {
            Some(v) if t.is_finite() && t >= 0.0 => Ok(v),
            _ => Err(FlowError::Temperature(t)),
        }
    }
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a flow on `{E}` tensors on `{D}`",
    label = "not a `Flow<{E}, {D}>`",
    note = "all layers of a flow must be flow layers with the same element type and device (`f32` or `f64`; `Cpu` or `Cuda`); convert a model with `to_dtype`/`to_device`"
)]
pub trait Flow<E: FlowDtype, D: FlowDevice<E>>: TensorCollection<E, D, To<E, D> = Self> {
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
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>>;

    /// Sampling direction: `z ↦ x`.
    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>>;

    /// Whether a layer in this flow still waits for its data-dependent initialisation
    /// ([`Flow::try_initialize`]; e.g. Glow's ActNorm). Default: no.
    fn needs_initialization(&self) -> bool {
        false
    }

    /// Data-dependent initialisation: passes `x` through in the density direction, letting each
    /// layer that is initialised from data and not yet initialised set its parameters from the
    /// batch it receives. Returns the output. The default (a layer without such parameters)
    /// only passes `x` through; a composite passes it through its parts in order.
    ///
    /// # Errors
    /// As [`Flow::try_forward`], and [`FlowError::Argument`] for a batch a layer cannot be
    /// initialised from (empty, or not finite).
    fn try_initialize(
        &mut self,
        x: Tensor<Self::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {
        forward_values(self, x, ctx)
    }

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

/// `flow`'s output for `x` in the density direction, without the log-determinant (no tape):
/// what an initialisation pass hands on to the next layer.
pub(crate) fn forward_values<F: Flow<E, D>, E: FlowDtype, D: FlowDevice<E>>(
    flow: &F,
    x: Tensor<F::In, E, D>,
    ctx: &mut FlowCtx<E>,
) -> Result<Tensor<F::Out, E, D>, FlowError<D::Err>> {
    let ldj = x.device().try_zeros_like(&(x.shape().concrete()[0],))?;
    Ok(flow.try_forward(x, ldj, ctx)?.0)
}

/// Elements per image of a batched shape `(batch, …)`: the product of every axis but the first
/// (unlike `num_elements() / batch`, defined for an empty batch).
pub(crate) fn per_image<S: Shape>(shape: &S) -> usize {
    shape.concrete().into_iter().skip(1).product()
}
