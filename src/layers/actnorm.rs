//! ActNorm (Glow): a per-channel affine map whose parameters are first set from data.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// Below this standard deviation a channel counts as constant: ActNorm's initialisation leaves
/// its scale at 1 instead of dividing by (nearly) zero, which would make the scale huge and
/// the first steps diverge.
pub const ACTNORM_MIN_STD: f64 = 1e-6;

/// Activation normalisation on `C`×`H`×`W` images (Kingma & Dhariwal 2018, Glow):
/// `y = e^logs · (x + loc)` per channel, `log |det| = H·W·Σ logs`.
///
/// The scale is kept as its logarithm, so it stays positive and the layer invertible whatever
/// the optimizer does. Before training, [`Flow::try_initialize`] on a batch sets `loc` and
/// `logs` so that the layer's output has zero mean and unit variance per channel on that batch,
/// and marks the layer initialised; the trainer does this on the first batch of a fresh run.
/// The mark is the buffer `initialized`, saved in checkpoints like a parameter: a model loaded
/// from a checkpoint, or resumed, is never initialised again. A channel that is constant on the
/// batch (standard deviation below [`ACTNORM_MIN_STD`]) keeps the scale 1.
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`. Tensor names: `loc` (C), `logs` (C), `initialized` (1; a buffer,
/// not trained).
#[derive(Clone, Debug)]
pub struct ActNorm<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
    /// Per-channel shift, added before scaling; starts at 0.
    pub loc: Tensor<Rank1<C>, E, D>,
    /// Per-channel log-scale; starts at 0 (scale 1).
    pub logs: Tensor<Rank1<C>, E, D>,
    /// 1 once initialised from data, 0 before (a buffer, not trained). Set it to 1 to keep
    /// the parameters one has set by hand.
    pub initialized: Tensor<Rank1<1>, E, D>,
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    TensorCollection<E, D> for ActNorm<C, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = ActNorm<C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "loc",
                    |s| &s.loc,
                    |s| &mut s.loc,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "logs",
                    |s| &s.logs,
                    |s| &mut s.logs,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "initialized",
                    |s| &s.initialized,
                    |s| &mut s.initialized,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
            ),
            |(loc, logs, initialized)| ActNorm {
                loc,
                logs,
                initialized,
            },
        )
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    BuildOnDevice<D, E> for ActNorm<C, H, W, E, D>
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    ActNorm<C, H, W, E, D>
{
    /// Whether the parameters have been set from data (or marked as set).
    pub fn is_initialized(&self) -> bool {
        self.initialized.as_vec()[0] != E::zero()
    }

    /// Marks the layer as initialised (`true`: [`Flow::try_initialize`] leaves it alone) or not.
    pub fn set_initialized(&mut self, initialized: bool) {
        let flag = if initialized { E::one() } else { E::zero() };
        self.initialized.copy_from(&[flag]);
    }

    /// Sets `loc` and `logs` so that this batch comes out with zero mean and unit variance per
    /// channel, and marks the layer initialised.
    ///
    /// # Errors
    /// [`FlowError::Argument`] for an empty batch or a value that is not finite (the layer is
    /// left as it was).
    pub fn init_from_batch(
        &mut self,
        x: &Tensor<Img<C, H, W>, E, D>,
    ) -> Result<(), FlowError<D::Err>> {
        let per_channel = x.shape().0 * H * W;
        if per_channel == 0 {
            return Err(FlowError::Argument(
                "ActNorm is initialised from a batch of at least one image".into(),
            ));
        }
        let values = x.as_vec();
        if let Some(index) = values
            .iter()
            .position(|v| !v.to_f64().is_some_and(f64::is_finite))
        {
            return Err(FlowError::Argument(format!(
                "ActNorm cannot be initialised from a batch with a value that is not finite \
                 (index {index})"
            )));
        }
        let (mut loc, mut logs) = (vec![E::zero(); C], vec![E::zero(); C]);
        for c in 0..C {
            let channel = || {
                values
                    .chunks_exact(C * H * W)
                    .flat_map(move |image| &image[c * H * W..(c + 1) * H * W])
                    .map(|v| v.to_f64().unwrap_or(0.0))
            };
            let mean = channel().sum::<f64>() / per_channel as f64;
            let var = channel().map(|v| (v - mean) * (v - mean)).sum::<f64>() / per_channel as f64;
            let std = var.sqrt();
            loc[c] = E::from_f64(-mean).unwrap_or(E::zero());
            if std > ACTNORM_MIN_STD {
                logs[c] = E::from_f64(-std.ln()).unwrap_or(E::zero());
            }
        }
        self.loc.copy_from(&loc);
        self.logs.copy_from(&logs);
        self.set_initialized(true);
        Ok(())
    }

    /// `x ↦ e^logs · (x + loc)`, as a plain map (no log-determinant).
    pub fn try_normalize<T: Tape<E, D>>(
        &self,
        x: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Result<Tensor<Img<C, H, W>, E, D, T>, D::Err> {
        D::try_channel_affine(x, &self.loc, &self.logs, false)
    }

    /// `x ↦ relu(e^logs · (x + loc))`: ActNorm and the ReLU after it inside Glow's coupling
    /// network, in one pass ([`FusedOps::try_channel_affine`](crate::nn::FusedOps)).
    pub fn try_normalize_relu<T: Tape<E, D>>(
        &self,
        x: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Result<Tensor<Img<C, H, W>, E, D, T>, D::Err> {
        D::try_channel_affine(x, &self.loc, &self.logs, true)
    }

    /// `z ↦ e^{−logs} · z − loc`, the inverse map.
    fn try_denormalize(
        &self,
        z: Tensor<Img<C, H, W>, E, D>,
    ) -> Result<Tensor<Img<C, H, W>, E, D>, D::Err> {
        let shape = *z.shape();
        let loc = self
            .loc
            .clone()
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        let inv_scale = self
            .logs
            .clone()
            .try_negate()?
            .try_exp()?
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        z.try_mul(inv_scale)?.try_sub(loc)
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for ActNorm<C, H, W, E, D>
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let batch = (x.shape().0,);
        let y = self.try_normalize(x)?;
        let log_det = self
            .logs
            .retaped::<T>()
            .try_sum::<Rank0, _>()?
            .try_mul(E::from_usize(H * W).unwrap_or(E::one()))?
            .try_broadcast_like(&batch)?;
        Ok((y, ldj.try_add(log_det)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        Ok(self.try_denormalize(z)?)
    }

    fn needs_initialization(&self) -> bool {
        !self.is_initialized()
    }

    fn try_initialize(
        &mut self,
        x: Tensor<Self::In, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {
        if !self.is_initialized() {
            self.init_from_batch(&x)?;
        }
        Ok(self.try_normalize(x)?)
    }

    fn name(&self) -> String {
        "ActNorm".into()
    }
}
