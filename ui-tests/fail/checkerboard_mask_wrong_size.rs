//! Replacing a coupling's checkerboard mask with one made for 14x14 images in a 28x28 coupling.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn main() {
    let dev: Cpu = Default::default();
    let mut coupling = dev.build_module::<CheckerboardCoupling<1, 28, 28, 32, false, f32, Cpu>, f32>();
    let mask: Tensor<(Const<1>, Const<1>, Const<14>, Const<14>), f32, Cpu> = dev.ones();
    coupling.mask = mask;
}
