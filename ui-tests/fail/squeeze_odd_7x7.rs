//! Squeezing 7x7 images: after two squeezes of a 28x28 MNIST digit there is nothing left to
//! squeeze evenly.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type ThreeSqueezes = Chain<(
    Squeeze<1, 28, 28>,
    Squeeze<4, 14, 14>,
    Squeeze<16, 7, 7>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::new(dev.build_module::<ThreeSqueezes, f32>());
    let images = dev.zeros_like(&Img::<1, 28, 28>::with_batch(1));
    let _bpd = flow.bpd(images, &mut FlowCtx::default());
}
