//! [`ConvDevice`] for dfdx's `Cuda` device (feature `cuda`): the gather composition of
//! [`conv2d_by_composition`] (docs/ARCHITECTURE.md §3), built from dfdx's CUDA `gather` and cuBLAS `matmul`,
//! with the gather index kept on the GPU between calls.
use crate::nn::ConvDevice;
use dfdx::prelude::*;
use std::cell::RefCell;

use crate::nn::conv_compose::{conv2d_by_composition, im2col_index, recently_used};

/// How many im2col indices stay on the GPU: the shapes of one model's training batch, its
/// evaluation batch and its sampling batch at each of the multi-scale flow's three resolutions
/// fit (7 MB for a batch of 128 at 28×28, 0.4 MB at 7×7).
const CACHED_INDICES: usize = 12;

/// A cached index is valid for the device (ordinal) and stream of the `Cuda` instance that
/// uploaded it, and for one (batch, H, W, K).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct IndexKey {
    ordinal: usize,
    stream: usize,
    dims: (usize, usize, usize, usize),
}

thread_local! {
    /// Most recently used last. Per thread, because dfdx's `Cuda` is not `Send`; the cache keeps
    /// the device of its tensors alive until the thread ends.
    static INDICES: RefCell<Vec<(IndexKey, Tensor<(usize,), usize, Cuda>)>> =
        const { RefCell::new(Vec::new()) };
}

/// The im2col index of (batch, h, w, k) on `dev`, from the cache or uploaded once.
///
/// Rebuilding it per call was O(batch · H · W · K²) host work plus a 7 MB host-to-device copy for
/// every 3×3 convolution of a 128-image batch at 28×28: building the index and one copy of it
/// took 3–12 ms of CPU time here, per convolution, and a forward pass of the simple flow has 40
/// of them.
fn cached_im2col_index(
    dev: &Cuda,
    batch: usize,
    h: usize,
    w: usize,
    k: usize,
) -> Result<Tensor<(usize,), usize, Cuda>, CudaError> {
    let cuda = crate::cuda::driver::driver_device(dev)?;
    let key = IndexKey {
        ordinal: cuda.ordinal(),
        stream: *cuda.cu_stream() as usize,
        dims: (batch, h, w, k),
    };
    INDICES.with_borrow_mut(|cache| {
        recently_used(cache, key, CACHED_INDICES, || {
            im2col_index(dev, batch, h, w, k)
        })
    })
}

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
                let dev = x.device().clone();
                conv2d_by_composition(x, weight, bias, |n, h, w, k| {
                    cached_im2col_index(&dev, n, h, w, k)
                })
            }
        }
    };
}

cuda_conv_impl!(f32);
cuda_conv_impl!(f64);
