//! `train`: training a model into a run directory, with progress bars and Ctrl-C.
use super::*;

/// Options of `train`.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// Run directory: checkpoints/, metrics.jsonl, samples/ [default: runs/MODEL]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// MNIST directory [default: $MNIST_DIR, else data/mnist; downloaded if missing]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs in total (a resumed run continues up to this count)
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Images per batch
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate (a positive number)
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub lr: f64,
    /// Seed of shuffling and dequantization noise
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on the first N training images only
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Validate on the first N validation images only
    #[arg(long)]
    pub max_val: Option<usize>,
    /// Continue from the run directory's last checkpoint
    #[arg(long)]
    pub resume: bool,
    /// Raise the learning rate linearly over the first N steps (0: no warmup)
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Clip the gradients' global L2 norm to this before each step
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
}

impl Default for TrainArgs {
    fn default() -> Self {
        Self {
            out: None,
            data: None,
            epochs: 200,
            batch_size: 128,
            lr: 1e-3,
            seed: 42,
            max_train: None,
            max_val: None,
            resume: false,
            warmup_steps: 0,
            max_grad_norm: None,
        }
    }
}

/// `resume_hint` completes the Ctrl-C message: how to continue.
pub(super) fn cmd_train<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &TrainArgs,
    resume_hint: &str,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.batch_size == 0 || args.epochs == 0 {
        return Err(failed("--batch-size and --epochs must be at least 1"));
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(failed(format!(
            "--lr must be a positive number, not {}",
            args.lr
        )));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(name));
    // `train` checks this too; here it comes before loading the data.
    if !args.resume && checkpoint::has_checkpoints(&RunDir(out.clone()).checkpoints()) {
        return Err(run_exists(&out));
    }
    let mnist = Mnist::obtain(args.data.clone()).map_err(failed)?;
    let pixels = |split: Subset| -> Vec<u8> {
        let view = mnist.split(split);
        (0..view.len())
            .flat_map(|i| view.image(i).iter().copied())
            .collect()
    };
    let (train_px, val_px) = (pixels(Subset::Train), pixels(Subset::Validation));
    // The labels, for a class-conditional model (an unconditional one ignores them).
    let (train_labels, val_labels) = (
        mnist.split(Subset::Train).labels(),
        mnist.split(Subset::Validation).labels(),
    );
    let dev = D::open(args.seed)?;
    let mut model = build(&dev).map_err(failed)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        max_train: args.max_train,
        max_val: args.max_val,
        warmup_steps: args.warmup_steps,
        max_grad_norm: args.max_grad_norm,
        ..TrainConfig::default()
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // First Ctrl-C: finish the step, checkpoint, exit 130. Second: exit at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: finishing the current step and writing a checkpoint (again to quit now)"
        );
    });
    eprintln!(
        "training {name} ({} parameters) on {} images, {}, batch {}; writing to {}",
        crate::cli::group_thousands(model.num_trainable_params()),
        (train_px.len() / 784).min(args.max_train.unwrap_or(usize::MAX)),
        plural(args.epochs, "epoch"),
        args.batch_size,
        out.display()
    );
    match train_with(
        &mut model,
        name,
        &dev,
        Images::labelled(&train_px, &train_labels),
        Images::labelled(&val_px, &val_labels),
        &config,
        &RunDir(out.clone()),
        args.resume,
        &interrupt,
        progress::CliProgress::for_stderr(),
    ) {
        Ok(history) => {
            if let Some(last) = history.last() {
                eprintln!(
                    "done: val bpd {:.4} after epoch {}; checkpoints in {}, metrics in {}",
                    last.val_bpd,
                    last.epoch,
                    RunDir(out.clone()).checkpoints().display(),
                    RunDir(out).metrics().display()
                );
            } else {
                let root = RunDir(out).checkpoints();
                let done = checkpoint::read_meta(&root, checkpoint::resume_tag(&root))
                    .map_or(args.epochs, |m| m.epoch);
                eprintln!(
                    "nothing to do: the run already has {} (asked for {})",
                    plural(done, "epoch"),
                    args.epochs
                );
            }
            Ok(())
        }
        Err(TrainError::Interrupted(dir)) => Err(CliError::Interrupted(format!(
            "interrupted: checkpoint written to {} — {resume_hint}",
            dir.display()
        ))),
        Err(TrainError::RunExists(dir)) => Err(run_exists(&dir)),
        Err(e @ TrainError::Diverged { .. }) => {
            let again = match &e {
                TrainError::Diverged {
                    last_checkpoint: Some(_),
                    ..
                } => "train --resume",
                _ => "train",
            };
            Err(failed(format!(
                "{e}: `{again} --lr` with a value below {}",
                args.lr
            )))
        }
        Err(e) => Err(failed(e)),
    }
}

/// [`TrainError::RunExists`] in the command line's terms.
pub(super) fn run_exists(dir: &Path) -> CliError {
    failed(format!(
        "{} already holds a training run (checkpoints/): continue it with `train --resume`, or \
         train into another directory (`--out`), or delete it first",
        dir.display()
    ))
}
