//! Glow's coupling network as a device op ([`GlowNetOps`]).
//!
//! As a chain of ops (a convolution, ActNorm and ReLU, a 1×1 convolution, ActNorm and ReLU, the
//! zero-initialised convolution and its output scale), each op copied its input out of dfdx's
//! storage, allocated its output, and in the backward pass a zeroed gradient for every
//! intermediate; for Glow's small channel counts that overhead was most of a training step. The
//! trait's default is that chain (any device, and the reference of the CPU kernel's test); `Cpu`
//! runs the whole network as one op (`crate::cpu::glow_net`).
//!
//! The op takes the network's parameters as a view ([`GlowNetParams`]) rather than the network
//! (`layers::GlowNet`, whose ActNorms are flow layers), so that this trait, which every
//! [`FlowDevice`](crate::flow::FlowDevice) has, depends on nothing above `nn`.
use super::{Conv2d, NetDevice, ZeroConv2d};
use crate::dtype::FlowDtype;
use dfdx::prelude::*;

/// The parameters of Glow's coupling network (`layers::GlowNet`), borrowed: its two hidden
/// convolutions, the shift and log-scale of the ActNorm after each, and the zero-initialised
/// output convolution.
pub struct GlowNetParams<
    'a,
    CIn: ConstDim,
    const HIDDEN: usize,
    COut: ConstDim,
    E: Dtype,
    D: Storage<E>,
> {
    /// 3×3, `CIn` → `HIDDEN`.
    pub conv_in: &'a Conv2d<CIn, Const<HIDDEN>, 3, E, D>,
    /// Shift of the ActNorm after `conv_in`.
    pub norm_in_loc: &'a Tensor<Rank1<HIDDEN>, E, D>,
    /// Log-scale of the ActNorm after `conv_in`.
    pub norm_in_logs: &'a Tensor<Rank1<HIDDEN>, E, D>,
    /// 1×1, `HIDDEN` → `HIDDEN`.
    pub conv_mid: &'a Conv2d<Const<HIDDEN>, Const<HIDDEN>, 1, E, D>,
    /// Shift of the ActNorm after `conv_mid`.
    pub norm_mid_loc: &'a Tensor<Rank1<HIDDEN>, E, D>,
    /// Log-scale of the ActNorm after `conv_mid`.
    pub norm_mid_logs: &'a Tensor<Rank1<HIDDEN>, E, D>,
    /// Zero-initialised 3×3, `HIDDEN` → `COut`, with its output scale.
    pub conv_out: &'a ZeroConv2d<Const<HIDDEN>, COut, E, D>,
}

/// Glow's coupling network as the chain of its layers' ops (any device): the 3×3 convolution
/// (plus one row of `hidden_bias` per image at every position), ActNorm and ReLU, the 1×1
/// convolution, ActNorm and ReLU, the zero-initialised 3×3 convolution and its output scale.
#[allow(clippy::type_complexity)]
pub fn glow_net_composed<CIn, const HIDDEN: usize, COut, H, W, E, D, T>(
    p: GlowNetParams<'_, CIn, HIDDEN, COut, E, D>,
    x: Tensor<(usize, CIn, H, W), E, D, T>,
    hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, D, T>>,
) -> Result<Tensor<(usize, COut, H, W), E, D, T>, D::Err>
where
    CIn: ConstDim,
    COut: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: NetDevice<E>,
    T: Tape<E, D>,
{
    let h = D::try_conv2d_same(x, &p.conv_in.weight, &p.conv_in.bias)?;
    let h = match hidden_bias {
        Some(bias) => {
            let shape = *h.shape();
            h.try_add(bias.try_broadcast_like::<_, Axes2<2, 3>>(&shape)?)?
        }
        None => h,
    };
    let h = D::try_channel_affine(h, p.norm_in_loc, p.norm_in_logs, true)?;
    let h = D::try_conv2d_same(h, &p.conv_mid.weight, &p.conv_mid.bias)?;
    let h = D::try_channel_affine(h, p.norm_mid_loc, p.norm_mid_logs, true)?;
    p.conv_out.try_apply(h)
}

/// A device that runs Glow's coupling network (`layers::GlowNet`).
pub trait GlowNetOps<E: FlowDtype>: NetDevice<E> {
    /// The whole network with parameters `p` on `x`, with `hidden_bias` (one row of `HIDDEN`
    /// values per image, e.g. a class embedding) added to the first convolution's output at
    /// every position. Gradients flow to `x`, `hidden_bias` and every parameter. The default
    /// is the chain of its layers' ops ([`glow_net_composed`]); `Cpu` runs it as one op.
    #[allow(clippy::type_complexity)]
    fn try_glow_net<
        CIn: ConstDim,
        const HIDDEN: usize,
        COut: ConstDim,
        H: Dim,
        W: Dim,
        T: Tape<E, Self>,
    >(
        p: GlowNetParams<'_, CIn, HIDDEN, COut, E, Self>,
        x: Tensor<(usize, CIn, H, W), E, Self, T>,
        hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, Self, T>>,
    ) -> Result<Tensor<(usize, COut, H, W), E, Self, T>, Self::Err> {
        glow_net_composed(p, x, hidden_bias)
    }
}
