//! A CIFAR-shaped (3x32x32) three-level multi-scale flow — squeeze and split three times — built
//! from the public API only, trained-shape checked at compile time and run once.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type E = f64;
type D = Cpu;

/// Level 1 at 3x32x32, then 12x16x16 after the first squeeze.
type Level1 = Chain<(
    TutorialVarDeq<3, 32, 32, E, D>,
    CheckerboardCoupling<3, 32, 32, 8, false, E, D>,
    CheckerboardCoupling<3, 32, 32, 8, true, E, D>,
    Squeeze<3, 32, 32>,
    ChannelCoupling<12, 16, 16, 8, false, E, D>,
    ChannelCoupling<12, 16, 16, 8, true, E, D>,
    Split<12, 16, 16>,
)>;

/// Levels 2 and 3: 6x16x16 -> 24x8x8 -> split -> 12x8x8 -> 48x4x4 -> split -> 24x4x4.
type Level23 = Chain<(
    Squeeze<6, 16, 16>,
    ChannelCoupling<24, 8, 8, 8, false, E, D>,
    ChannelCoupling<24, 8, 8, 8, true, E, D>,
    Split<24, 8, 8>,
    Squeeze<12, 8, 8>,
    ChannelCoupling<48, 4, 4, 8, false, E, D>,
    ChannelCoupling<48, 4, 4, 8, true, E, D>,
    Split<48, 4, 4>,
    ChannelCoupling<24, 4, 4, 8, false, E, D>,
)>;

/// Chains nest: a chain is itself a flow layer.
type Cifar = Chain<(Level1, Level23)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::<Cifar>::build(&dev);
    let rows = flow.describe::<E, D>();
    assert_eq!(rows.first().unwrap().input, "3x32x32");
    assert_eq!(rows.last().unwrap().output, "24x4x4");

    // Two RGB images with integer pixels: bits per dimension, and the exact round trip.
    let pixels: Vec<E> = (0..2 * 3 * 32 * 32).map(|i| ((i * 37) % 256) as E).collect();
    let images = dev.tensor_from_vec(pixels.clone(), Img::<3, 32, 32>::with_batch(2));
    let bpd = flow.bpd(images.clone(), &mut FlowCtx::default()).unwrap().array();
    assert!(bpd.is_finite() && bpd > 0.0, "bpd {bpd}");

    let mut ctx = FlowCtx::recording();
    let (z, _ldj) = flow.encode(images, &mut ctx).unwrap();
    let z: Tensor<Img<24, 4, 4>, E, D> = z;
    let back = flow.sample(&dev, 2, Some(z), &mut ctx).unwrap();
    assert_eq!(back.as_vec(), pixels);
}
