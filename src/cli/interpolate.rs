//! `interpolate`: rows of images interpolated in latent space between test images.
use super::*;

/// Options of `interpolate`.
///
/// Each row goes from one test image to the next through latent space: both images are
/// encoded (with dequantization noise drawn from `--seed`, so a run is reproducible), their
/// latents are mixed as `(1 − w)·z₁ + w·z₂` for `w = 0, 1/(steps−1), …, 1`, and each mix is
/// decoded. The first column is the first image and the last column the second, exactly (up
/// to a rare off-by-one pixel level from f32 rounding).
///
/// Split layers (the multi-scale model): the encoding records the latents each split layer
/// takes off (`FlowCtx::recording`), these are mixed with the same weights as the final latent,
/// and the mixes are handed back to the split layers through `FlowCtx::latents` when decoding,
/// so the whole latent is interpolated. The tutorial's `interpolate` does less: it passes only
/// the final latent (`model.sample(..., z_init=interpolations)`), so its split layers draw
/// their part at random — the tutorial says so ("we actually did not do the 'true'
/// interpolation ... they have been sampled randomly") — and its end images are not the
/// originals. `--sample-splits` does that. (The tutorial also runs from the second image to the
/// first; here rows run from the first to the second.)
#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Pairs of test images, one row each (test images 0 and 1, 2 and 3, …)
    #[arg(long, default_value_t = 2)]
    pub pairs: usize,
    /// Images per row, both ends included (8: the two images and 6 in between)
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Output PNG
    #[arg(long, default_value = "interpolation.png")]
    pub out: PathBuf,
    /// MNIST directory [default: $MNIST_DIR, else data/mnist; downloaded if missing]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the dequantization noise used to encode the images
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Draw the split-off latents at random instead of interpolating them, as the tutorial's
    /// `interpolate` does (the row ends then differ from the images in their fine detail)
    #[arg(long)]
    pub sample_splits: bool,
}

pub(super) fn cmd_interpolate<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &InterpolateArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    unconditional_only::<K>("interpolate", name)?;
    use rand::{Rng, SeedableRng};
    if args.pairs == 0 {
        return Err(failed("--pairs must be at least 1"));
    }
    if args.steps < 2 {
        return Err(failed(
            "--steps must be at least 2 (the two images at the ends of each row)",
        ));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.weights.path(name)?)?;
    let n = 2 * args.pairs;
    let images = test_images(args.data.clone(), n)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let noise: Vec<f32> = (0..images.len()).map(|_| rng.gen::<f32>()).collect();
    let x = dev
        .try_tensor_from_vec(images, Img::<1, 28, 28>::with_batch(n))
        .map_err(device_failed)?;
    let images =
        crate::sampling::interpolate(&model, x, args.steps, Some(noise), !args.sample_splits)
            .map_err(flow_failed)?;
    write_grid(&args.out, &images.as_vec(), args.steps)?;
    println!(
        "wrote {} interpolation(s) of {} steps between test images to {}",
        args.pairs,
        args.steps,
        args.out.display()
    );
    Ok(())
}
