//! Host-side helpers shared by the CPU ops: copying a tensor's storage out, taking and
//! accumulating gradients, and how many images one backward task takes.
use dfdx::prelude::*;
use num_traits::Float;

/// Copies a contiguous CPU tensor's storage (`as_vec` walks it index by index, several times
/// slower). Panics, rather than reading wrong data, if the storage is not exactly the tensor's
/// elements (a broadcast or strided view): callers make inputs contiguous first.
pub(crate) fn host_copy<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Vec<E> {
    let mut out = vec![E::default(); t.shape().num_elements()];
    t.copy_into(&mut out);
    out
}

/// Moves an intermediate's gradient out of the gradient store, leaving it empty.
///
/// Backward ops run in reverse order of the forward ops, so when an op's backward runs, every
/// consumer of its output has already added its contribution: the output's gradient is
/// complete and nothing reads it again. Taking it (instead of copying) frees it at once, which
/// keeps dfdx from holding every intermediate gradient until the end of the backward pass.
/// (The outputs of these ops are internal to the model, never tensors a caller asks for the
/// gradient of.)
pub(crate) fn take_grad<E>(g: &mut Vec<E>) -> Vec<E> {
    std::mem::take(g)
}

/// `dst += src`, elementwise: accumulating gradients (into dfdx's store and across chunks).
pub(crate) fn add_into<E: Float>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(a, b)| *a = *a + *b);
}

/// Images per task in the backward passes at 28×28 and above. Parameter gradients are summed
/// per chunk and the chunk sums then added in a fixed order, so results do not depend on the
/// thread count or on scheduling (training is reproducible from a seed).
pub(crate) const BACKWARD_CHUNK: usize = 4;

/// Images per backward task for images of `hw` pixels: [`BACKWARD_CHUNK`], and more (up to 32)
/// for small images. Each chunk zero-fills and then adds a copy of its parameter gradients
/// (1.1 MB for the 7×7, 64-channel networks of the multi-scale flow, whose backward pass costs
/// little per image). Fixed by the image size, so results still do not depend on the thread
/// count.
pub(crate) fn backward_chunk(hw: usize) -> usize {
    (BACKWARD_CHUNK * (28 * 28 / hw.max(1)).max(1)).min(32)
}
