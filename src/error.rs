//! [`FlowError`]: what can go wrong when a flow runs on a caller's data.
//!
//! Every pass through a flow ([`Flow::try_forward`](crate::Flow::try_forward),
//! [`ImageFlow::bpd`](crate::ImageFlow::bpd), sampling, …) returns it. It wraps the device's
//! own error (dfdx's `CpuError` or `CudaError`: out of memory, a failed kernel) and names the
//! problems that come from the data: pixels that are not integers in `0..=255`, dequantization
//! noise or split latents of the wrong length, a temperature that is not a finite number. The
//! checks run before anything is computed, so a rejected call changes nothing (the model, the
//! context's latents and noise stay as they were).
use std::fmt;

/// The error of a pass through a flow on a device whose own error type is `DeviceErr`
/// (`D::Err`: `CpuError` on the CPU).
///
/// `?` converts a device error into it, so a layer written outside this crate can use dfdx's
/// fallible ops (`try_add`, …) directly.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FlowError<DeviceErr> {
    /// The device failed: out of memory, or a kernel that did not run.
    Device(DeviceErr),
    /// A value of an input that must hold integer pixel values (a dequantization layer's input:
    /// `0..=255` for 8-bit images) is outside that range, not an integer, or not a number.
    Pixel {
        /// Index of the value in the batch (image after image, `C·H·W` values each).
        index: usize,
        /// The value found.
        value: f64,
        /// The number of pixel levels the layer takes (256: values `0..=255`).
        levels: usize,
    },
    /// The dequantization noise in [`FlowCtx`](crate::FlowCtx) does not have one value per
    /// input value of the batch.
    NoiseLength {
        /// Values needed: batch × C × H × W.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A dequantization noise value is not in `[0, 1)`.
    NoiseValue {
        /// Index of the value.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A split layer's latent in [`FlowCtx::latents`](crate::FlowCtx::latents) does not have
    /// one value per value the layer splits off.
    LatentLength {
        /// The layer, e.g. `Split 8x7x7 -> 4x7x7`.
        layer: String,
        /// Values needed: batch × (C/2) × H × W.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The sampling temperature is not a finite number `>= 0`.
    Temperature(f64),
    /// Class labels that a class-conditional layer cannot use: none given, labels for another
    /// number of classes, or not one per image. The message names the layer.
    Labels(String),
    /// An argument is out of its range (e.g. an odd number of images to interpolate between):
    /// the message says which and why.
    Argument(String),
}

impl<DeviceErr> From<DeviceErr> for FlowError<DeviceErr> {
    fn from(e: DeviceErr) -> Self {
        FlowError::Device(e)
    }
}

impl<DeviceErr: fmt::Display> fmt::Display for FlowError<DeviceErr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Device(e) => write!(f, "device error: {e}"),
            FlowError::Pixel {
                index,
                value,
                levels,
            } => write!(
                f,
                "input value {value} at index {index} is not a pixel value: a dequantization \
                 layer takes integers 0..={} as floats (not images scaled to [0, 1])",
                levels.saturating_sub(1)
            ),
            FlowError::NoiseLength { expected, got } => write!(
                f,
                "dequantization noise has {got} values, but the batch has {expected} input \
                 values (give one value in [0, 1) per value of the batch, or None to draw it)"
            ),
            FlowError::NoiseValue { index, value } => write!(
                f,
                "dequantization noise value {value} at index {index} is not in [0, 1)"
            ),
            FlowError::LatentLength {
                layer,
                expected,
                got,
            } => write!(
                f,
                "the latent for {layer} has {got} values, but the batch needs {expected} \
                 (latents come from a recording forward pass of a batch of the same size)"
            ),
            FlowError::Temperature(t) => write!(
                f,
                "sampling temperature {t} is not a finite number >= 0 (1.0 samples the prior)"
            ),
            FlowError::Labels(why) => write!(f, "{why}"),
            FlowError::Argument(why) => write!(f, "{why}"),
        }
    }
}

impl<DeviceErr: fmt::Debug + fmt::Display> std::error::Error for FlowError<DeviceErr> {}

impl<DeviceErr> FlowError<DeviceErr> {
    /// Converts the device error (e.g. into a boxed error or a string), keeping the rest.
    pub fn map_device<Other>(self, f: impl FnOnce(DeviceErr) -> Other) -> FlowError<Other> {
        match self {
            FlowError::Device(e) => FlowError::Device(f(e)),
            FlowError::Pixel {
                index,
                value,
                levels,
            } => FlowError::Pixel {
                index,
                value,
                levels,
            },
            FlowError::NoiseLength { expected, got } => FlowError::NoiseLength { expected, got },
            FlowError::NoiseValue { index, value } => FlowError::NoiseValue { index, value },
            FlowError::LatentLength {
                layer,
                expected,
                got,
            } => FlowError::LatentLength {
                layer,
                expected,
                got,
            },
            FlowError::Temperature(t) => FlowError::Temperature(t),
            FlowError::Labels(why) => FlowError::Labels(why),
            FlowError::Argument(why) => FlowError::Argument(why),
        }
    }
}
