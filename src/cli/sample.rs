//! `sample`: a grid of samples from a checkpoint; of one class, or one row per class, for a
//! class-conditional model.
use super::*;

/// Options of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Number of samples (of each class, one row per class, for a class-conditional model
    /// without --class)
    #[arg(long, default_value_t = 16)]
    pub n: usize,
    /// The class to draw, e.g. the digit (class-conditional models only) [default: every
    /// class, a row each]
    #[arg(long)]
    pub class: Option<usize>,
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

pub(super) fn cmd_sample<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
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
    // The classes of the samples, checked before the model is loaded.
    let classes: Option<Vec<usize>> = match (K, args.class) {
        (0, None) => None,
        (0, Some(_)) => {
            return Err(failed(format!(
                "--class: `{name}` is not class-conditional (the class-conditional examples, \
                 e.g. class_multiscale, are)"
            )))
        }
        (_, Some(class)) if class >= K => {
            return Err(failed(format!(
                "--class {class}: `{name}` knows classes 0 to {}",
                K - 1
            )))
        }
        (_, Some(class)) => Some(vec![class; args.n]),
        (_, None) => Some(
            (0..K)
                .flat_map(|c| std::iter::repeat_n(c, args.n))
                .collect(),
        ),
    };
    let count = classes.as_ref().map_or(args.n, Vec::len);
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.weights.path(name)?)?;
    let mut ctx = FlowCtx {
        temperature: args.temperature,
        ..FlowCtx::default()
    };
    if let Some(classes) = classes {
        ctx.classes = Some(
            crate::classes::Labels::<K>::new(classes)
                .map_err(failed)?
                .into(),
        );
    }
    let samples = model
        .sample(&dev, count, None, &mut ctx)
        .map_err(flow_failed)?;
    let style = GridStyle {
        per_row: if K > 0 && args.class.is_none() {
            args.n
        } else {
            GridStyle::default().per_row
        },
        ..GridStyle::default()
    };
    save_grid(
        &args.out,
        &to_bytes(&samples.as_vec()),
        count,
        28,
        28,
        style,
    )
    .map_err(|e| failed(format!("{}: {e}", args.out.display())))?;
    match args.class {
        Some(class) => println!(
            "wrote {count} samples of class {class} to {}",
            args.out.display()
        ),
        None if K > 0 => println!(
            "wrote {count} samples, a row of {} for each of the {K} classes, to {}",
            args.n,
            args.out.display()
        ),
        None => println!("wrote {count} samples to {}", args.out.display()),
    }
    Ok(())
}
