//! Variational dequantization built from plain couplings: their networks take the C image
//! channels only, not the 2C channels of image and condition.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

type MyVarDeq = VariationalDequantization<
    1,
    28,
    28,
    (
        CheckerboardCoupling<1, 28, 28, 16, false, f32, Cpu>,
        CheckerboardCoupling<1, 28, 28, 16, true, f32, Cpu>,
    ),
>;

fn main() {
    let dev: Cpu = Default::default();
    let _flow = ImageFlow::<Chain<(MyVarDeq,)>>::build(&dev);
}
