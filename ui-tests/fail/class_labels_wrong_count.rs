//! A Glow built for MNIST's 10 classes, given labels and one-hot rows for 9 classes: the number
//! of classes is part of the model's type, so this does not compile.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let model = class_glow_flow::<f32, Cpu>(&dev).unwrap();
    let x = dev.zeros_like(&Img::<1, 28, 28>::with_batch(2));
    let labels = Labels::<9>::new(vec![3, 7]).unwrap();
    let _ = model.log_likelihood_given(x.clone(), &labels, &mut FlowCtx::default());
    let one_hot: Tensor<(usize, Const<9>), f32, Cpu> = dev.zeros_like(&(2, Const::<9>));
    let _ = model.log_likelihood_one_hot(x, &one_hot, &mut FlowCtx::default());
}
