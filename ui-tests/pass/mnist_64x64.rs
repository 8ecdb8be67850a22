//! A flow on 1x64x64 images (e.g. upscaled digits): two squeezes and a split, from the public
//! API only.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Flow64 = Chain<(
    Dequantization<1, 64, 64>,
    CheckerboardCoupling<1, 64, 64, 8, false, f32, Cpu>,
    CheckerboardCoupling<1, 64, 64, 8, true, f32, Cpu>,
    Squeeze<1, 64, 64>,
    ChannelCoupling<4, 32, 32, 8, false, f32, Cpu>,
    Split<4, 32, 32>,
    Squeeze<2, 32, 32>,
    ChannelCoupling<8, 16, 16, 8, false, f32, Cpu>,
    ChannelCoupling<8, 16, 16, 8, true, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::<Flow64>::build(&dev);
    let samples: Tensor<Img<1, 64, 64>, f32, Cpu> =
        flow.sample(&dev, 3, None, &mut FlowCtx::default()).unwrap();
    assert!(samples.as_vec().iter().all(|&v| (0.0..=255.0).contains(&v)));
    let bpd = flow.bpd(samples, &mut FlowCtx::default()).unwrap().array();
    assert!(bpd.is_finite() && bpd > 0.0, "bpd {bpd}");
}
