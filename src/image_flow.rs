//! [`ImageFlow`]: a flow with a standard normal prior on its output — likelihoods, bits per
//! dimension, importance sampling and sampling; for a class-conditional flow also given the
//! class, marginalised over the classes, and the most likely class.
use crate::classes::{ClassBatch, Labels};
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo, Ldj};
use crate::prior::{standard_normal, standard_normal_log_prob};
use dfdx::prelude::*;

/// The tutorial's `ImageFlow`: `flows` map images to a latent with a standard normal prior.
///
/// `log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|`, and bits per dimension
/// `bpd = −log p(x) · log₂(e) / (C·H·W)`. Tensor names start with `flows.`.
///
/// `K` is the number of classes of a class-conditional flow (0, the default: unconditional):
/// its class-conditional layers ([`ClassPrior`](crate::layers::ClassPrior), …) read the class
/// of each image, which the `_given` methods take as [`Labels<K>`] (or one-hot rows of `K`), so
/// labels for another number of classes do not compile. Build one with
/// [`ImageFlow::new_conditional`].
#[derive(Clone, Debug)]
pub struct ImageFlow<F, const K: usize = 0> {
    /// The flow layers.
    pub flows: F,
    /// Importance samples for [`ImageFlow::importance_bpd`] (the tutorial's default: 8).
    pub import_samples: usize,
}

/// The tutorial's number of importance samples.
pub const IMPORT_SAMPLES: usize = 8;

impl<F> ImageFlow<F> {
    /// Wraps a flow with the default of 8 importance samples.
    pub fn new(flows: F) -> Self {
        Self {
            flows,
            import_samples: IMPORT_SAMPLES,
        }
    }

    /// Builds the flow `F` with fresh parameters on `dev`.
    ///
    /// Unlike dfdx's `dev.build_module::<F, E>()`, which builds any module, this requires `F`
    /// to be a [`Flow`]: a stack whose shapes do not fit is rejected here, with a compiler
    /// message that names the layers and their shapes. The element type comes from the layers.
    ///
    /// ```
    /// use dfdx::prelude::*;
    /// use dfdx_flows::prelude::*;
    ///
    /// type Tiny = Chain<(Dequantization<1, 4, 4>, CheckerboardCoupling<1, 4, 4, 8, false, f32, Cpu>)>;
    /// let dev: Cpu = Default::default();
    /// let flow = ImageFlow::<Tiny>::build(&dev);
    /// assert_eq!(flow.flows.num_trainable_params(), 4_715); // one coupling, hidden width 8
    /// ```
    pub fn build<E: FlowDtype, D: FlowDevice<E>>(dev: &D) -> Self
    where
        F: Flow<E, D>,
    {
        Self::try_build(dev).unwrap()
    }

    /// Fallible [`ImageFlow::build`].
    pub fn try_build<E: FlowDtype, D: FlowDevice<E>>(dev: &D) -> Result<Self, D::Err>
    where
        F: Flow<E, D>,
    {
        Ok(Self::new(F::try_build(dev)?))
    }
}

impl<F, const K: usize> ImageFlow<F, K> {
    /// Wraps a class-conditional flow on `K` classes, with the default of 8 importance samples.
    pub fn new_conditional(flows: F) -> Self {
        Self {
            flows,
            import_samples: IMPORT_SAMPLES,
        }
    }

    /// Builds the class-conditional flow `F` on `K` classes with fresh parameters on `dev` (as
    /// [`ImageFlow::try_build`]).
    pub fn try_build_conditional<E: FlowDtype, D: FlowDevice<E>>(dev: &D) -> Result<Self, D::Err>
    where
        F: Flow<E, D>,
    {
        Ok(Self::new_conditional(F::try_build(dev)?))
    }
}

impl<F: TensorCollection<E, D>, E: FlowDtype, D: FlowDevice<E>, const K: usize>
    TensorCollection<E, D> for ImageFlow<F, K>
{
    type To<E2: Dtype, D2: Device<E2>> = ImageFlow<F::To<E2, D2>, K>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::module("flows", |s| &s.flows, |s| &mut s.flows),
            ImageFlow::new_conditional,
        )
    }
}

impl<F, E, D, const K: usize> BuildOnDevice<D, E> for ImageFlow<F, K>
where
    F: TensorCollection<E, D, To<E, D> = F>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

/// `log₂(e)`.
const LOG2_E: f64 = std::f64::consts::LOG2_E;

