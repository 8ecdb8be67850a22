//! Glow's learned top prior: a per-channel normal distribution for the final latent.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// A learned prior `N(mean, e^{2·logs})` per channel for the final latent of a flow (Glow's
/// `learntop`), written as the last layer of the flow: it standardises the latent,
/// `ε = (z − mean) · e^{−logs}`, `log |det| = −H·W·Σ logs`, and the model's standard normal
/// prior scores `ε`. Then `log N(ε; 0, 1) − H·W·Σ logs = log N(z; mean, e^{2·logs})`: the same
/// density as a learned prior, and sampling (`z = mean + e^{logs}·ε`, `ε` drawn at the
/// temperature) the same draws, so temperature and interpolation act on `ε` as they do with
/// [`SplitPrior`](crate::layers::SplitPrior).
///
/// Both tensors start at zero, so a fresh layer is the identity and the prior the standard
/// normal. In Glow the top prior is a zero-initialised convolution of an all-zero input, which
/// leaves exactly these per-channel constants (its bias times its output scale).
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`. Tensor names: `mean` (C), `logs` (C).
#[derive(Clone, Debug)]
pub struct LearnedPrior<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
    /// Per-channel mean of the latent; starts at 0.
    pub mean: Tensor<Rank1<C>, E, D>,
    /// Per-channel log standard deviation of the latent; starts at 0.
    pub logs: Tensor<Rank1<C>, E, D>,
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    TensorCollection<E, D> for LearnedPrior<C, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = LearnedPrior<C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "mean",
                    |s| &s.mean,
                    |s| &mut s.mean,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "logs",
                    |s| &s.logs,
                    |s| &mut s.logs,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(mean, logs)| LearnedPrior { mean, logs },
        )
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    BuildOnDevice<D, E> for LearnedPrior<C, H, W, E, D>
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for LearnedPrior<C, H, W, E, D>
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        z: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let shape = *z.shape();
        let mean = self
            .mean
            .retaped::<T>()
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        let inv_scale = self
            .logs
            .retaped::<T>()
            .try_negate()?
            .try_exp()?
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        let eps = z.try_sub(mean)?.try_mul(inv_scale)?;
        let log_det = self
            .logs
            .retaped::<T>()
            .try_sum::<Rank0, _>()?
            .try_mul(-E::from_usize(H * W).unwrap_or(E::one()))?
            .try_broadcast_like(&(shape.0,))?;
        Ok((eps, ldj.try_add(log_det)?))
    }

    fn try_inverse(
        &self,
        eps: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let shape = *eps.shape();
        let mean = self
            .mean
            .clone()
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        let scale = self
            .logs
            .clone()
            .try_exp()?
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        Ok(eps.try_mul(scale)?.try_add(mean)?)
    }

    fn name(&self) -> String {
        "LearnedPrior".into()
    }
}
