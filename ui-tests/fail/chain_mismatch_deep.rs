//! The tutorial's multi-scale flow with the second squeeze forgotten: the error names the two
//! layers (by position in the chain) and their shapes, however deep in the stack.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Multiscale = Chain<(
    TutorialVarDeq<1, 28, 28, f32, Cpu>,
    CheckerboardCoupling<1, 28, 28, 32, false, f32, Cpu>,
    CheckerboardCoupling<1, 28, 28, 32, true, f32, Cpu>,
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 48, false, f32, Cpu>,
    ChannelCoupling<4, 14, 14, 48, true, f32, Cpu>,
    Split<4, 14, 14>,
    ChannelCoupling<8, 7, 7, 64, false, f32, Cpu>,
    ChannelCoupling<8, 7, 7, 64, true, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Multiscale>::build(&dev);
}
