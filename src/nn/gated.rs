//! The tutorial's conditioner network: [`ConcatElu`], [`LayerNormChannels`], [`GatedConv`] and
//! [`GatedConvNet`], with the PyTorch module tree's tensor names (`nn.0` … `nn.8`), so that
//! checkpoints map one to one onto the reference implementation's.
//!
//! Channel counts are type-level [`ConstDim`]s (`Const<32>`, or `Doubled<32>` where the tutorial
//! writes `2 * c_hidden`), so every weight has a compile-time shape and dfdx's `build_module`,
//! optimizers and safetensors work unchanged.
use crate::dtype::FlowDtype;
use crate::nn::conv::ConvDevice;
use crate::nn::fused::FusedOps;
use crate::shape::Double;
use dfdx::prelude::*;
use rand_distr::Uniform;

/// Concatenated ELU: `cat([elu(x), elu(-x)], channels)`, doubling the channels. No parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConcatElu;

impl ZeroSizedModule for ConcatElu {}
impl NonMutableModule for ConcatElu {}

impl ConcatElu {
    /// Applies the activation to a batch of images with `C` channels.
    pub fn try_apply<
        C: ConstDim + Double,
        H: Dim,
        W: Dim,
        E: FlowDtype,
        D: NetDevice<E>,
        T: Tape<E, D>,
    >(
        x: Tensor<(usize, C, H, W), E, D, T>,
    ) -> Result<Tensor<(usize, C::Output, H, W), E, D, T>, D::Err> {
        D::try_concat_elu(x, C::Output::default())
    }
}

/// A `K`×`K` same-padded convolution from `CI` to `CO` channels with bias, named like PyTorch's
/// `nn.Conv2d` (`weight` (CO, CI, K, K), `bias` (CO)). Initialised like PyTorch: weight and bias
/// ~ U(−1/√fan_in, 1/√fan_in), fan_in = CI·K·K.
#[derive(Clone, Debug)]
pub struct Conv2d<CI: ConstDim, CO: ConstDim, const K: usize, E: Dtype, D: Storage<E>> {
    /// Kernel, (CO, CI, K, K).
    pub weight: Tensor<(CO, CI, Const<K>, Const<K>), E, D>,
    /// Bias, (CO,).
    pub bias: Tensor<(CO,), E, D>,
}

fn torch_uniform<S: Shape, E: FlowDtype, D: NetDevice<E>>(
    t: &mut Tensor<S, E, D>,
    fan_in: usize,
) -> Result<(), D::Err> {
    let bound = E::ONE / E::from_usize(fan_in).unwrap().sqrt();
    t.try_fill_with_distr(Uniform::new(-bound, bound))
}

impl<CI: ConstDim, CO: ConstDim, const K: usize, E: FlowDtype, D: NetDevice<E>>
    TensorCollection<E, D> for Conv2d<CI, CO, K, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<CI, CO, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| torch_uniform(t, CI::SIZE * K * K)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| torch_uniform(t, CI::SIZE * K * K)),
                ),
            ),
            |(weight, bias)| Conv2d { weight, bias },
        )
    }
}

impl<CI: ConstDim, CO: ConstDim, const K: usize, E: FlowDtype, D: NetDevice<E>> BuildOnDevice<D, E>
    for Conv2d<CI, CO, K, E, D>
{
    type Built = Self;
}

impl<CI: ConstDim, CO: ConstDim, const K: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for Conv2d<CI, CO, K, E, D>
{
}

impl<CI, CO, const K: usize, H, W, E, D, T> Module<Tensor<(usize, CI, H, W), E, D, T>>
    for Conv2d<CI, CO, K, E, D>
where
    CI: ConstDim,
    CO: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: NetDevice<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(usize, CO, H, W), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, CI, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        D::try_conv2d_same(x, &self.weight, &self.bias)
    }
}

/// Layer normalisation across the channels of each pixel: biased variance, `eps = 1e-5`, then a
/// per-channel affine map with `gamma` (1, C, 1, 1) starting at 1 and `beta` starting at 0.
#[derive(Clone, Debug)]
pub struct LayerNormChannels<C: ConstDim, E: Dtype, D: Storage<E>> {
    /// Scale, (1, C, 1, 1).
    pub gamma: Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
    /// Shift, (1, C, 1, 1).
    pub beta: Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
}

