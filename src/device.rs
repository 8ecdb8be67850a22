//! Choosing and opening the device a flow runs on: dfdx's `Cpu`, or `Cuda` (feature `cuda`).
//!
//! dfdx's own constructors panic when no GPU answers (cudarc 0.9 unwraps the driver's `cuInit`),
//! so [`OpenDevice::open`] asks the driver first and turns "no GPU" into a [`DeviceError`].
//!
//! ```
//! use dfdx_flows::device::{DeviceChoice, OpenDevice, Resolved};
//!
//! // `auto` is the GPU when the crate is built with `cuda` and one answers, else the CPU.
//! let resolved = DeviceChoice::Auto.resolve().unwrap();
//! if resolved == Resolved::Cpu {
//!     let _cpu = dfdx::prelude::Cpu::open(42).unwrap();
//! }
//! ```
use dfdx::prelude::*;

/// Why a device could not be used.
#[derive(Debug)]
pub enum DeviceError {
    /// CUDA was asked for, but this build has no CUDA support.
    NotBuilt,
    /// CUDA was asked for, but no GPU answered.
    Unavailable(String),
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotBuilt => f.write_str(
                "this program was built without CUDA support: rebuild it with `--features cuda`, \
                 or use `--device cpu`",
            ),
            Self::Unavailable(why) => write!(
                f,
                "CUDA is not available: {why} (use `--device cpu` to run on the CPU)"
            ),
        }
    }
}

impl std::error::Error for DeviceError {}

/// The device a user asks for (`--device` on the command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    /// The GPU when the program is built with feature `cuda` and a GPU answers, else the CPU
    /// (with a one-line notice if the program was built for CUDA).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU; an error if there is none.
    Cuda,
}

/// The device a [`DeviceChoice`] resolved to on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// dfdx's `Cpu`.
    Cpu,
    /// dfdx's `Cuda` (only with feature `cuda`).
    Cuda,
}

impl DeviceChoice {
    /// Resolves the choice on this machine: `Auto` never fails, `Cuda` fails with the reason
    /// when this build or this machine has no CUDA.
    pub fn resolve(self) -> Result<Resolved, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Resolved::Cpu),
            DeviceChoice::Cuda => cuda_status().map(|()| Resolved::Cuda),
            DeviceChoice::Auto => match cuda_status() {
                Ok(()) => Ok(Resolved::Cuda),
                Err(DeviceError::NotBuilt) => Ok(Resolved::Cpu),
                Err(DeviceError::Unavailable(why)) => {
                    eprintln!("note: no usable GPU ({why}); running on the CPU");
                    Ok(Resolved::Cpu)
                }
            },
        }
    }
}

/// Whether a CUDA GPU can be used: `Ok` when this build has feature `cuda`, the driver
/// initialises and reports at least one device.
pub fn cuda_status() -> Result<(), DeviceError> {
    #[cfg(feature = "cuda")]
    {
        use cudarc::driver::result;
        result::init().map_err(|e| {
            DeviceError::Unavailable(format!("the CUDA driver did not start ({e:?})"))
        })?;
        let count = result::device::get_count()
            .map_err(|e| DeviceError::Unavailable(format!("cannot count GPUs ({e:?})")))?;
        if count < 1 {
            return Err(DeviceError::Unavailable("the driver reports no GPU".into()));
        }
        Ok(())
    }
    #[cfg(not(feature = "cuda"))]
    Err(DeviceError::NotBuilt)
}

/// A device that can be opened by seed, failing with a clear error instead of panicking.
pub trait OpenDevice: Sized {
    /// A short name for messages: `cpu` or `cuda`.
    const NAME: &'static str;
    /// Opens the device with its random generator seeded by `seed`.
    fn open(seed: u64) -> Result<Self, DeviceError>;
}

impl OpenDevice for Cpu {
    const NAME: &'static str = "cpu";

    /// The CPU as the examples use it: seeded, denormals flushed (PyTorch ran 2x faster here
    /// with them flushed; so do we).
    ///
    /// dfdx's allocation cache stays off: it keeps every freed buffer for reuse, which measured
    /// no faster here and raised the peak memory of a simple-flow training step from 6.9 to
    /// 10.1 GB.
    fn open(seed: u64) -> Result<Self, DeviceError> {
        dfdx::flush_denormals_to_zero();
        Ok(Cpu::seed_from_u64(seed))
    }
}

/// The CPU device as the examples use it: seeded, denormals flushed (see
/// [`OpenDevice`] for `Cpu`).
pub fn cpu_device(seed: u64) -> Cpu {
    <Cpu as OpenDevice>::open(seed).expect("the CPU is always available")
}

/// Loads the kernels that dfdx 0.13 would otherwise compile with NVRTC at run time (`reshape` of
/// a non-contiguous tensor, `concat_along`, `concat`, `stack`), built into this library by
/// `nvcc` at build time. [`OpenDevice::open`] does it; call it yourself on a `Cuda` you build.
///
/// Without it, dfdx runs NVRTC on first use, which needs the CUDA headers at the absolute paths
/// of the build machine, and an NVRTC newer than the driver (CUDA 13.2 libraries, e.g. from a
/// PyTorch install, with a CUDA 13.0 driver) writes PTX that the driver refuses.
///
/// ```no_run
/// # #[cfg(feature = "cuda")] {
/// let dev = dfdx::tensor::Cuda::seed_from_u64(0);
/// dfdx_flows::device::prepare_cuda(&dev).unwrap();
/// # }
/// ```
#[cfg(feature = "cuda")]
pub fn prepare_cuda(dev: &Cuda) -> Result<(), DeviceError> {
    crate::cuda::dfdx_kernels::preload(dev)
        .map_err(|e| DeviceError::Unavailable(format!("loading dfdx's kernels: {e}")))
}

#[cfg(feature = "cuda")]
impl OpenDevice for Cuda {
    const NAME: &'static str = "cuda";

    /// The first GPU, after checking that the driver answers (dfdx would panic otherwise),
    /// with dfdx's allocation cache on and dfdx's run-time kernels loaded ([`prepare_cuda`];
    /// if that fails, a warning, and dfdx compiles them itself when first used).
    ///
    /// Without the cache every op's output is a `cuMemAllocAsync` from CUDA's stream-ordered
    /// pool, and that pool (release threshold 0, the default) hands its free memory back to the
    /// driver at every synchronization, that is at least once per training step (reading the
    /// loss); the next step then maps it again. The cache keeps freed buffers for reuse by
    /// size, as PyTorch's caching allocator does; a training step allocates the same sizes
    /// every time, so it stops growing after the first step. `gpu_check --probe` times a
    /// training step with the cache off and on.
    fn open(seed: u64) -> Result<Self, DeviceError> {
        cuda_status()?;
        let dev =
            Cuda::try_seed_from_u64(seed).map_err(|e| DeviceError::Unavailable(e.to_string()))?;
        dev.try_enable_cache()
            .map_err(|e| DeviceError::Unavailable(e.to_string()))?;
        if let Err(e) = prepare_cuda(&dev) {
            // Not fatal: dfdx compiles them itself when first used (and may succeed).
            eprintln!("warning: {e}; dfdx will compile them with NVRTC when first used");
        }
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available_and_cuda_only_when_built() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Resolved::Cpu);
        assert!(Cpu::open(1).is_ok());
        #[cfg(not(feature = "cuda"))]
        {
            let err = DeviceChoice::Cuda.resolve().unwrap_err();
            assert!(err.to_string().contains("--features cuda"), "{err}");
            assert_eq!(DeviceChoice::Auto.resolve().unwrap(), Resolved::Cpu);
        }
    }
}
