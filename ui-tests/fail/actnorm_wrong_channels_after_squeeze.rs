//! An ActNorm for 1-channel 28x28 images placed after a squeeze, which outputs 4x14x14: its
//! channel count (and size) must follow the squeeze.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Broken = Chain<(
    Dequantization<1, 28, 28>,
    ActNorm<1, 28, 28, f32, Cpu>,
    Squeeze<1, 28, 28>,
    ActNorm<1, 28, 28, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::new(dev.build_module::<Broken, f32>());
    let images = dev.zeros_like(&Img::<1, 28, 28>::with_batch(4));
    let _bpd = flow.bpd(images, &mut FlowCtx::default());
}
