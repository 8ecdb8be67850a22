//! Evaluating an f32 model on f64 images.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let flow = simple_flow::<f32, Cpu>(&dev).unwrap();
    let images: Tensor<Img<1, 28, 28>, f64, Cpu> = dev.zeros_like(&Img::<1, 28, 28>::with_batch(2));
    let _bpd = flow.bpd(images, &mut FlowCtx::default());
}
