//! A Glow level for 4x14x14 images right after the dequantization of 1x28x28 images: the
//! squeeze between them is missing.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Broken = Chain<(
    Dequantization<1, 28, 28>,
    Repeat<GlowStep<4, 14, 14, 64, f32, Cpu>, 8>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Broken>::build(&dev);
}
