//! A `Repeat` of a step that ends in a squeeze: the step's output (4x14x14) is not its input
//! (1x28x28), so it cannot follow itself.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Step = Chain<(ActNorm<1, 28, 28, f32, Cpu>, Squeeze<1, 28, 28>)>;
type Broken = Chain<(Dequantization<1, 28, 28>, Repeat<Step, 4>)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::new(dev.build_module::<Broken, f32>());
    let images = dev.zeros_like(&Img::<1, 28, 28>::with_batch(4));
    let _bpd = flow.bpd(images, &mut FlowCtx::default());
}
