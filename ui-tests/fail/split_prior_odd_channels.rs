//! A learned-prior split of 1-channel images: one channel cannot be split in half.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Broken = Chain<(
    Dequantization<1, 28, 28>,
    ActNorm<1, 28, 28, f32, Cpu>,
    SplitPrior<1, 28, 28, f32, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Broken>::build(&dev);
}
