//! Sampling the multi-scale flow from a 1x28x28 latent: its latent is 8x7x7.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let flow = multiscale_flow::<f32, Cpu>(&dev).unwrap();
    let z = dev.sample_normal_like(&Img::<1, 28, 28>::with_batch(16));
    let _ = flow.sample(&dev, 16, Some(z), &mut FlowCtx::default());
}
