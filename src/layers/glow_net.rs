//! The conditioner network of Glow's affine coupling.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::layers::ActNorm;
use crate::nn::{glow_net_op::glow_net_composed, Conv2d, GlowNetParams, ZeroConv2d};
use dfdx::prelude::*;

/// Glow's coupling network on `H`×`W` images: a 3×3 convolution to `HIDDEN` channels, ActNorm,
/// ReLU, a 1×1 convolution, ActNorm, ReLU, and a zero-initialised 3×3 convolution with a learned
/// output scale ([`ZeroConv2d`]) to `COut` channels. Its ActNorms are initialised from data with
/// the coupling ([`GlowNet::try_initialize`]).
///
/// Tensor names: `conv_in.*`, `norm_in.*`, `conv_mid.*`, `norm_mid.*`, `conv_out.*`.
#[derive(Clone, Debug)]
pub struct GlowNet<
    CIn: ConstDim,
    const HIDDEN: usize,
    COut: ConstDim,
    const H: usize,
    const W: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// 3×3, `CIn` → `HIDDEN`.
    pub conv_in: Conv2d<CIn, Const<HIDDEN>, 3, E, D>,
    /// ActNorm after `conv_in`.
    pub norm_in: ActNorm<HIDDEN, H, W, E, D>,
    /// 1×1, `HIDDEN` → `HIDDEN`.
    pub conv_mid: Conv2d<Const<HIDDEN>, Const<HIDDEN>, 1, E, D>,
    /// ActNorm after `conv_mid`.
    pub norm_mid: ActNorm<HIDDEN, H, W, E, D>,
    /// Zero-initialised 3×3, `HIDDEN` → `COut`.
    pub conv_out: ZeroConv2d<Const<HIDDEN>, COut, E, D>,
}

impl<CIn, const HIDDEN: usize, COut, const H: usize, const W: usize, E, D> TensorCollection<E, D>
    for GlowNet<CIn, HIDDEN, COut, H, W, E, D>
where
    CIn: ConstDim,
    COut: ConstDim,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GlowNet<CIn, HIDDEN, COut, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv_in", |s| &s.conv_in, |s| &mut s.conv_in),
                Self::module("norm_in", |s| &s.norm_in, |s| &mut s.norm_in),
                Self::module("conv_mid", |s| &s.conv_mid, |s| &mut s.conv_mid),
                Self::module("norm_mid", |s| &s.norm_mid, |s| &mut s.norm_mid),
                Self::module("conv_out", |s| &s.conv_out, |s| &mut s.conv_out),
            ),
            |(conv_in, norm_in, conv_mid, norm_mid, conv_out)| GlowNet {
                conv_in,
                norm_in,
                conv_mid,
                norm_mid,
                conv_out,
            },
        )
    }
}

impl<CIn, const HIDDEN: usize, COut, const H: usize, const W: usize, E, D> BuildOnDevice<D, E>
    for GlowNet<CIn, HIDDEN, COut, H, W, E, D>
where
    CIn: ConstDim,
    COut: ConstDim,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    type Built = Self;
}

impl<CIn, const HIDDEN: usize, COut, const H: usize, const W: usize, E, D>
    GlowNet<CIn, HIDDEN, COut, H, W, E, D>
where
    CIn: ConstDim,
    COut: ConstDim,
    E: FlowDtype,
    D: FlowDevice<E>,
{
    /// Applies the network.
    pub fn try_apply<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CIn, Const<H>, Const<W>), E, D, T>,
    ) -> Result<Tensor<(usize, COut, Const<H>, Const<W>), E, D, T>, D::Err> {
        self.try_apply_with(x, None)
    }

    /// Applies the network (one op on the CPU: [`GlowNetOps`](crate::nn::GlowNetOps)) with
    /// `hidden_bias` (one row of `HIDDEN` values per image, e.g. a class embedding) added to
    /// every position of the first convolution's output: the same as giving the rows to the
    /// network as constant extra input channels through a 1×1 convolution, without widening its
    /// first convolution.
    pub fn try_apply_with<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CIn, Const<H>, Const<W>), E, D, T>,
        hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, D, T>>,
    ) -> Result<Tensor<(usize, COut, Const<H>, Const<W>), E, D, T>, D::Err> {
        D::try_glow_net(self.params(), x, hidden_bias)
    }

    /// The network's parameters as the op [`GlowNetOps`](crate::nn::GlowNetOps) takes them.
    pub fn params(&self) -> GlowNetParams<'_, CIn, HIDDEN, COut, E, D> {
        GlowNetParams {
            conv_in: &self.conv_in,
            norm_in_loc: &self.norm_in.loc,
            norm_in_logs: &self.norm_in.logs,
            conv_mid: &self.conv_mid,
            norm_mid_loc: &self.norm_mid.loc,
            norm_mid_logs: &self.norm_mid.logs,
            conv_out: &self.conv_out,
        }
    }

    /// [`GlowNet::try_apply_with`] as the chain of its layers' ops on any device (what `Cuda`
    /// runs; the reference of the CPU's fused op).
    pub fn try_apply_composed<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CIn, Const<H>, Const<W>), E, D, T>,
        hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, D, T>>,
    ) -> Result<Tensor<(usize, COut, Const<H>, Const<W>), E, D, T>, D::Err> {
        glow_net_composed(self.params(), x, hidden_bias)
    }

    /// Whether an ActNorm of the network waits for its initialisation.
    pub fn needs_initialization(&self) -> bool {
        !self.norm_in.is_initialized() || !self.norm_mid.is_initialized()
    }

    /// Initialises the ActNorms that are not yet initialised from the activations the batch
    /// `x` gives them, in order (with `hidden_bias` as in [`GlowNet::try_apply_with`]).
    pub fn try_initialize(
        &mut self,
        x: Tensor<(usize, CIn, Const<H>, Const<W>), E, D>,
        hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, D>>,
    ) -> Result<(), FlowError<D::Err>> {
        let h = with_bias(self.conv_in.try_forward(x)?, hidden_bias)?;
        if !self.norm_in.is_initialized() {
            self.norm_in.init_from_batch(&h)?;
        }
        let h = self.norm_in.try_normalize_relu(h)?;
        let h = self.conv_mid.try_forward(h)?;
        if !self.norm_mid.is_initialized() {
            self.norm_mid.init_from_batch(&h)?;
        }
        Ok(())
    }
}

/// `h` with one row of `bias` per image added at every position, or `h` if there is none.
fn with_bias<const HIDDEN: usize, const H: usize, const W: usize, E, D, T>(
    h: Tensor<(usize, Const<HIDDEN>, Const<H>, Const<W>), E, D, T>,
    bias: Option<Tensor<(usize, Const<HIDDEN>), E, D, T>>,
) -> Result<Tensor<(usize, Const<HIDDEN>, Const<H>, Const<W>), E, D, T>, D::Err>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
{
    match bias {
        Some(bias) => {
            let shape = *h.shape();
            h.try_add(bias.try_broadcast_like::<_, Axes2<2, 3>>(&shape)?)
        }
        None => Ok(h),
    }
}
