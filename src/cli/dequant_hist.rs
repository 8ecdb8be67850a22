//! `dequant-hist`: histograms of the values a (variational) dequantization layer produces.
use super::*;

/// Where `dequant-hist` bins the dequantized values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DequantSpace {
    /// The output of the dequantization layer, `logit((x + u)/256)` (scaled by α): what the
    /// tutorial's `visualize_dequant_distribution` plots (`model.flows[0](imgs)`)
    Logit,
    /// The values before the logit, `(x + u)/256` in [0, 1] (on MNIST nearly all of them fall
    /// in the first of 256 bins, the black pixels: the logit space shows more)
    Unit,
}

/// Options of `dequant-hist`.
///
/// The tutorial's `visualize_dequant_distribution`: the first layer of the model (uniform
/// dequantization for `simple`, variational dequantization for `vardeq` and `multiscale`) runs
/// alone on test images `--draws` times, and the histogram of its outputs is drawn (density,
/// 256 bins): sharp-edged blocks for uniform dequantization, a smoother, Gaussian-like bump for
/// a trained variational dequantization. One call draws one model's histogram; the tutorial's
/// two plots are `simple -- dequant-hist` and `vardeq -- dequant-hist`.
#[derive(Debug, Args)]
pub struct DequantHistArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Output PNG
    #[arg(long, default_value = "dequant_hist.png")]
    pub out: PathBuf,
    /// MNIST directory [default: $MNIST_DIR, else data/mnist; downloaded if missing]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test images to dequantize (the tutorial: one batch of 128)
    #[arg(long, default_value_t = 128)]
    pub images: usize,
    /// Dequantization draws per image (the tutorial: 8)
    #[arg(long, default_value_t = 8)]
    pub draws: usize,
    /// Histogram bins
    #[arg(long, default_value_t = 256)]
    pub bins: usize,
    /// Which values to bin
    #[arg(long, value_enum, default_value_t = DequantSpace::Logit)]
    pub space: DequantSpace,
    /// Seed of the dequantization noise
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Flows whose first layer can be run on its own: every [`Chain`](crate::Chain), so all of
/// this crate's models. `dequant-hist` uses it to run the dequantization layer alone, like the
/// tutorial's `model.flows[0](imgs)`.
pub trait FirstLayer<E: FlowDtype, D: FlowDevice<E>> {
    /// The first layer's [`Flow::name`].
    fn first_layer_name(&self) -> String;
    /// The first layer's output (density direction, no tape) on the `batch` images `x` (in
    /// the layout of the flow's input), image after image.
    fn first_layer_forward(
        &self,
        dev: &D,
        x: Vec<E>,
        batch: usize,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Vec<E>, FlowError<D::Err>>;
}

macro_rules! first_layer {
    ($($rest:ident),*) => {
        impl<E: FlowDtype, D: FlowDevice<E>, L0: Flow<E, D>, $($rest),*> FirstLayer<E, D>
            for crate::Chain<(L0, $($rest,)*)>
        {
            fn first_layer_name(&self) -> String {
                self.0 .0.name()
            }

            fn first_layer_forward(
                &self,
                dev: &D,
                x: Vec<E>,
                batch: usize,
                ctx: &mut FlowCtx<E>,
            ) -> Result<Vec<E>, FlowError<D::Err>> {
                let x = dev.try_tensor_from_vec(x, L0::In::with_batch(batch))?;
                let ldj = dev.try_zeros_like(&(batch,))?;
                let (z, _) = self.0 .0.try_forward(x, ldj, ctx)?;
                Ok(z.as_vec())
            }
        }
    };
}
first_layer!();
first_layer!(L1);
first_layer!(L1, L2);
first_layer!(L1, L2, L3);
first_layer!(L1, L2, L3, L4);
first_layer!(L1, L2, L3, L4, L5);
first_layer!(L1, L2, L3, L4, L5, L6);
first_layer!(L1, L2, L3, L4, L5, L6, L7);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14);
first_layer!(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15);

pub(super) fn cmd_dequant_hist<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &DequantHistArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>> + FirstLayer<f32, D>,
{
    if args.images == 0 || args.draws == 0 || args.bins == 0 {
        return Err(failed("--images, --draws and --bins must be at least 1"));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.weights.path(name)?)?;
    let layer = model.flows.first_layer_name();
    let kind = if layer.starts_with("VariationalDequantization") {
        "Variational dequantization"
    } else if layer.starts_with("Dequantization") {
        "Dequantization"
    } else {
        return Err(failed(format!(
            "the first layer of this model is {layer}, not a (variational) dequantization"
        )));
    };
    let images = test_images(args.data.clone(), args.images)?;
    let mut values: Vec<f64> = Vec::with_capacity(images.len() * args.draws);
    for _ in 0..args.draws {
        let out = model
            .flows
            .first_layer_forward(&dev, images.clone(), args.images, &mut FlowCtx::default())
            .map_err(flow_failed)?;
        values.extend(out.into_iter().map(f64::from));
    }
    let (range, what) = match args.space {
        DequantSpace::Logit => {
            let (lo, hi) = values
                .iter()
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            if lo >= hi {
                return Err(failed(format!(
                    "the dequantized values span no range ({lo} to {hi})"
                )));
            }
            ((lo, hi), "logit space")
        }
        DequantSpace::Unit => {
            let alpha = crate::layers::dequantization::DEQUANT_ALPHA;
            for v in values.iter_mut() {
                *v = (1.0 / (1.0 + (-*v).exp()) - 0.5 * alpha) / (1.0 - alpha);
            }
            ((0.0, 1.0), "(x + u) / 256")
        }
    };
    let title = format!("{kind} ({name}, {what})");
    crate::viz::charts::histogram(&args.out, &title, &[("", &values)], range, args.bins)
        .map_err(failed)?;
    println!(
        "wrote the histogram of {} dequantized values ({}) to {}",
        values.len(),
        kind.to_lowercase(),
        args.out.display()
    );
    Ok(())
}
