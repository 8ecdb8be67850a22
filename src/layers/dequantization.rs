//! Uniform dequantization: integers `0..quants` to continuous values on the real line.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// The tutorial's `Dequantization(alpha=1e-5, quants=256)` on `C`×`H`×`W` images.
///
/// Density direction: `v = (x + u) / quants` with noise `u ∈ [0, 1)` (uniform, or the caller's
/// through [`FlowCtx::dequant_noise`]), then the scaled logit
/// `z = logit(v · (1 − α) + α / 2)`, adding the exact log-determinant of both steps.
/// Sampling direction: `x = ⌊quants · (σ(z) − α/2) / (1 − α)⌋` clamped to `0..quants`.
///
/// The inverse is evaluated in f64 whatever the tensor's dtype. In f64 every value round-trips
/// exactly for noise in `[0, 1 − 10⁻⁹]`. In f32 the latent itself carries a relative rounding
/// error of ~6·10⁻⁸, i.e. up to ~4·10⁻⁶ levels, so noise that close to 0 or 1 can come back
/// off by one level; with uniformly drawn noise that is rare (0 of 51,200 values in the tests;
/// the tutorial's f32 version was off by one on a single MNIST image).
///
/// Parameter-free. Its settings are not tensors, so `to_dtype`/`to_device` reset them to the
/// defaults.
#[derive(Clone, Copy, Debug)]
pub struct Dequantization<const C: usize, const H: usize, const W: usize> {
    /// Scale that keeps the logit away from 0 and 1.
    pub alpha: f64,
    /// Number of discrete values per dimension (256 for 8-bit images).
    pub quants: usize,
}

/// The tutorial's `alpha`.
pub const DEQUANT_ALPHA: f64 = 1e-5;
/// The tutorial's `quants` (8-bit images).
pub const DEQUANT_QUANTS: usize = 256;

impl<const C: usize, const H: usize, const W: usize> Default for Dequantization<C, H, W> {
    fn default() -> Self {
        Self {
            alpha: DEQUANT_ALPHA,
            quants: DEQUANT_QUANTS,
        }
    }
}

impl<const C: usize, const H: usize, const W: usize> dfdx::nn::ZeroSizedModule
    for Dequantization<C, H, W>
{
}

/// Converts an `f64` constant to the dtype.
pub(crate) fn cst<E: FlowDtype>(v: f64) -> E {
    E::from_f64(v).unwrap()
}

/// The scaled logit with its log-determinant (the tutorial's `sigmoid(reverse=True)`):
/// `v ↦ logit(v (1 − α) + α/2)`.
pub(crate) fn logit_with_ldj<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
>(
    v: Tensor<(usize, C, H, W), E, D, T>,
    ldj: Ldj<E, D, T>,
    alpha: f64,
) -> Result<(Tensor<(usize, C, H, W), E, D, T>, Ldj<E, D, T>), D::Err> {
    let numel = crate::flow::per_image(v.shape());
    let v = v
        .try_mul(cst::<E>(1.0 - alpha))?
        .try_add(cst::<E>(0.5 * alpha))?;
    let ldj = ldj.try_add(cst::<E>((1.0 - alpha).ln() * numel as f64))?;
    let log_v = v.retaped::<T>().try_ln()?;
    let log_1mv = v.try_negate()?.try_add(E::ONE)?.try_ln()?;
    // d logit(v)/dv = 1 / (v (1 − v))
    let log_det = log_v
        .retaped::<T>()
        .try_add(log_1mv.retaped::<T>())?
        .try_negate()?;
    let ldj = ldj.try_add(log_det.try_sum::<(usize,), Axes3<1, 2, 3>>()?)?;
    Ok((log_v.try_sub(log_1mv)?, ldj))
}

/// The scaled sigmoid with its log-determinant (the tutorial's `sigmoid(reverse=False)`):
/// `z ↦ (σ(z) − α/2) / (1 − α)`.
pub(crate) fn sigmoid_with_ldj<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: FlowDevice<E>,
    T: Tape<E, D>,
>(
    z: Tensor<(usize, C, H, W), E, D, T>,
    ldj: Ldj<E, D, T>,
    alpha: f64,
) -> Result<(Tensor<(usize, C, H, W), E, D, T>, Ldj<E, D, T>), D::Err> {
    let numel = crate::flow::per_image(z.shape());
    // log σ'(z) = −z − 2 softplus(−z), with softplus(y) = relu(y) + ln(1 + e^{−|y|}) (stable).
    let neg = z.retaped::<T>().try_negate()?;
    let softplus = neg.retaped::<T>().try_relu()?.try_add(
        neg.retaped::<T>()
            .try_abs()?
            .try_negate()?
            .try_exp()?
            .try_add(E::ONE)?
            .try_ln()?,
    )?;
    let log_det = neg.try_sub(softplus.try_mul(cst::<E>(2.0))?)?;
    let ldj = ldj.try_add(log_det.try_sum::<(usize,), Axes3<1, 2, 3>>()?)?;
    let ldj = ldj.try_sub(cst::<E>((1.0 - alpha).ln() * numel as f64))?;
    let z = z
        .try_sigmoid()?
        .try_sub(cst::<E>(0.5 * alpha))?
        .try_div(cst::<E>(1.0 - alpha))?;
    Ok((z, ldj))
}

