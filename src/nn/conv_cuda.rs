//! [`ConvDevice`] for dfdx's `Cuda` device (feature `cuda`): the gather composition of
//! [`conv2d_by_composition`] (DESIGN.md §4), built from dfdx's CUDA `gather` and cuBLAS `matmul`.
use dfdx::prelude::*;

use super::conv::ConvDevice;
use super::conv_compose::conv2d_by_composition;

macro_rules! cuda_conv_impl {
    ($E:ty) => {
        impl ConvDevice<$E> for Cuda {
            fn try_conv2d_same<
                const K: usize,
                CI: Dim,
                CO: Dim,
                H: Dim,
                W: Dim,
                T: Tape<$E, Self>,
            >(
                x: Tensor<(usize, CI, H, W), $E, Self, T>,
                weight: &Tensor<(CO, CI, Const<K>, Const<K>), $E, Self>,
                bias: &Tensor<(CO,), $E, Self>,
            ) -> Result<Tensor<(usize, CO, H, W), $E, Self, T>, Self::Err> {
                conv2d_by_composition(x, weight, bias)
            }
        }
    };
}

cuda_conv_impl!(f32);
cuda_conv_impl!(f64);
