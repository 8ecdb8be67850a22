//! The tutorial's three MNIST models, a Glow for MNIST, and class-conditional variants of the
//! multi-scale flow and of Glow, as type aliases and constructors.
//!
//! | model | layers | parameters |
//! |---|---|---|
//! | [`SimpleFlow`] | dequantization, 8 checkerboard couplings (hidden 32) | 556,312 |
//! | [`VarDeqFlow`] | variational dequantization, the same 8 couplings | 628,388 |
//! | [`MultiscaleFlow`] | variational dequantization, 2 checkerboard couplings (32), squeeze, 2 channel couplings (48), split, squeeze, 4 channel couplings (64) | 1,711,818 |
//! | [`GlowFlow`] | dequantization, squeeze, 8 Glow steps (64), split with learned prior, squeeze, 8 Glow steps, learned top prior | 155,744 |
//! | [`ClassMultiscaleFlow`] (10 classes) | [`MultiscaleFlow`] with a class-conditional prior before its split and after its last coupling | 1,712,058 |
//! | [`ClassGlowFlow`] (10 classes) | [`GlowFlow`] whose couplings, split prior and top prior see the class | 166,168 |
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

/// MNIST's number of classes, the default `K` of the class-conditional models.
pub const MNIST_CLASSES: usize = 10;

/// The multi-scale flow conditioned on `K` classes through its priors: [`MultiscaleFlow`] with
/// a [`ClassPrior`] on the 4×14×14 tensor before the split (so the split-off half has a
/// per-class prior) and on the final 8×7×7 latent. Its coupling networks do not see the class
/// (the tutorial's gated networks stay as they are and as fast); 240 parameters more for 10
/// classes: 1,712,058.
pub type ClassMultiscaleFlow<E, D, const K: usize = MNIST_CLASSES> = Chain<(
    TutorialVarDeq<1, 28, 28, E, D>,
    Cb32<false, E, D>,
    Cb32<true, E, D>,
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 48, false, E, D>,
    ChannelCoupling<4, 14, 14, 48, true, E, D>,
    ClassPrior<K, 4, 14, 14, E, D>,
    Split<4, 14, 14>,
    Squeeze<2, 14, 14>,
    ChannelCoupling<8, 7, 7, 64, false, E, D>,
    ChannelCoupling<8, 7, 7, 64, true, E, D>,
    ChannelCoupling<8, 7, 7, 64, false, E, D>,
    ChannelCoupling<8, 7, 7, 64, true, E, D>,
    ClassPrior<K, 8, 7, 7, E, D>,
)>;

/// Builds [`ClassMultiscaleFlow`] for MNIST's 10 classes with fresh parameters.
pub fn class_multiscale_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<ClassMultiscaleFlow<E, D>, MNIST_CLASSES>, D::Err> {
    ImageFlow::try_build_conditional(dev)
}

/// One step of class-conditional Glow: ActNorm, invertible 1×1 convolution, and an affine
/// coupling whose network sees the class ([`ClassGlowCoupling`]).
pub type ClassGlowStep<
    const K: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HIDDEN: usize,
    E,
    D,
> = Chain<(
    ActNorm<C, H, W, E, D>,
    InvConv1x1<C, H, W, E, D>,
    ClassGlowCoupling<K, C, H, W, HIDDEN, E, D>,
)>;

/// [`GlowFlow`] conditioned on `K` classes by both of Glow's paths: every coupling network
/// sees a learned embedding of the class, the split's prior and the top prior have a row per
/// class ([`ClassSplitPrior`], [`ClassPrior`]). 166,168 parameters for 10 classes.
pub type ClassGlowFlow<
    E,
    D,
    const K: usize = MNIST_CLASSES,
    const STEPS: usize = GLOW_STEPS,
    const HIDDEN: usize = GLOW_HIDDEN,
> = Chain<(
    Dequantization<1, 28, 28>,
    Squeeze<1, 28, 28>,
    Repeat<ClassGlowStep<K, 4, 14, 14, HIDDEN, E, D>, STEPS>,
    ClassSplitPrior<K, 4, 14, 14, E, D>,
    Squeeze<2, 14, 14>,
    Repeat<ClassGlowStep<K, 8, 7, 7, HIDDEN, E, D>, STEPS>,
    ClassPrior<K, 8, 7, 7, E, D>,
)>;

/// Builds [`ClassGlowFlow`] for MNIST's 10 classes, default size, fresh parameters.
pub fn class_glow_flow<E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
) -> Result<ImageFlow<ClassGlowFlow<E, D>, MNIST_CLASSES>, D::Err> {
    ImageFlow::try_build_conditional(dev)
}