impl<F, const K: usize> ImageFlow<F, K> {
    /// Maps images to their latent and the log-determinant of the whole flow.
    #[allow(clippy::type_complexity)]
    pub fn encode<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<F::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let batch = x.shape().concrete()[0];
        let ldj = x.device().try_zeros_like(&(batch,))?.retaped::<T>();
        if batch == 0 {
            // Nothing to transform; dfdx's CPU permute (squeeze) fails on empty tensors.
            let z = x.try_reshape_like(&F::Out::with_batch(0))?;
            return Ok((z, ldj));
        }
        self.flows.try_forward(x, ldj, ctx)
    }

    /// `log p(x)` per image (in nats), with the tape of `x` so it can be trained on.
    ///
    /// `x` holds integer pixel values `0..=255` as floats (not images scaled to `[0, 1]`: those
    /// give a finite but meaningless likelihood; values above 255 give NaN). The dequantization
    /// noise comes from `ctx` if given there (deterministic, see [`FlowCtx::with_noise`]), else
    /// is drawn.
    ///
    /// # Errors
    /// [`FlowError::Pixel`] if `x` holds a value that is not an integer in `0..=255` (for a flow
    /// that starts with a dequantization layer), [`FlowError::NoiseLength`] or
    /// [`FlowError::NoiseValue`] for noise in `ctx` that does not fit the batch, and
    /// [`FlowError::Device`] if the device fails.
    pub fn log_likelihood<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Ldj<E, D, T>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let (z, ldj) = self.encode(x, ctx)?;
        let shape = *z.shape();
        let z = z.try_reshape_like(&(
            shape.concrete()[0],
            Const::<1>,
            Const::<1>,
            crate::flow::per_image(&shape),
        ))?;
        Ok(ldj.try_add(standard_normal_log_prob(z)?)?)
    }

    /// Mean bits per dimension of the batch: the training loss (NaN for an empty batch).
    pub fn bpd<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Rank0, E, D, T>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        if x.shape().concrete()[0] == 0 {
            // The mean over no images is NaN (as in PyTorch); dfdx's mean divides by zero.
            let (x, tape) = x.split_tape();
            let nan = x.device().try_ones_like(&())?.try_mul(E::nan())?;
            return Ok(nan.put_tape(tape));
        }
        let scale = -LOG2_E / F::In::NUMEL as f64;
        Ok(self
            .log_likelihood(x, ctx)?
            .try_mul(E::from_f64(scale).unwrap())?
            .try_mean()?)
    }

    /// Bits per dimension of each image from `M = import_samples` dequantization draws:
    /// `log p(x) ≈ logsumexp_m log p(x + u_m) − ln M` (a tighter bound than one draw).
    pub fn importance_bpd<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
    ) -> Result<Vec<f64>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        self.importance_bpd_with(x, None)
    }

    /// [`ImageFlow::importance_bpd`] of `log p(x | y)`, the class of each image given.
    pub fn importance_bpd_given<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
        labels: &Labels<K>,
    ) -> Result<Vec<f64>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        check_label_count(labels.len(), x.shape().concrete()[0])?;
        self.importance_bpd_with(x, Some(labels.into()))
    }

    fn importance_bpd_with<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
        classes: Option<ClassBatch>,
    ) -> Result<Vec<f64>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        if x.shape().concrete()[0] == 0 {
            // dfdx 0.13's `as_vec` fails on an empty tensor.
            return Ok(Vec::new());
        }
        let m = self.import_samples.max(1);
        let mut samples: Vec<Vec<f64>> = Vec::with_capacity(m);
        for _ in 0..m {
            let mut ctx = FlowCtx {
                classes: classes.clone(),
                ..FlowCtx::default()
            };
            let ll = self.log_likelihood(x.clone(), &mut ctx)?;
            samples.push(
                ll.as_vec()
                    .into_iter()
                    .map(|v| v.to_f64().unwrap())
                    .collect(),
            );
        }
        let batch = samples[0].len();
        Ok((0..batch)
            .map(|i| {
                let max = samples
                    .iter()
                    .map(|s| s[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                let lse = max + samples.iter().map(|s| (s[i] - max).exp()).sum::<f64>().ln();
                -(lse - (m as f64).ln()) * LOG2_E / F::In::NUMEL as f64
            })
            .collect())
    }

    /// Data-dependent initialisation from the batch `x` (pixel values, as for
    /// [`ImageFlow::log_likelihood`]) of the layers that wait for it, such as
    /// [`ActNorm`](crate::layers::ActNorm); does nothing, not even a pass, when none does (the
    /// tutorial's models, or a model loaded from a checkpoint). The trainer calls it on the
    /// first batch of a fresh run; call it yourself before your own training loop.
    ///
    /// # Errors
    /// As [`Flow::try_initialize`], and [`FlowError::Argument`] for an empty batch.
    pub fn initialize<E: FlowDtype, D: FlowDevice<E>>(
        &mut self,
        x: Tensor<F::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(), FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        if !self.flows.needs_initialization() {
            return Ok(());
        }
        if x.shape().concrete()[0] == 0 {
            // Checked here, before any layer sees it: dfdx's CPU permute fails on empty tensors.
            return Err(FlowError::Argument(
                "initialisation from data needs a batch of at least one image".into(),
            ));
        }
        self.flows.try_initialize(x, ctx)?;
        Ok(())
    }

    /// Draws `n` images: latents from `N(0, temperature²)` (or `z_init`), through the inverse
    /// flow. Split layers draw their part the same way unless `ctx.latents` holds them.
    pub fn sample<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        dev: &D,
        n: usize,
        z_init: Option<Tensor<F::Out, E, D>>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<F::In, E, D>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let temperature = ctx.checked_temperature()?;
        let batch = z_init.as_ref().map_or(n, |z| z.shape().concrete()[0]);
        if !ctx.latents.is_empty() {
            // Check every recorded latent before the first split layer takes one, so that a
            // rejected call leaves the context as it was.
            let sizes = self.split_latent_sizes(dev)?;
            // The innermost split takes the last latent, and so on outwards.
            let pairs = ctx.latents.iter().rev().zip(sizes.iter().rev());
            for (from_inside, (latent, size)) in pairs.enumerate() {
                if latent.len() != batch * size {
                    return Err(FlowError::LatentLength {
                        layer: format!(
                            "split layer {} of {} (outermost first)",
                            sizes.len() - from_inside,
                            sizes.len()
                        ),
                        expected: batch * size,
                        got: latent.len(),
                    });
                }
            }
        }
        let z = match z_init {
            Some(z) => z,
            None => standard_normal(dev, &F::Out::with_batch(n))?.try_mul(temperature)?,
        };
        if batch == 0 {
            // As in `encode`: no images, nothing to transform.
            return Ok(z.try_reshape_like(&F::In::with_batch(0))?);
        }
        self.flows.try_inverse(z, ctx)
    }

    /// The number of values per image of each latent that split layers set aside (outermost
    /// first, as [`FlowCtx::latents`] records them); empty for a flow without splits. Found by
    /// encoding one blank image.
    pub fn split_latent_sizes<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        dev: &D,
    ) -> Result<Vec<usize>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let mut probe = FlowCtx {
            dequant_noise: Some(vec![E::from_f64(0.5).unwrap(); F::In::NUMEL]),
            record_latents: true,
            // A class-conditional flow needs a class for its blank image; any will do.
            classes: Labels::<K>::repeat(0, 1).ok().map(ClassBatch::from),
            ..FlowCtx::default()
        };
        self.encode(dev.try_zeros_like(&F::In::with_batch(1))?, &mut probe)?;
        Ok(probe.latents.iter().map(Vec::len).collect())
    }

    /// One row per layer: name, input and output shape, parameters.
    pub fn describe<E: FlowDtype, D: FlowDevice<E>>(&self) -> Vec<LayerInfo>
    where
        F: Flow<E, D>,
    {
        let mut rows = Vec::new();
        self.flows.describe(&mut rows);
        rows
    }
}

