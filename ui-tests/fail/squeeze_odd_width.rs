//! Squeezing 28x27 images: the height is even but the width is not.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let squeeze = Squeeze::<1, 28, 27>;
    let x = dev.zeros_like(&Img::<1, 28, 27>::with_batch(1));
    let ldj = dev.zeros_like(&(1,));
    let _ = Flow::<f32, Cpu>::try_forward(&squeeze, x, ldj, &mut FlowCtx::default());
}
