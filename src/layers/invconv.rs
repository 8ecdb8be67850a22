//! The invertible 1×1 convolution of Glow, in its LU parametrisation.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, ImgShape, Ldj};
use crate::layers::lu;
use crate::shape::Img;
use dfdx::prelude::*;
use rand_distr::Uniform;

/// Glow's invertible 1×1 convolution on `C`×`H`×`W` images: every pixel's channel vector is
/// multiplied by a learned invertible `C`×`C` matrix `W = L·U`, `log |det| = H·W·Σ log s`.
///
/// `L` is unit lower triangular, `U` upper triangular with the diagonal `s = e^{log s}`: one
/// `C`×`C` tensor `lu` holds `L` below its diagonal, `log s` on it and `U` above it, so `W` is
/// invertible for any values the optimizer gives it (its determinant `Π s` is never 0) and its
/// log-determinant costs `C` additions. The inverse comes from the factors (two triangular
/// solves, in `f64`).
///
/// Initialised, as in Glow, from a random rotation `Q` (the QR decomposition of a random
/// matrix), factored with partial pivoting `P·Q = L·U`. Glow keeps the permutation `P` and the
/// signs of `U`'s diagonal as fixed buffers; here the layer starts from the rotation `P·Q·S`
/// instead (`S` the signs: also a rotation, with the factors `L` and `U·S`), so that neither
/// is needed and every tensor of the layer comes from one random draw (dfdx initialises tensors
/// one at a time). A fixed permutation or sign cannot change in training in either form.
///
/// # Shapes
/// `C`×`H`×`W` → `C`×`H`×`W`. Tensor names: `lu` (C, C).
#[derive(Clone, Debug)]
pub struct InvConv1x1<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
    /// `L` strictly below the diagonal (its unit diagonal implied), `log s` on the diagonal,
    /// `U` strictly above.
    pub lu: Tensor<Rank2<C, C>, E, D>,
}

/// A `C`×`C` matrix of ones where `keep(row, column)`, zeros elsewhere: selects a part of `lu`.
fn mask<const C: usize, E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
    keep: fn(usize, usize) -> bool,
) -> Result<Tensor<Rank2<C, C>, E, D>, D::Err> {
    let values = (0..C * C)
        .map(|k| {
            if keep(k / C, k % C) {
                E::one()
            } else {
                E::zero()
            }
        })
        .collect();
    dev.try_tensor_from_vec(values, (Const::<C>, Const::<C>))
}

/// Fills `t` with the packed LU factors of a random rotation (see [`InvConv1x1`]).
fn random_rotation_lu<const C: usize, E: FlowDtype, D: FlowDevice<E>>(
    t: &mut Tensor<Rank2<C, C>, E, D>,
) -> Result<(), D::Err> {
    t.try_fill_with_distr(Uniform::new(-E::one(), E::one()))?;
    let random: Vec<f64> = t
        .as_vec()
        .iter()
        .map(|v| v.to_f64().unwrap_or(0.0))
        .collect();
    let packed = lu::rotation_lu(&lu::orthonormalize(&random, C), C);
    t.copy_from(
        &packed
            .iter()
            .map(|v| E::from_f64(*v).unwrap_or(E::zero()))
            .collect::<Vec<_>>(),
    );
    Ok(())
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    TensorCollection<E, D> for InvConv1x1<C, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = InvConv1x1<C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "lu",
                |s| &s.lu,
                |s| &mut s.lu,
                TensorOptions::reset_with(random_rotation_lu::<C, E, D>),
            ),
            |lu| InvConv1x1 { lu },
        )
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    BuildOnDevice<D, E> for InvConv1x1<C, H, W, E, D>
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    InvConv1x1<C, H, W, E, D>
{
    /// The matrix `W = L·U`, with the tape `T` to the parameters.
    fn matrix<T: Tape<E, D>>(&self) -> Result<Tensor<Rank2<C, C>, E, D, T>, D::Err> {
        let dev = self.lu.device();
        let below = mask::<C, E, D>(dev, |i, j| i > j)?;
        let diagonal = mask::<C, E, D>(dev, |i, j| i == j)?;
        let above = mask::<C, E, D>(dev, |i, j| i < j)?;
        let lower = self
            .lu
            .retaped::<T>()
            .try_mul(below)?
            .try_add(diagonal.clone())?;
        let upper = self
            .lu
            .retaped::<T>()
            .try_mul(above)?
            .try_add(self.lu.retaped::<T>().try_exp()?.try_mul(diagonal)?)?;
        lower.try_matmul(upper)
    }

    /// The matrix `W = L·U`, computed in `f64` (row-major, `C`×`C`).
    pub fn weight_matrix(&self) -> Vec<f64> {
        lu::matrix_from_packed(&self.packed_f64(), C)
    }

    fn packed_f64(&self) -> Vec<f64> {
        self.lu
            .as_vec()
            .iter()
            .map(|v| v.to_f64().unwrap_or(f64::NAN))
            .collect()
    }

    /// `W⁻¹ = U⁻¹·L⁻¹` from the factors, computed in `f64`.
    pub fn inverse_matrix(&self) -> Vec<f64> {
        lu::inverse_from_packed(&self.packed_f64(), C)
    }

    /// Each pixel's channel vector times `matrix`: a batched product `(B, C, C)·(B, C, H·W)`.
    fn mix<T: Tape<E, D>>(
        matrix: Tensor<Rank2<C, C>, E, D, T>,
        x: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Result<Tensor<Img<C, H, W>, E, D, T>, D::Err> {
        let batch = x.shape().0;
        let pixels = x.try_reshape_like(&(batch, Const::<C>, H * W))?;
        // A contiguous copy per image, not a broadcast: CUDA's batched matmul rejects a batch
        // stride of 0 (ARCHITECTURE.md, dfdx fact 7); C×C values per image cost nothing here.
        let matrices = matrix
            .try_broadcast_like::<_, Axis<0>>(&(batch, Const::<C>, Const::<C>))?
            .try_reshape_like(&(batch, Const::<C>, Const::<C>))?;
        matrices
            .try_matmul(pixels)?
            .try_reshape_like(&Img::<C, H, W>::with_batch(batch))
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for InvConv1x1<C, H, W, E, D>
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
        let diagonal = mask::<C, E, D>(self.lu.device(), |i, j| i == j)?;
        let log_det = self
            .lu
            .retaped::<T>()
            .try_mul(diagonal)?
            .try_sum::<Rank0, _>()?
            .try_mul(E::from_usize(H * W).unwrap_or(E::one()))?
            .try_broadcast_like(&batch)?;
        let y = Self::mix(self.matrix::<T>()?, x)?;
        Ok((y, ldj.try_add(log_det)?))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let inverse = self
            .inverse_matrix()
            .iter()
            .map(|v| E::from_f64(*v).unwrap_or(E::zero()))
            .collect();
        let inverse = z
            .device()
            .try_tensor_from_vec(inverse, (Const::<C>, Const::<C>))?;
        Ok(Self::mix(inverse, z)?)
    }

    fn name(&self) -> String {
        "InvConv1x1".into()
    }
}
