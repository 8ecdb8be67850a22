//! Glow's zero-initialised 3×3 convolution with a learned output scale (`Conv2dZeros`).
use crate::dtype::FlowDtype;
use crate::nn::NetDevice;
use dfdx::prelude::*;

/// `conv₃ₓ₃(x) · e^{3·logscale}` per output channel, with the kernel, bias and `logscale` all
/// starting at zero: the last layer of Glow's networks, which makes a fresh coupling the
/// identity and a fresh learned prior the standard normal. The factor 3 is Glow's: it lets the
/// scale move faster than a plain parameter would.
///
/// Tensor names: `weight` (CO, CI, 3, 3), `bias` (CO), `logscale` (CO).
#[derive(Clone, Debug)]
pub struct ZeroConv2d<CI: ConstDim, CO: ConstDim, E: Dtype, D: Storage<E>> {
    /// Kernel, (CO, CI, 3, 3).
    pub weight: Tensor<(CO, CI, Const<3>, Const<3>), E, D>,
    /// Bias, (CO,).
    pub bias: Tensor<(CO,), E, D>,
    /// Per-channel log-scale of the output, divided by 3.
    pub logscale: Tensor<(CO,), E, D>,
}

impl<CI: ConstDim, CO: ConstDim, E: FlowDtype, D: NetDevice<E>> TensorCollection<E, D>
    for ZeroConv2d<CI, CO, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = ZeroConv2d<CI, CO, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "logscale",
                    |s| &s.logscale,
                    |s| &mut s.logscale,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(weight, bias, logscale)| ZeroConv2d {
                weight,
                bias,
                logscale,
            },
        )
    }
}

impl<CI: ConstDim, CO: ConstDim, E: FlowDtype, D: NetDevice<E>> BuildOnDevice<D, E>
    for ZeroConv2d<CI, CO, E, D>
{
    type Built = Self;
}

impl<CI: ConstDim, CO: ConstDim, E: FlowDtype, D: NetDevice<E>> ZeroConv2d<CI, CO, E, D> {
    /// Applies the convolution (zero padding, "same" size) and the output scale.
    pub fn try_apply<H: Dim, W: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CI, H, W), E, D, T>,
    ) -> Result<Tensor<(usize, CO, H, W), E, D, T>, D::Err> {
        let h = D::try_conv2d_same(x, &self.weight, &self.bias)?;
        let shape = *h.shape();
        let scale = self
            .logscale
            .retaped::<T>()
            .try_mul(E::from_f64(3.0).unwrap_or(E::one()))?
            .try_exp()?
            .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
        h.try_mul(scale)
    }
}
