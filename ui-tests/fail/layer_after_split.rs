//! After the split, the next coupling still expects the 4 channels from before it (the split
//! keeps 2).
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Broken = Chain<(
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 48, false, f32, Cpu>,
    Split<4, 14, 14>,
    ChannelCoupling<4, 14, 14, 48, true, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Broken>::build(&dev);
}
