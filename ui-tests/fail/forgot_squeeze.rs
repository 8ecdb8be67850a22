//! A 4-channel 14x14 coupling stacked directly after a 1-channel 28x28 one: the squeeze between
//! them is missing.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Broken = Chain<(
    Dequantization<1, 28, 28>,
    CheckerboardCoupling<1, 28, 28, 32, false, f32, Cpu>,
    ChannelCoupling<4, 14, 14, 48, false, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::new(dev.build_module::<Broken, f32>());
    let images = dev.zeros_like(&Img::<1, 28, 28>::with_batch(4));
    let _bpd = flow.bpd(images, &mut FlowCtx::default());
}