/// Draws the dequantization noise, or takes the caller's from the context (after checking it:
/// a rejected noise stays in the context).
pub(crate) fn dequant_noise<S: Shape, E: FlowDtype, D: FlowDevice<E>>(
    dev: &D,
    shape: &S,
    ctx: &mut FlowCtx<E>,
) -> Result<Tensor<S, E, D>, FlowError<D::Err>> {
    ctx.check_noise(shape.num_elements())?;
    Ok(match ctx.dequant_noise.take() {
        Some(noise) => dev.try_tensor_from_vec(noise, *shape)?,
        None => dev.try_sample_like(shape, rand_distr::Uniform::new(E::zero(), E::one()))?,
    })
}

/// Checks that `x` holds pixel values: integers in `0..quants` (as floats).
pub(crate) fn check_pixels<S: Shape, E: FlowDtype, D: FlowDevice<E>, T>(
    x: &Tensor<S, E, D, T>,
    quants: usize,
) -> Result<(), FlowError<D::Err>> {
    if x.shape().num_elements() == 0 {
        // dfdx 0.13's `as_vec` fails on an empty tensor.
        return Ok(());
    }
    let top = (quants - 1) as f64;
    let values = x.as_vec();
    let bad = values.iter().position(|v| {
        let v = v.to_f64().unwrap_or(f64::NAN);
        !(v >= 0.0 && v <= top && v.fract() == 0.0)
    });
    match bad {
        Some(index) => Err(FlowError::Pixel {
            index,
            value: values[index].to_f64().unwrap_or(f64::NAN),
            levels: quants,
        }),
        None => Ok(()),
    }
}

/// Slack (in levels) added before flooring when mapping latents back to pixel levels.
pub const QUANTIZE_SLACK: f64 = 1e-9;

/// Maps a latent back to integer pixel values: `⌊quants · (σ(z) − α/2) / (1 − α)⌋`, clamped.
/// Computed in f64 to avoid the off-by-one errors the tutorial sees in f32.
pub(crate) fn quantize<S: Shape, E: FlowDtype, D: FlowDevice<E>>(
    z: &Tensor<S, E, D>,
    alpha: f64,
    quants: usize,
) -> Result<Tensor<S, E, D>, D::Err> {
    let values: Vec<E> = z
        .as_vec()
        .into_iter()
        .map(|v| {
            let p = 1.0 / (1.0 + (-v.to_f64().unwrap()).exp());
            let level = (p - 0.5 * alpha) / (1.0 - alpha) * quants as f64;
            // Noise u = 0 puts `level` exactly on an integer, which rounding can push just
            // below it; QUANTIZE_SLACK (far above f64 rounding, far below f32's noise step
            // of 2⁻²⁴) keeps it there.
            let x = (level + QUANTIZE_SLACK).floor();
            cst::<E>(x.clamp(0.0, (quants - 1) as f64))
        })
        .collect();
    z.device().try_tensor_from_vec(values, *z.shape())
}

impl<const C: usize, const H: usize, const W: usize> Dequantization<C, H, W> {
    /// `v = (x + u) / quants`, `ldj −= D · ln quants`, then the scaled logit.
    #[allow(clippy::type_complexity)]
    pub(crate) fn dequantize_with<E: FlowDtype, D: FlowDevice<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<Img<C, H, W>, E, D, T>,
        noise: Tensor<Img<C, H, W>, E, D, T>,
        ldj: Ldj<E, D, T>,
    ) -> Result<(Tensor<Img<C, H, W>, E, D, T>, Ldj<E, D, T>), D::Err> {
        let q = self.quants as f64;
        let v = x.try_add(noise)?.try_div(cst::<E>(q))?;
        let ldj = ldj.try_sub(cst::<E>(q.ln() * (C * H * W) as f64))?;
        logit_with_ldj(v, ldj, self.alpha)
    }
}

impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for Dequantization<C, H, W>
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        check_pixels(&x, self.quants)?;
        let noise = dequant_noise(x.device(), x.shape(), ctx)?;
        Ok(self.dequantize_with(x, noise.retaped::<T>(), ldj)?)
    }

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        Ok(quantize(&z, self.alpha, self.quants)?)
    }

    fn name(&self) -> String {
        format!("Dequantization(quants {})", self.quants)
    }
}
