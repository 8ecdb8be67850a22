//! A layer written by a user (a sign flip, no parameters) between library layers: compiles and runs.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

/// `y = −x`: volume-preserving, no parameters.
#[derive(Clone, Copy, Debug, Default)]
struct Negate<const C: usize, const H: usize, const W: usize>;

impl<const C: usize, const H: usize, const W: usize> dfdx::nn::ZeroSizedModule
    for Negate<C, H, W>
{
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for Negate<C, H, W>
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        Ok((x.try_negate()?, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        Ok(z.try_negate()?)
    }

    fn name(&self) -> String {
        "Negate".into()
    }
}

type Model = Chain<(
    Dequantization<1, 8, 8>,
    Negate<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 8, false, f32, Cpu>,
    Squeeze<1, 8, 8>,
    Negate<4, 4, 4>,
)>;

fn main() {
    let dev: Cpu = Default::default();
    let flow = ImageFlow::<Model>::build(&dev);
    let images = dev.ones_like(&Img::<1, 8, 8>::with_batch(2)) * 7.0;
    let bpd = flow.bpd(images, &mut FlowCtx::default()).unwrap();
    assert!(bpd.array().is_finite());
}
