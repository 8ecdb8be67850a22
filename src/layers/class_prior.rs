//! A class-conditional prior: a learned normal distribution per class and channel.
use crate::classes::class_rows;
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// A learned prior `N(mean[y], e^{2·logs[y]})` per class `y` and channel for a latent (Glow's
/// `--ycond` top prior), written as a flow layer that standardises the latent like
/// [`LearnedPrior`](crate::layers::LearnedPrior), with one row of means and log-scales per
/// class: `ε = (z − mean[y]) · e^{−logs[y]}`, `log |det| = −H·W·Σ_c logs[y, c]`, and the model's
/// standard normal prior scores `ε`. Sampling a class draws `ε` and maps it back with that
/// class's row.
///
/// The class of each image comes from [`FlowCtx::classes`] (see [`crate::classes`]); a pass
/// without labels, or with labels for another number of classes, is an error
/// ([`FlowError::Labels`]).
///
/// Placed before a [`Split`](crate::layers::Split), it makes the split-off half's prior
/// class-conditional too (the kept half goes on through a per-class affine map, which the
/// following layers absorb). Both tables start at zero: a fresh layer is the identity.
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`. Tensor names: `mean` (K, C), `logs` (K, C).
#[derive(Clone, Debug)]
pub struct ClassPrior<
    const K: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// Mean of the latent per class (rows) and channel; starts at 0.
    pub mean: Tensor<Rank2<K, C>, E, D>,
    /// Log standard deviation per class and channel; starts at 0.
    pub logs: Tensor<Rank2<K, C>, E, D>,
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> TensorCollection<E, D>
    for ClassPrior<K, C, H, W, E, D>
where
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ClassPrior<K, C, H, W, E2, D2>;

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
            |(mean, logs)| ClassPrior { mean, logs },
        )
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> BuildOnDevice<D, E>
    for ClassPrior<K, C, H, W, E, D>
where
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D>
    ClassPrior<K, C, H, W, E, D>
where
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// The per-image mean and log-scale rows of the classes in `ctx`, for a batch of `batch`.
    fn rows<T: Tape<E, D>>(
        &self,
        ctx: &FlowCtx<E>,
        batch: usize,
    ) -> Result<
        (
            Tensor<(usize, Const<C>), E, D, T>,
            Tensor<(usize, Const<C>), E, D, T>,
        ),
        FlowError<D::Err>,
    > {
        let labels = ctx.class_labels(K, batch, || self.name())?;
        Ok((
            class_rows::<K, C, E, D, T>(&self.mean, labels)?,
            class_rows::<K, C, E, D, T>(&self.logs, labels)?,
        ))
    }
}

impl<const K: usize, const C: usize, const H: usize, const W: usize, E, D> Flow<E, D>
    for ClassPrior<K, C, H, W, E, D>
where
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        z: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let shape = *z.shape();
        let (mean, logs) = self.rows::<T>(ctx, shape.0)?;
        let log_det = logs
            .retaped::<T>()
            .try_sum::<(usize,), Axis<1>>()?
            .try_mul(-E::from_usize(H * W).unwrap_or(E::one()))?;
        let mean = mean.try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        let inv_scale = logs
            .try_negate()?
            .try_exp()?
            .try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        let eps = z.try_sub(mean)?.try_mul(inv_scale)?;
        Ok((eps, ldj.try_add(log_det)?))
    }

    fn try_inverse(
        &self,
        eps: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let shape = *eps.shape();
        let (mean, logs) = self.rows::<NoneTape>(ctx, shape.0)?;
        let mean = mean.try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        let scale = logs
            .try_exp()?
            .try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        Ok(eps.try_mul(scale)?.try_add(mean)?)
    }

    fn name(&self) -> String {
        format!("ClassPrior({K} classes)")
    }
}