/// The class-conditional methods: the class of each image given, or summed over.
impl<F, const K: usize> ImageFlow<F, K> {
    /// `log p(x | y)` per image (in nats), the class `y` of each image given; otherwise as
    /// [`ImageFlow::log_likelihood`]. `ctx` is left with the classes it had.
    ///
    /// # Errors
    /// As [`ImageFlow::log_likelihood`], and [`FlowError::Labels`] if there is not one label
    /// per image.
    pub fn log_likelihood_given<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        labels: &Labels<K>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Ldj<E, D, T>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        check_label_count(labels.len(), x.shape().concrete()[0])?;
        let saved = ctx.classes.replace(labels.into());
        let result = self.log_likelihood(x, ctx);
        ctx.classes = saved;
        result
    }

    /// [`ImageFlow::log_likelihood_given`] with the classes as one-hot rows (`K` columns).
    ///
    /// # Errors
    /// [`FlowError::Labels`] for a row that is not one-hot, and as
    /// [`ImageFlow::log_likelihood_given`].
    pub fn log_likelihood_one_hot<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        one_hot: &Tensor<(usize, Const<K>), E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Ldj<E, D, T>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let labels = Labels::from_one_hot(one_hot).map_err(|e| FlowError::Labels(e.to_string()))?;
        self.log_likelihood_given(x, &labels, ctx)
    }

    /// Mean bits per dimension of `log p(x | y)` over the batch: the training loss of a
    /// class-conditional flow.
    pub fn bpd_given<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<F::In, E, D, T>,
        labels: &Labels<K>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Rank0, E, D, T>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        check_label_count(labels.len(), x.shape().concrete()[0])?;
        let saved = ctx.classes.replace(labels.into());
        let result = self.bpd(x, ctx);
        ctx.classes = saved;
        result
    }

    /// `log p(x | y)` of every image for every class `y` (in nats; row `i` holds image `i`'s
    /// `K` values), all with the same dequantization noise: `ctx`'s if it has some (taken as
    /// by any pass), else one draw.
    pub fn class_log_likelihoods<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Vec<[f64; K]>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let shape = *x.shape();
        let batch = shape.concrete()[0];
        if K == 0 {
            return Err(FlowError::Argument(
                "class log-likelihoods need a class-conditional model (ImageFlow<F, K> with K \
                 classes)"
                    .into(),
            ));
        }
        ctx.check_noise(batch * F::In::NUMEL)?;
        if batch == 0 {
            return Ok(Vec::new());
        }
        let noise = match ctx.dequant_noise.take() {
            Some(noise) => noise,
            None => x
                .device()
                .try_sample_like(&shape, rand_distr::Uniform::new(E::zero(), E::one()))?
                .as_vec(),
        };
        let mut rows = vec![[0.0; K]; batch];
        for class in 0..K {
            let labels = Labels::<K>::repeat(class, batch)
                .map_err(|e| FlowError::Argument(e.to_string()))?;
            let mut pass = FlowCtx::with_noise(noise.clone());
            let ll = self.log_likelihood_given(x.clone(), &labels, &mut pass)?;
            for (row, v) in rows.iter_mut().zip(ll.as_vec()) {
                row[class] = v.to_f64().unwrap_or(f64::NAN);
            }
        }
        Ok(rows)
    }

    /// `log p(x) = log Σ_y p(x | y) p(y)` per image (in nats), with the classes equally likely
    /// (`p(y) = 1/K`; MNIST's digits are within 10 % of that), from
    /// [`ImageFlow::class_log_likelihoods`].
    pub fn marginal_log_likelihood<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Vec<f64>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let rows = self.class_log_likelihoods(x, ctx)?;
        Ok(rows
            .iter()
            .map(|row| {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - (K as f64).ln()
            })
            .collect())
    }

    /// The most likely class of each image, `argmax_y p(x | y)` (the flow as a classifier).
    pub fn classify<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        x: &Tensor<F::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Vec<usize>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        let rows = self.class_log_likelihoods(x, ctx)?;
        Ok(rows
            .iter()
            .map(|row| (0..K).fold(0, |best, y| if row[y] > row[best] { y } else { best }))
            .collect())
    }

    /// Data-dependent initialisation (as [`ImageFlow::initialize`]) of a class-conditional
    /// flow, the class of each image of the batch given.
    pub fn initialize_given<E: FlowDtype, D: FlowDevice<E>>(
        &mut self,
        x: Tensor<F::In, E, D>,
        labels: &Labels<K>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(), FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        check_label_count(labels.len(), x.shape().concrete()[0])?;
        let saved = ctx.classes.replace(labels.into());
        let result = self.initialize(x, ctx);
        ctx.classes = saved;
        result
    }

    /// Draws one image of each class in `labels` (as [`ImageFlow::sample`], with
    /// `n = labels.len()`).
    pub fn sample_given<E: FlowDtype, D: FlowDevice<E>>(
        &self,
        dev: &D,
        labels: &Labels<K>,
        z_init: Option<Tensor<F::Out, E, D>>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<F::In, E, D>, FlowError<D::Err>>
    where
        F: Flow<E, D>,
    {
        if let Some(z) = &z_init {
            check_label_count(labels.len(), z.shape().concrete()[0])?;
        }
        let saved = ctx.classes.replace(labels.into());
        let result = self.sample(dev, labels.len(), z_init, ctx);
        ctx.classes = saved;
        result
    }
}

/// One label per image, or an error that says how many there are of each.
fn check_label_count<DeviceErr>(labels: usize, batch: usize) -> Result<(), FlowError<DeviceErr>> {
    if labels == batch {
        Ok(())
    } else {
        Err(FlowError::Labels(format!(
            "{labels} labels for a batch of {batch} images (give one per image)"
        )))
    }
}
