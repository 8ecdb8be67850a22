//! A user's class-conditional flow: Glow's class-conditional parts on 1x8x8 images for 3
//! classes, trained for one step and sampled per class.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Mine = Chain<(
    Dequantization<1, 8, 8>,
    Squeeze<1, 8, 8>,
    Repeat<ClassGlowStep<3, 4, 4, 4, 16, f32, Cpu>, 2>,
    ClassSplitPrior<3, 4, 4, 4, f32, Cpu>,
    ClassPrior<3, 2, 4, 4, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let mut model = ImageFlow::<Mine, 3>::try_build_conditional(&dev).unwrap();
    let x = dev.tensor_from_vec(vec![100.0f32; 4 * 64], Img::<1, 8, 8>::with_batch(4));
    let labels = Labels::<3>::new(vec![0, 1, 2, 1]).unwrap();
    model
        .initialize_given(x.clone(), &labels, &mut FlowCtx::default())
        .unwrap();
    let bpd = model
        .bpd_given(x.clone(), &labels, &mut FlowCtx::default())
        .unwrap();
    assert!(bpd.array().is_finite());
    let twos = Labels::<3>::repeat(2, 5).unwrap();
    let samples = model
        .sample_given(&dev, &twos, None, &mut FlowCtx::default())
        .unwrap();
    assert_eq!(samples.shape().0, 5);
}
