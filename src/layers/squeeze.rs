//! Squeeze: `C×H×W → 4C×(H/2)×(W/2)`, in exactly the tutorial's pixel order.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, Ldj};
use crate::shape::{Img, SqueezeChannels, SqueezeHeight, SqueezeWidth};
use dfdx::prelude::*;

/// Groups each 2×2 block of pixels into 4 channels: output channel `4c + 2dy + dx` at
/// `(y, x)` is input channel `c` at `(2y + dy, 2x + dx)` (PyTorch:
/// `reshape(B, C, H/2, 2, W/2, 2).permute(0, 1, 3, 5, 2, 4)`). Volume-preserving (ldj + 0).
///
/// Only compiles for even `H` and `W` (and `C` ≤ 1024); otherwise `cargo check` says e.g.
/// "cannot squeeze 1x7x7 images (CxHxW): the height 7 is odd".
#[derive(Clone, Copy, Debug, Default)]
pub struct Squeeze<const C: usize, const H: usize, const W: usize>;

type C4<const C: usize, const H: usize, const W: usize> =
    <() as SqueezeChannels<C, H, W>>::Quadrupled;
type H2<const C: usize, const H: usize, const W: usize> = <() as SqueezeHeight<C, H, W>>::Half;
type W2<const C: usize, const H: usize, const W: usize> = <() as SqueezeWidth<C, H, W>>::Half;

impl<const C: usize, const H: usize, const W: usize> dfdx::nn::ZeroSizedModule
    for Squeeze<C, H, W>
{
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for Squeeze<C, H, W>
where
    (): SqueezeChannels<C, H, W> + SqueezeHeight<C, H, W> + SqueezeWidth<C, H, W>,
{
    type In = Img<C, H, W>;
    type Out = (usize, C4<C, H, W>, H2<C, H, W>, W2<C, H, W>);

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let b = x.shape().0;
        let (h2, w2) = (H2::<C, H, W>::default(), W2::<C, H, W>::default());
        let z = x
            .try_reshape_like(&(b, Const::<C>, h2, Const::<2>, w2, Const::<2>))?
            .try_permute::<_, Axes6<0, 1, 3, 5, 2, 4>>()?
            .try_reshape_like(&(b, C4::<C, H, W>::default(), h2, w2))?;
        Ok((z, ldj))
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let b = z.shape().0;
        let (h2, w2) = (H2::<C, H, W>::default(), W2::<C, H, W>::default());
        z.try_reshape_like(&(b, Const::<C>, Const::<2>, Const::<2>, h2, w2))?
            .try_permute::<_, Axes6<0, 1, 4, 2, 5, 3>>()?
            .try_reshape_like(&(b, Const::<C>, Const::<H>, Const::<W>))
            .map_err(FlowError::Device)
    }

    fn name(&self) -> String {
        "Squeeze".into()
    }
}
