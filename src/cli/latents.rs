//! `latents`: rows of samples that share their final latent.
use super::*;

/// Options of `latents`.
///
/// The tutorial's "latents in different levels of multi-scale" figure: each row draws the final
/// latent `z` once and decodes it 8 times, the split layers drawing their part anew each time,
/// so a row shows what the early split-off variables change (local detail) and what the final
/// ones fix (the digit). Needs a model with split layers.
#[derive(Debug, Args)]
pub struct LatentsArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Rows: final latents drawn, each decoded 8 times
    #[arg(long, default_value_t = 4)]
    pub rows: usize,
    /// Output PNG
    #[arg(long, default_value = "latents.png")]
    pub out: PathBuf,
    /// Seed of the prior draws
    #[arg(long, default_value_t = 44)]
    pub seed: u64,
    /// Standard deviation of the prior, for the final and the split-off latents
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
}

/// Samples per row of `latents`: the tutorial's 8.
pub const LATENT_ROW: usize = 8;

pub(super) fn cmd_latents<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &LatentsArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    unconditional_only::<K>("latents", name)?;
    if args.rows == 0 {
        return Err(failed("--rows must be at least 1"));
    }
    if !(args.temperature.is_finite() && args.temperature > 0.0) {
        return Err(failed("--temperature must be a positive number"));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.weights.path(name)?)?;
    let samples =
        crate::sampling::shared_final_latent(&model, &dev, args.rows, LATENT_ROW, args.temperature)
            .map_err(flow_failed)?;
    write_grid(&args.out, &samples.as_vec(), LATENT_ROW)?;
    println!(
        "wrote {} rows of {LATENT_ROW} samples sharing their final latent to {}",
        args.rows,
        args.out.display()
    );
    Ok(())
}
