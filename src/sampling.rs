//! The tutorial's experiments in latent space, as library functions: interpolating between
//! images ([`interpolate`]) and sampling rows that share their final latent
//! ([`shared_final_latent`]). The command line's `interpolate` and `latents` call them.
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, ImgShape};
use crate::image_flow::ImageFlow;
use crate::prior::standard_normal;
use dfdx::prelude::*;

/// Linear interpolation between the latents of pairs: `values` holds `2·pairs` latents of equal
/// size (one after the other); returns `pairs·steps` latents, row `p` going from latent `2p`
/// (weight 0) to latent `2p + 1` (weight 1) in `steps` equal steps. The ends are the inputs
/// exactly. `None` if `pairs` is 0, `steps` is below 2 or `values` does not split into
/// `2·pairs` equal latents.
pub fn lerp_pairs<E: FlowDtype>(values: &[E], pairs: usize, steps: usize) -> Option<Vec<E>> {
    if pairs == 0 || steps < 2 || !values.len().is_multiple_of(2 * pairs) {
        return None;
    }
    let per = values.len() / (2 * pairs);
    let mut out = Vec::with_capacity(pairs * steps * per);
    for p in 0..pairs {
        let a = &values[2 * p * per..(2 * p + 1) * per];
        let b = &values[(2 * p + 1) * per..(2 * p + 2) * per];
        for k in 0..steps {
            let w = k as f64 / (steps - 1) as f64;
            let (wa, wb) = (E::from_f64(1.0 - w)?, E::from_f64(w)?);
            out.extend(a.iter().zip(b).map(|(&a, &b)| wa * a + wb * b));
        }
    }
    Some(out)
}

/// Interpolates in latent space between pairs of images: `images` holds `2·pairs` images (pair
/// `p` is images `2p` and `2p + 1`); returns `pairs·steps` images, row after row, each row going
/// from the first image of its pair to the second.
///
/// Both images are encoded (with the dequantization noise `noise` if given, one value in
/// `[0, 1)` per pixel, else drawn), their latents mixed as `(1 − w)·z₁ + w·z₂` for
/// `w = 0, 1/(steps−1), …, 1`, and each mix decoded. With `whole_latent`, the latents that split
/// layers take off are mixed the same way and handed back to them, so the ends of each row are
/// the two images; without it, split layers draw their part from the prior, as the tutorial's
/// `interpolate` does.
///
/// # Errors
/// [`FlowError::Argument`] for an odd number of images or `steps < 2`; the errors of
/// [`ImageFlow::encode`] and [`ImageFlow::sample`].
pub fn interpolate<F, E, D, const K: usize>(
    model: &ImageFlow<F, K>,
    images: Tensor<F::In, E, D>,
    steps: usize,
    noise: Option<Vec<E>>,
    whole_latent: bool,
) -> Result<Tensor<F::In, E, D>, FlowError<D::Err>>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    F: Flow<E, D>,
{
    let n = images.shape().concrete()[0];
    if n == 0 || n % 2 != 0 {
        return Err(FlowError::Argument(format!(
            "interpolation takes pairs of images: got {n} images"
        )));
    }
    if steps < 2 {
        return Err(FlowError::Argument(format!(
            "interpolation needs at least 2 steps (the two images at the ends), got {steps}"
        )));
    }
    let pairs = n / 2;
    let lerp = |values: &[E]| {
        lerp_pairs(values, pairs, steps)
            .ok_or_else(|| FlowError::Argument("latents of unequal size".into()))
    };
    let dev = images.device().clone();
    let mut ctx = FlowCtx {
        dequant_noise: noise,
        record_latents: true,
        ..FlowCtx::default()
    };
    let (z, _) = model.encode(images, &mut ctx)?;
    let m = pairs * steps;
    let z = dev.try_tensor_from_vec(lerp(&z.as_vec())?, F::Out::with_batch(m))?;
    let mut decode = FlowCtx::default();
    if whole_latent {
        decode.latents = ctx
            .latents
            .iter()
            .map(|l| lerp(l))
            .collect::<Result<_, _>>()?;
    }
    model.sample(&dev, m, Some(z), &mut decode)
}

/// Draws `rows` rows of `per_row` images in which the images of a row share their final latent
/// (the output of the whole flow, drawn once per row) and differ in what the split layers draw:
/// the tutorial's picture of what each level of a multi-scale flow models. All latents are
/// drawn from `N(0, temperature²)`.
///
/// # Errors
/// [`FlowError::Argument`] for a flow without split layers (its final latent is all of it, so
/// every image of a row would be the same); [`FlowError::Temperature`]; device errors.
pub fn shared_final_latent<F, E, D, const K: usize>(
    model: &ImageFlow<F, K>,
    dev: &D,
    rows: usize,
    per_row: usize,
    temperature: f64,
) -> Result<Tensor<F::In, E, D>, FlowError<D::Err>>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    F: Flow<E, D>,
{
    let mut ctx = FlowCtx {
        temperature,
        ..FlowCtx::default()
    };
    let t = ctx.checked_temperature()?;
    if model.split_latent_sizes(dev)?.is_empty() {
        return Err(FlowError::Argument(
            "this flow has no split layers: its final latent is the whole latent, so there are \
             no earlier levels to vary (use a multi-scale flow)"
                .into(),
        ));
    }
    let finals = standard_normal(dev, &F::Out::with_batch(rows))?.try_mul(t)?;
    let n = rows * per_row;
    let z: Vec<E> = match F::Out::NUMEL {
        // dfdx 0.13's `as_vec` fails on an empty tensor.
        _ if rows == 0 => Vec::new(),
        per => finals
            .as_vec()
            .chunks(per)
            .flat_map(|row| std::iter::repeat_n(row, per_row).flatten().copied())
            .collect(),
    };
    let z = dev.try_tensor_from_vec(z, F::Out::with_batch(n))?;
    model.sample(dev, n, Some(z), &mut ctx)
}
