//! A coupling on 4 channels whose network was written for 8 channels (the channel-mask network
//! of the next level).
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Level2Coupling = Coupling<
    4,
    14,
    14,
    ChannelMask<false>,
    GatedConvNet<Const<8>, Const<48>, Doubled<8>, f32, Cpu>,
    f32,
    Cpu,
>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Chain<(Squeeze<1, 28, 28>, Level2Coupling)>>::build(&dev);
}
