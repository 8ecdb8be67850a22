//! One layer of the stack was declared with f64 parameters in an f32 model.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type Mixed = Chain<(
    Dequantization<1, 28, 28>,
    CheckerboardCoupling<1, 28, 28, 32, false, f32, Cpu>,
    CheckerboardCoupling<1, 28, 28, 32, true, f64, Cpu>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Mixed>::build(&dev);
}
