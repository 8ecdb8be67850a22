//! `sample`: a grid of samples from a checkpoint.
use super::*;

/// Options of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Number of samples
    #[arg(long, default_value_t = 16)]
    pub n: usize,
    /// Output PNG
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Seed of the prior draws
    #[arg(long, default_value_t = 44)]
    pub seed: u64,
    /// Standard deviation of the prior (Glow's temperature; 0 or more)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
}

pub(super) fn cmd_sample<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &SampleArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.n == 0 {
        return Err(failed("--n must be at least 1"));
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(failed(format!(
            "--temperature must be a number of 0 or more, not {}",
            args.temperature
        )));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.weights.path(name)?)?;
    let mut ctx = FlowCtx {
        temperature: args.temperature,
        ..FlowCtx::default()
    };
    let samples = model
        .sample(&dev, args.n, None, &mut ctx)
        .map_err(flow_failed)?;
    save_grid(
        &args.out,
        &to_bytes(&samples.as_vec()),
        args.n,
        28,
        28,
        GridStyle::default(),
    )
    .map_err(|e| failed(format!("{}: {e}", args.out.display())))?;
    println!("wrote {} samples to {}", args.n, args.out.display());
    Ok(())
}
