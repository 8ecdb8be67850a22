//! Variational dequantization (Flow++): the dequantization noise comes from a learned flow
//! conditioned on the image.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo, Ldj};
use crate::layers::dequantization::{
    check_pixels, cst, dequant_noise, logit_with_ldj, quantize, sigmoid_with_ldj, Dequantization,
};
use crate::shape::Img;
use dfdx::prelude::*;

/// A flow on images of shape [`ConditionalFlow::Img`] whose transform depends on a
/// conditioning image of the same shape (a coupling layer whose network sees both).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a conditional flow on `{E}` tensors on `{D}`: variational dequantization needs flows conditioned on the image",
    label = "not a `ConditionalFlow<{E}, {D}>`",
    note = "use a tuple of 1 to 6 `CondCheckerboardCoupling`s of the image's shape, with the same element type and device as the model"
)]
pub trait ConditionalFlow<E: FlowDtype, D: FlowDevice<E>>:
    TensorCollection<E, D, To<E, D> = Self>
{
    /// Shape of the transformed and of the conditioning images.
    type Img: ImgShape;

    /// Density direction, adding `log |det J|` to `ldj`.
    #[allow(clippy::type_complexity)]
    fn try_forward_cond<T: Tape<E, D>>(
        &self,
        z: Tensor<Self::Img, E, D, T>,
        ldj: Ldj<E, D, T>,
        cond: &Tensor<Self::Img, E, D>,
    ) -> Result<(Tensor<Self::Img, E, D, T>, Ldj<E, D, T>), D::Err>;

    /// Inverse direction.
    fn try_inverse_cond(
        &self,
        z: Tensor<Self::Img, E, D>,
        cond: &Tensor<Self::Img, E, D>,
    ) -> Result<Tensor<Self::Img, E, D>, D::Err>;

    /// Appends one row per layer to a model summary.
    fn describe_cond(&self, layers: &mut Vec<LayerInfo>);
}

macro_rules! cond_tuple {
    ($($name:ident $idx:tt),+ ; $($ridx:tt),+) => {
        impl<E: FlowDtype, D: FlowDevice<E>, S: ImgShape, $($name: ConditionalFlow<E, D, Img = S>),+>
            ConditionalFlow<E, D> for ($($name,)+)
        {
            type Img = S;

            fn try_forward_cond<T: Tape<E, D>>(
                &self,
                z: Tensor<S, E, D, T>,
                ldj: Ldj<E, D, T>,
                cond: &Tensor<S, E, D>,
            ) -> Result<(Tensor<S, E, D, T>, Ldj<E, D, T>), D::Err> {
                let state = (z, ldj);
                $(let state = self.$idx.try_forward_cond(state.0, state.1, cond)?;)+
                Ok(state)
            }

            fn try_inverse_cond(&self, z: Tensor<S, E, D>, cond: &Tensor<S, E, D>) -> Result<Tensor<S, E, D>, D::Err> {
                $(let z = self.$ridx.try_inverse_cond(z, cond)?;)+
                Ok(z)
            }

            fn describe_cond(&self, layers: &mut Vec<LayerInfo>) {
                $(self.$idx.describe_cond(layers);)+
            }
        }
    };
}
cond_tuple!(A 0; 0);
cond_tuple!(A 0, B 1; 1, 0);
cond_tuple!(A 0, B 1, C 2; 2, 1, 0);
cond_tuple!(A 0, B 1, C 2, F 3; 3, 2, 1, 0);
cond_tuple!(A 0, B 1, C 2, F 3, G 4; 4, 3, 2, 1, 0);
cond_tuple!(A 0, B 1, C 2, F 3, G 4, H 5; 5, 4, 3, 2, 1, 0);

/// The tutorial's `VariationalDequantization(var_flows, alpha=1e-5)` on `C`×`H`×`W` images.
///
/// Density direction: noise `u ~ U[0,1)` (or the caller's), `u ↦ logit(u)`, through the
/// conditional `flows` (conditioned on the image scaled to `[-1, 1]`), back through the sigmoid,
/// then `v = (x + u) / 256` and the scaled logit, accumulating every log-determinant like the
/// tutorial. The sampling direction is uniform dequantization's: `⌊…⌋` of the inverse logit.
///
/// Like the tutorial, the learned noise leaves the sigmoid as `(σ(z) − α/2)/(1 − α)`, which
/// lies in `(−α/2, 1 + α/2)/(1 − α)` rather than `[0, 1)`: where the inner flows saturate, a
/// dequantized value can spill up to ~5·10⁻⁶ levels into the neighbouring bin, and that pixel
/// then samples back one level off. Kept for parity with the reference implementation.
///
/// Tensor names: `flows.{k}.…` for the inner couplings.
#[derive(Clone, Debug)]
pub struct VariationalDequantization<const C: usize, const H: usize, const W: usize, F> {
    /// The conditional flows that shape the noise.
    pub flows: F,
    /// The uniform dequantization this one refines (its `alpha` and `quants`).
    pub dequant: Dequantization<C, H, W>,
}

impl<const C: usize, const H: usize, const W: usize, F, E, D> TensorCollection<E, D>
    for VariationalDequantization<C, H, W, F>
where
    F: TensorCollection<E, D>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = VariationalDequantization<C, H, W, F::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::module("flows", |s| &s.flows, |s| &mut s.flows),
            |flows| VariationalDequantization {
                flows,
                dequant: Default::default(),
            },
        )
    }
}

impl<const C: usize, const H: usize, const W: usize, F, E, D> BuildOnDevice<D, E>
    for VariationalDequantization<C, H, W, F>
where
    F: TensorCollection<E, D, To<E, D> = F>,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<const C: usize, const H: usize, const W: usize, F, E, D> Flow<E, D>
    for VariationalDequantization<C, H, W, F>
where
    F: ConditionalFlow<E, D, Img = Img<C, H, W>>,
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
        check_pixels(&x, self.dequant.quants)?;
        let alpha = self.dequant.alpha;
        // The condition: the image scaled to [-1, 1] (the tutorial divides by 255).
        let max = (self.dequant.quants - 1) as f64;
        let cond = x
            .retaped::<NoneTape>()
            .try_div(cst::<E>(max))?
            .try_mul(cst::<E>(2.0))?
            .try_sub(E::ONE)?;
        let noise = dequant_noise(x.device(), x.shape(), ctx)?;
        let (noise, ldj) = logit_with_ldj(noise.retaped::<T>(), ldj, alpha)?;
        let (noise, ldj) = self.flows.try_forward_cond(noise, ldj, &cond)?;
        let (noise, ldj) = sigmoid_with_ldj(noise, ldj, alpha)?;
        Ok(self.dequant.dequantize_with(x, noise, ldj)?)
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        Ok(quantize(&z, self.dequant.alpha, self.dequant.quants)?)
    }

    fn name(&self) -> String {
        "VariationalDequantization".into()
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        let shape = format!("{C}x{H}x{W}");
        layers.push(LayerInfo {
            name: self.name(),
            input: shape.clone(),
            output: shape,
            params: self.num_trainable_params(),
        });
        let mut inner = Vec::new();
        self.flows.describe_cond(&mut inner);
        for row in inner {
            layers.push(LayerInfo {
                name: format!("  └ {}", row.name),
                params: row.params,
                ..row
            });
        }
    }
}
