//! The tutorial's three MNIST models and a Glow for MNIST, as type aliases and constructors.
//!
//! | model | layers | parameters |
//! |---|---|---|
//! | [`SimpleFlow`] | dequantization, 8 checkerboard couplings (hidden 32) | 556,312 |
//! | [`VarDeqFlow`] | variational dequantization, the same 8 couplings | 628,388 |
//! | [`MultiscaleFlow`] | variational dequantization, 2 checkerboard couplings (32), squeeze, 2 channel couplings (48), split, squeeze, 4 channel couplings (64) | 1,711,818 |
use crate::chain::Chain;
use crate::dtype::FlowDtype;
use crate::flow::FlowDevice;
use crate::image_flow::ImageFlow;
use crate::layers::*;
use crate::repeat::Repeat;
use dfdx::prelude::*;

/// The 4 conditional checkerboard couplings of the tutorial's variational dequantization on
/// `C`×`H`×`W` images (`GatedConvNet(c_in=2C, c_out=2C, c_hidden=16)`, alternating masks).
pub type VarDeqCouplings<const C: usize, const H: usize, const W: usize, E, D> = (
    CondCheckerboardCoupling<C, H, W, 16, false, E, D>,
    CondCheckerboardCoupling<C, H, W, 16, true, E, D>,
    CondCheckerboardCoupling<C, H, W, 16, false, E, D>,
    CondCheckerboardCoupling<C, H, W, 16, true, E, D>,
);

/// The tutorial's variational dequantization on `C`×`H`×`W` images.
pub type TutorialVarDeq<const C: usize, const H: usize, const W: usize, E, D> =
    VariationalDequantization<C, H, W, VarDeqCouplings<C, H, W, E, D>>;

type Cb32<const INVERT: bool, E, D> = CheckerboardCoupling<1, 28, 28, 32, INVERT, E, D>;

/// The tutorial's `create_simple_flow(use_vardeq=False)`: 556,312 parameters.
pub type SimpleFlow<E, D> = Chain<(
    Dequantization<1, 28, 28>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
)>;

/// The tutorial's `create_simple_flow(use_vardeq=True)`: 628,388 parameters.
pub type VarDeqFlow<E, D> = Chain<(
    TutorialVarDeq<1, 28, 28, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
)>;

/// The tutorial's `create_multiscale_flow()`: 1,711,818 parameters; latent 8×7×7.
pub type MultiscaleFlow<E, D> = Chain<(
    TutorialVarDeq<1, 28, 28, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 48, false, E, D>,
    ChannelCoupling<4, 14, 14, 48, true, E, D>,
    Split<4, 14, 14>,
    Squeeze<2, 14, 14>,
    ChannelCoupling<8, 7, 7, 64, false, E, D>,
    ChannelCoupling<8, 7, 7, 64, true, E, D>,
    ChannelCoupling<8, 7, 7, 64, false, E, D>,
    ChannelCoupling<8, 7, 7, 64, true, E, D>,
)>;

/// Builds the simple flow (uniform dequantization) with fresh parameters.
pub fn simple_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<SimpleFlow<E, D>>, D::Err> {
    Ok(ImageFlow::new(SimpleFlow::<E, D>::try_build(dev)?))
}

/// Builds the variational-dequantization flow with fresh parameters.
pub fn vardeq_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<VarDeqFlow<E, D>>, D::Err> {
    Ok(ImageFlow::new(VarDeqFlow::<E, D>::try_build(dev)?))
}

/// Builds the multi-scale flow with fresh parameters.
pub fn multiscale_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<MultiscaleFlow<E, D>>, D::Err> {
    Ok(ImageFlow::new(MultiscaleFlow::<E, D>::try_build(dev)?))
}

/// One step of Glow on `C`×`H`×`W` images: ActNorm, invertible 1×1 convolution, affine
/// coupling with a network of `HIDDEN` channels.
pub type GlowStep<const C: usize, const H: usize, const W: usize, const HIDDEN: usize, E, D> =
    Chain<(
        ActNorm<C, H, W, E, D>,
        InvConv1x1<C, H, W, E, D>,
        GlowCoupling<C, H, W, HIDDEN, E, D>,
    )>;

/// Glow's steps per level in [`GlowFlow`]'s default.
pub const GLOW_STEPS: usize = 8;
/// The hidden channels of Glow's coupling networks in [`GlowFlow`]'s default.
pub const GLOW_HIDDEN: usize = 64;

/// Glow (Kingma & Dhariwal 2018) for 1×28×28 MNIST, in two levels: the tutorial's uniform
/// dequantization, squeeze to 4×14×14, `K` Glow steps, a split with a learned prior to 2×14×14,
/// squeeze to 8×7×7, `K` Glow steps, a learned per-channel normal prior for the 8×7×7 latent
/// ([`LearnedPrior`]). `HIDDEN` is the width of the coupling networks. The ActNorms initialise
/// from the first training batch.
pub type GlowFlow<E, D, const K: usize = GLOW_STEPS, const HIDDEN: usize = GLOW_HIDDEN> = Chain<(
    Dequantization<1, 28, 28>,
    Squeeze<1, 28, 28>,
    Repeat<GlowStep<4, 14, 14, HIDDEN, E, D>, K>,
    SplitPrior<4, 14, 14, E, D>,
    Squeeze<2, 14, 14>,
    Repeat<GlowStep<8, 7, 7, HIDDEN, E, D>, K>,
    LearnedPrior<8, 7, 7, E, D>,
)>;

/// Builds [`GlowFlow`] with its default size, fresh parameters (ActNorm not yet initialised).
pub fn glow_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<GlowFlow<E, D>>, D::Err> {
    Ok(ImageFlow::new(GlowFlow::<E, D>::try_build(dev)?))
}
