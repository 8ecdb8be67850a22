//! Splitting 3-channel (RGB) images in half along the channels.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type RgbFlow = Chain<(
    Dequantization<3, 32, 32>,
    CheckerboardCoupling<3, 32, 32, 32, false, f32, Cpu>,
    Split<3, 32, 32>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<RgbFlow>::build(&dev);
}
