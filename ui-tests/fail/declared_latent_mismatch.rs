//! A model that declares an 8x7x7 latent but whose last layers produce 16x7x7 (the second
//! split was forgotten... and a squeeze added).
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

fn my_model(dev: &Cpu) -> ImageFlow<impl Flow<f32, Cpu, In = Img<1, 28, 28>, Out = Img<8, 7, 7>>> {
    type Layers = Chain<(
        Dequantization<1, 28, 28>,
        Squeeze<1, 28, 28>,
        ChannelCoupling<4, 14, 14, 48, false, f32, Cpu>,
        Squeeze<4, 14, 14>,
        ChannelCoupling<16, 7, 7, 64, false, f32, Cpu>,
    )>;
    ImageFlow::new(dev.build_module::<Layers, f32>())
}

fn main() {
    let dev: Cpu = Default::default();
    let _flow = my_model(&dev);
}