/// The tutorial's `eps` of [`LayerNormChannels`].
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl<C: ConstDim, E: FlowDtype, D: NetDevice<E>> TensorCollection<E, D>
    for LayerNormChannels<C, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = LayerNormChannels<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "gamma",
                    |s| &s.gamma,
                    |s| &mut s.gamma,
                    TensorOptions::reset_to_ones(),
                ),
                Self::tensor(
                    "beta",
                    |s| &s.beta,
                    |s| &mut s.beta,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(gamma, beta)| LayerNormChannels { gamma, beta },
        )
    }
}

impl<C: ConstDim, E: FlowDtype, D: NetDevice<E>> BuildOnDevice<D, E>
    for LayerNormChannels<C, E, D>
{
    type Built = Self;
}

impl<C: ConstDim, E: Dtype, D: Storage<E>> NonMutableModule for LayerNormChannels<C, E, D> {}

impl<C, H, W, E, D, T> Module<Tensor<(usize, C, H, W), E, D, T>> for LayerNormChannels<C, E, D>
where
    C: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: NetDevice<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(usize, C, H, W), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, C, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        D::try_layer_norm_channels(x, &self.gamma, &self.beta, LAYER_NORM_EPS)
    }
}

/// Two-layer convolutional ResNet block with an input gate:
/// `net = [ConcatELU, Conv3x3(2C→C), ConcatELU, Conv1x1(2C→2C)]`, `val, gate = chunk(net(x))`,
/// `out = x + val · σ(gate)`. Tensor names `net.1.*`, `net.3.*`.
#[derive(Clone, Debug)]
pub struct GatedConv<C: ConstDim + Double, E: Dtype, D: Storage<E>> {
    /// `net.1`: 3×3 convolution, 2C → C.
    pub conv_in: Conv2d<C::Output, C, 3, E, D>,
    /// `net.3`: 1×1 convolution, 2C → 2C.
    pub conv_gate: Conv2d<C::Output, C::Output, 1, E, D>,
}

impl<C: ConstDim + Double, E: FlowDtype, D: NetDevice<E>> TensorCollection<E, D>
    for GatedConv<C, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GatedConv<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("net.1", |s| &s.conv_in, |s| &mut s.conv_in),
                Self::module("net.3", |s| &s.conv_gate, |s| &mut s.conv_gate),
            ),
            |(conv_in, conv_gate)| GatedConv { conv_in, conv_gate },
        )
    }
}

impl<C: ConstDim + Double, E: FlowDtype, D: NetDevice<E>> BuildOnDevice<D, E>
    for GatedConv<C, E, D>
{
    type Built = Self;
}

impl<C: ConstDim + Double, E: Dtype, D: Storage<E>> NonMutableModule for GatedConv<C, E, D> {}

/// Splits a (batch, 2C, H, W) tensor into its two channel halves (PyTorch's `chunk(2, dim=1)`).
///
/// Both halves are slices of one tensor that nothing else reads, so dfdx's CPU slice backward
/// (which assigns rather than adds: docs/ARCHITECTURE.md, dfdx fact 1) writes disjoint regions and stays correct.
#[allow(clippy::type_complexity)]
pub(crate) fn chunk2<
    C2: Dim,
    C: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C2, H, W), E, D, T>,
) -> Result<
    (
        Tensor<(usize, C, H, W), E, D, T>,
        Tensor<(usize, C, H, W), E, D, T>,
    ),
    D::Err,
> {
    let c = C::SIZE;
    assert_eq!(
        x.shape().1.size(),
        2 * c,
        "chunk2: channel count must be 2·C"
    );
    let first = x.retaped::<T>().try_slice((.., 0..c, .., ..))?;
    let second = x.try_slice((.., c..2 * c, .., ..))?;
    let first = first
        .try_realize()
        .unwrap_or_else(|_| unreachable!("C channels"));
    let second = second
        .try_realize()
        .unwrap_or_else(|_| unreachable!("C channels"));
    Ok((first, second))
}

