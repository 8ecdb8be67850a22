//! Encoding 32x32 images with the 28x28 MNIST model.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let flow = simple_flow::<f32, Cpu>(&dev).unwrap();
    let images = dev.zeros_like(&Img::<1, 32, 32>::with_batch(8));
    let _ = flow.encode(images, &mut FlowCtx::default());
}
