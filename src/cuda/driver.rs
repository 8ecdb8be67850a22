//! cudarc's device behind a dfdx `Cuda`.
use dfdx::prelude::*;

/// cudarc's device behind `dev`. dfdx keeps it private; a buffer it allocates (one byte) leads
/// to it. Its ordinal and stream tell `Cuda` instances apart.
pub(crate) fn driver_device(
    dev: &Cuda,
) -> Result<std::sync::Arc<cudarc::driver::CudaDevice>, CudaError> {
    let probe: <Cuda as Storage<u8>>::Vec = dev.try_alloc_len(1)?;
    Ok(probe.device())
}