/// The inverse of [`chunk2`]: two `C`-channel halves back into one batch of `C2 = 2·C`
/// channels (the first half first). Concatenation along a `Const` axis does not compile on
/// stable, so the channel axis goes through `usize` (ARCHITECTURE.md, dfdx fact 6).
pub(crate) fn cat2<C2: ConstDim, C: Dim, H: Dim, W: Dim, E: FlowDtype, D: Device<E>, T>(
    first: Tensor<(usize, C, H, W), E, D, T>,
    second: Tensor<(usize, C, H, W), E, D, T>,
) -> Result<Tensor<(usize, C2, H, W), E, D, T>, D::Err>
where
    T: Tape<E, D> + Merge<T>,
{
    let first = first
        .try_realize::<(usize, usize, H, W)>()
        .unwrap_or_else(|_| unreachable!("a channel count realizes to usize"));
    let second = second
        .try_realize::<(usize, usize, H, W)>()
        .unwrap_or_else(|_| unreachable!("a channel count realizes to usize"));
    Ok((first, second)
        .try_concat_along(Axis::<1>)?
        .try_realize()
        .unwrap_or_else(|_| unreachable!("C + C = C2 channels, checked by the callers' types")))
}

impl<C, H, W, E, D, T> Module<Tensor<(usize, C, H, W), E, D, T>> for GatedConv<C, E, D>
where
    C: ConstDim + Double,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: NetDevice<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(usize, C, H, W), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, C, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        let h = ConcatElu::try_apply(x.retaped::<T>())?;
        let h = self.conv_in.try_forward(h)?;
        let h = ConcatElu::try_apply(h)?;
        let h = self.conv_gate.try_forward(h)?;
        D::try_gated_residual(x, h)
    }
}

/// The conditioner network of a coupling layer (the tutorial's `GatedConvNet`):
/// `[Conv3x3(CIn→CH), (GatedConv(CH), LayerNormChannels(CH)) × 3, ConcatELU, Conv3x3(2CH→COut)]`
/// with tensor names `nn.0` … `nn.8`. The final convolution starts at zero, so a fresh coupling
/// layer is the identity.
#[derive(Clone, Debug)]
pub struct GatedConvNet<
    CIn: ConstDim,
    CH: ConstDim + Double,
    COut: ConstDim,
    E: Dtype,
    D: Storage<E>,
> {
    /// `nn.0`: 3×3 convolution, CIn → CH.
    pub conv_in: Conv2d<CIn, CH, 3, E, D>,
    /// `nn.1`, `nn.3`, `nn.5`: gated ResNet blocks.
    pub blocks: [GatedConv<CH, E, D>; 3],
    /// `nn.2`, `nn.4`, `nn.6`: layer norms after each block.
    pub norms: [LayerNormChannels<CH, E, D>; 3],
    /// `nn.8`: 3×3 convolution, 2CH → COut, zero-initialised.
    pub conv_out: Conv2d<CH::Output, COut, 3, E, D>,
}

impl<CIn: ConstDim, CH: ConstDim + Double, COut: ConstDim, E: FlowDtype, D: NetDevice<E>>
    TensorCollection<E, D> for GatedConvNet<CIn, CH, COut, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GatedConvNet<CIn, CH, COut, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("nn.0", |s| &s.conv_in, |s| &mut s.conv_in),
                    Self::module("nn.1", |s| &s.blocks[0], |s| &mut s.blocks[0]),
                    Self::module("nn.2", |s| &s.norms[0], |s| &mut s.norms[0]),
                    Self::module("nn.3", |s| &s.blocks[1], |s| &mut s.blocks[1]),
                    Self::module("nn.4", |s| &s.norms[1], |s| &mut s.norms[1]),
                    Self::module("nn.5", |s| &s.blocks[2], |s| &mut s.blocks[2]),
                ),
                Self::module("nn.6", |s| &s.norms[2], |s| &mut s.norms[2]),
                Self::tensor(
                    "nn.8.weight",
                    |s| &s.conv_out.weight,
                    |s| &mut s.conv_out.weight,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "nn.8.bias",
                    |s| &s.conv_out.bias,
                    |s| &mut s.conv_out.bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |((conv_in, b0, n0, b1, n1, b2), n2, weight, bias)| GatedConvNet {
                conv_in,
                blocks: [b0, b1, b2],
                norms: [n0, n1, n2],
                conv_out: Conv2d { weight, bias },
            },
        )
    }
}

impl<CIn: ConstDim, CH: ConstDim + Double, COut: ConstDim, E: FlowDtype, D: NetDevice<E>>
    BuildOnDevice<D, E> for GatedConvNet<CIn, CH, COut, E, D>
{
    type Built = Self;
}

impl<CIn: ConstDim, CH: ConstDim + Double, COut: ConstDim, E: Dtype, D: Storage<E>> NonMutableModule
    for GatedConvNet<CIn, CH, COut, E, D>
{
}

/// A device that runs the conditioner networks: their convolutions ([`ConvDevice`]), fused
/// elementwise ops ([`FusedOps`]) and the whole [`GatedConvNet`] as one op.
pub trait NetDevice<E: FlowDtype>: ConvDevice<E> + FusedOps<E> {
    /// The whole conditioner network ([`GatedConvNet`]) on `x`; the default is the chain of its
    /// layers, `Cpu` runs it as one op.
    fn try_gated_conv_net<
        CIn: ConstDim,
        CH: ConstDim + Double,
        COut: ConstDim,
        H: Dim,
        W: Dim,
        T: Tape<E, Self>,
    >(
        net: &GatedConvNet<CIn, CH, COut, E, Self>,
        x: Tensor<(usize, CIn, H, W), E, Self, T>,
    ) -> Result<Tensor<(usize, COut, H, W), E, Self, T>, Self::Err> {
        net.try_condition_composed(x)
    }
}

/// A network that maps `CIn`-channel images to `COut`-channel images of the same size: the
/// conditioner of a coupling layer.
pub trait Conditioner<E: FlowDtype, D: NetDevice<E>>:
    TensorCollection<E, D, To<E, D> = Self>
{
    /// Input channels.
    type CIn: ConstDim;
    /// Output channels.
    type COut: ConstDim;
    /// Applies the network.
    #[allow(clippy::type_complexity)]
    fn try_condition<H: Dim, W: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, Self::CIn, H, W), E, D, T>,
    ) -> Result<Tensor<(usize, Self::COut, H, W), E, D, T>, D::Err>;
    /// Hidden channels, for summaries.
    fn hidden(&self) -> usize;
}

impl<CIn, CH, COut, E, D> Conditioner<E, D> for GatedConvNet<CIn, CH, COut, E, D>
where
    CIn: ConstDim,
    CH: ConstDim + Double,
    COut: ConstDim,
    E: FlowDtype,
    D: NetDevice<E>,
{
    type CIn = CIn;
    type COut = COut;

    fn try_condition<H: Dim, W: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CIn, H, W), E, D, T>,
    ) -> Result<Tensor<(usize, COut, H, W), E, D, T>, D::Err> {
        D::try_gated_conv_net(self, x)
    }

    fn hidden(&self) -> usize {
        CH::SIZE
    }
}

impl<CIn, CH, COut, E, D> GatedConvNet<CIn, CH, COut, E, D>
where
    CIn: ConstDim,
    CH: ConstDim + Double,
    COut: ConstDim,
    E: FlowDtype,
    D: NetDevice<E>,
{
    /// The network as the chain of its layers (each layer one op); what
    /// [`NetDevice::try_gated_conv_net`] does on devices
    /// without a fused network.
    pub fn try_condition_composed<H: Dim, W: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, CIn, H, W), E, D, T>,
    ) -> Result<Tensor<(usize, COut, H, W), E, D, T>, D::Err> {
        let mut h = self.conv_in.try_forward(x)?;
        for (block, norm) in self.blocks.iter().zip(&self.norms) {
            h = block.try_forward(h)?;
            h = norm.try_forward(h)?;
        }
        let h = ConcatElu::try_apply(h)?;
        self.conv_out.try_forward(h)
    }
}

impl<CIn, CH, COut, H, W, E, D, T> Module<Tensor<(usize, CIn, H, W), E, D, T>>
    for GatedConvNet<CIn, CH, COut, E, D>
where
    CIn: ConstDim,
    CH: ConstDim + Double,
    COut: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: NetDevice<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(usize, COut, H, W), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, CIn, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        self.try_condition(x)
    }
}
