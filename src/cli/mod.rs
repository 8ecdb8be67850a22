//! The command line shared by the examples `simple`, `vardeq` and `multiscale`.
//!
//! ```text
//! cargo run --release --example multiscale                 # the main job: train, then sample
//! cargo run --release --example multiscale -- train --epochs 1 --max-train 2048
//! cargo run --release --example multiscale -- info         # layers, shapes, parameters
//! cargo run --release --example multiscale -- sample --checkpoint runs/multiscale --n 16 --out s.png
//! cargo run --release --example multiscale -- eval --checkpoint runs/multiscale
//! cargo run --release --example simple -- loglik --weights W.safetensors --inputs X.safetensors
//! cargo run --release --example multiscale -- interpolate --checkpoint runs/multiscale --out interp.png
//! cargo run --release --example multiscale -- latents --checkpoint runs/multiscale --out shared.png
//! cargo run --release --example vardeq -- dequant-hist --checkpoint runs/vardeq --out hist.png
//! cargo run --release --example simple -- charts --out-dir charts --checkpoint runs/simple
//! ```
pub mod progress;

use crate::checkpoint::{self, load_weights};
use crate::data::{Mnist, Split};
use crate::device::{DeviceChoice, DeviceError, OpenDevice, Resolved};
use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo};
use crate::model::ImageFlow;
use crate::shape::Img;
use crate::train::{evaluate_bpd, train_with, RunDir, TrainConfig, TrainError};
use crate::viz::{save_grid, to_bytes, GridStyle};
use crate::{FlowDevice, FlowDtype};
use clap::{Args, Parser, Subcommand};
use dfdx::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Command line of a model's example.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Train, evaluate and sample a normalizing flow on MNIST (dfdx-flows)."
)]
pub struct Cli {
    /// What to do; without a command: train with the defaults, then write samples.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where to compute: `auto` is the GPU when built with feature `cuda` and one answers,
    /// else the CPU
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train on MNIST (Adam 1e-3, StepLR 0.99, batch 128), checkpointing every epoch.
    Train(TrainArgs),
    /// Print the model's layers, shapes and parameter count.
    Info,
    /// Draw samples from a trained model into a PNG grid.
    Sample(SampleArgs),
    /// Validation and test bpd (importance sampling), timings and parameters, to results.json.
    Eval(EvalArgs),
    /// Exact log p(x) and bpd of given images with given dequantization noise (deterministic;
    /// for comparing with other implementations).
    Loglik(LoglikArgs),
    /// Interpolate between pairs of test images through latent space, into a PNG grid.
    Interpolate(InterpolateArgs),
    /// Rows of samples sharing the final latent, differing in the split-off latents
    /// (models with split layers, e.g. multiscale), into a PNG grid.
    Latents(LatentsArgs),
    /// Histogram of the dequantized values of test images (this model's dequantization).
    DequantHist(DequantHistArgs),
    /// The tutorial's model-independent figures (dequantization, scaling, masks) and, given a
    /// run directory, its training curves.
    Charts(ChartsArgs),
}

/// Options of `loglik`.
#[derive(Debug, Args)]
pub struct LoglikArgs {
    /// Weights: a safetensors file with the model's tensor names (e.g. a PyTorch `state_dict`
    /// saved with safetensors), or a run/checkpoint directory
    #[arg(long)]
    pub weights: PathBuf,
    /// Safetensors file with `images` (N,1,28,28; values 0..255) and `noise` (N,1,28,28;
    /// uniform in [0, 1)), both f32
    #[arg(long)]
    pub inputs: PathBuf,
    /// Also write the results as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `loglik` computes: per image, `log p(x)` in nats and bits per dimension.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoglikResults {
    /// Model name.
    pub model: String,
    /// `log p(x)` per image, nats.
    pub log_px: Vec<f64>,
    /// Bits per dimension per image.
    pub bpd: Vec<f64>,
}

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
}

/// Options of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A run directory, its checkpoints/ directory, or one checkpoint directory
    #[arg(long)]
    pub checkpoint: PathBuf,
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

/// Options of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory, its checkpoints/ directory, or one checkpoint directory
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// MNIST directory [default: $MNIST_DIR, else data/mnist]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Importance samples for the test bpd
    #[arg(long, default_value_t = 8)]
    pub import_samples: usize,
    /// Evaluate on the first N images of each split only
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Where to write the results [default: results.json in the run directory, else beside
    /// the weights file]
    #[arg(long)]
    pub out: Option<PathBuf>,
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
        }
    }
}

pub use crate::device::cpu_device;

/// A model as the command line runs it: how to build it on any device.
///
/// The examples pass [`Simple`], [`VarDeq`] or [`Multiscale`] to [`run`]; your own model works
/// the same way:
///
/// ```
/// use dfdx_flows::cli::CliModel;
/// use dfdx_flows::prelude::*;
///
/// struct Small;
/// impl CliModel for Small {
///     type Flow<D: FlowDevice<f32>> =
///         Chain<(Dequantization<1, 28, 28>, CheckerboardCoupling<1, 28, 28, 8, false, f32, D>)>;
///     fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
///         ImageFlow::<Self::Flow<D>>::try_build(dev)
///     }
/// }
/// // fn main() -> std::process::ExitCode { dfdx_flows::cli::run::<Small>("small") }
/// ```
pub trait CliModel {
    /// The flow on device `D`: a [`Chain`](crate::Chain) on 1×28×28 images ([`FirstLayer`]:
    /// `dequant-hist` runs its first layer alone).
    type Flow<D: FlowDevice<f32>>: Flow<f32, D, In = Img<1, 28, 28>> + FirstLayer<f32, D>;
    /// A fresh model on `dev`.
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err>;
}

/// The tutorial's simple flow ([`SimpleFlow`](crate::models::SimpleFlow)) for [`run`].
pub struct Simple;
/// The tutorial's variational-dequantization flow ([`VarDeqFlow`](crate::models::VarDeqFlow)).
pub struct VarDeq;
/// The tutorial's multi-scale flow ([`MultiscaleFlow`](crate::models::MultiscaleFlow)).
pub struct Multiscale;

impl CliModel for Simple {
    type Flow<D: FlowDevice<f32>> = crate::models::SimpleFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
        crate::models::simple_flow(dev)
    }
}

impl CliModel for VarDeq {
    type Flow<D: FlowDevice<f32>> = crate::models::VarDeqFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
        crate::models::vardeq_flow(dev)
    }
}

impl CliModel for Multiscale {
    type Flow<D: FlowDevice<f32>> = crate::models::MultiscaleFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
        crate::models::multiscale_flow(dev)
    }
}

/// The devices the command line can run on.
pub trait CliDevice: FlowDevice<f32> + OpenDevice {}
impl<D: FlowDevice<f32> + OpenDevice> CliDevice for D {}

/// Runs the command line for model `M` (its run directory is `runs/NAME`) on the process's
/// arguments, and turns the outcome into the exit status: 0, 1 with one line on stderr, or
/// 130 after Ctrl-C.
pub fn run<M: CliModel>(name: &str) -> ExitCode {
    match run_cli::<M>(name, Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Interrupted(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(130)
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command line for model `M` on the given arguments (the first is the program
/// name), as [`run`] does on the process's: for tests and for embedding.
pub fn run_from<M, I, T>(name: &str, args: I) -> Result<(), CliError>
where
    M: CliModel,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| CliError::Failed(e.to_string()))?;
    run_cli::<M>(name, cli)
}

fn run_cli<M: CliModel>(name: &str, cli: Cli) -> Result<(), CliError> {
    // The charts need no model and no device.
    if let Some(Command::Charts(args)) = &cli.command {
        return cmd_charts(args);
    }
    match cli.device.resolve()? {
        Resolved::Cpu => dispatch::<M::Flow<Cpu>, Cpu>(name, M::build::<Cpu>, cli.command),
        #[cfg(feature = "cuda")]
        Resolved::Cuda => dispatch::<M::Flow<Cuda>, Cuda>(name, M::build::<Cuda>, cli.command),
        #[cfg(not(feature = "cuda"))]
        Resolved::Cuda => Err(DeviceError::NotBuilt.into()),
    }
}

/// A command's failure: one line for the user.
#[derive(Debug)]
pub enum CliError {
    /// Ctrl-C (exit status 130).
    Interrupted(String),
    /// Anything else (exit status 1).
    Failed(String),
}

fn failed<E: std::fmt::Display>(e: E) -> CliError {
    CliError::Failed(e.to_string())
}

/// A device error (allocation, shape) as a one-line failure.
fn device_failed<E: std::fmt::Debug>(e: E) -> CliError {
    CliError::Failed(format!("{e:?}"))
}

impl From<DeviceError> for CliError {
    fn from(e: DeviceError) -> Self {
        failed(e)
    }
}

fn dispatch<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    command: Option<Command>,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>> + FirstLayer<f32, D>,
{
    match command {
        None => {
            let mut args = TrainArgs::default();
            let out = PathBuf::from("runs").join(name);
            // The main job picks up where an earlier (interrupted) run of it stopped. A pointer
            // that cannot be read is an error, not a reason to start afresh over the run.
            let root = RunDir(out.clone()).checkpoints();
            match checkpoint::resolve(&root, checkpoint::resume_tag(&root)) {
                Ok(_) => {
                    eprintln!("found a checkpoint in {}: resuming", out.display());
                    args.resume = true;
                }
                Err(checkpoint::CheckpointError::Missing(_)) => {}
                Err(e) => {
                    return Err(failed(format!(
                        "{e}; the main job resumes {}: repair or move it",
                        out.display()
                    )))
                }
            }
            cmd_train(name, build, &args, "run the same command again to continue")?;
            let samples = out.join("samples.png");
            cmd_sample(
                name,
                build,
                &SampleArgs {
                    checkpoint: out,
                    n: 16,
                    out: samples,
                    seed: 44,
                    temperature: 1.0,
                },
            )
        }
        Some(Command::Train(args)) => {
            cmd_train(name, build, &args, "continue with `train --resume`")
        }
        Some(Command::Info) => {
            let dev = D::open(0)?;
            let model = build(&dev).map_err(failed)?;
            let rows: Vec<LayerInfo> = model.describe();
            print!("{}", layer_table(&rows, model.num_trainable_params()));
            Ok(())
        }
        Some(Command::Sample(args)) => cmd_sample(name, build, &args),
        Some(Command::Eval(args)) => cmd_eval(name, build, &args),
        Some(Command::Loglik(args)) => cmd_loglik(name, build, &args),
        Some(Command::Interpolate(args)) => cmd_interpolate(name, build, &args),
        Some(Command::Latents(args)) => cmd_latents(name, build, &args),
        Some(Command::DequantHist(args)) => cmd_dequant_hist(name, build, &args),
        Some(Command::Charts(args)) => cmd_charts(&args),
    }
}

/// Reads the f32 tensor `name` of shape (N, 1, 28, 28) from a safetensors file.
fn read_images(path: &Path, name: &str) -> Result<Vec<f32>, CliError> {
    use ::safetensors::tensor::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        failed(format!(
            "{}: not a safetensors file ({e:?})",
            path.display()
        ))
    })?;
    let view = st.tensor(name).map_err(|_| {
        failed(format!(
            "{}: no tensor `{name}` (expected `images` and `noise`, f32, shape (N, 1, 28, 28))",
            path.display()
        ))
    })?;
    let shape = view.shape();
    if view.dtype() != Dtype::F32 || shape.len() != 4 || shape[1..] != [1, 28, 28] {
        return Err(failed(format!(
            "{}: tensor `{name}` is {:?} {:?}; expected F32 (N, 1, 28, 28)",
            path.display(),
            view.dtype(),
            shape
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

/// `log p(x)` per image of `images` (values 0..255) with dequantization noise `noise`, both
/// laid out as (N, 1, 28, 28): the library call behind `loglik`.
pub fn log_likelihoods<F, D: CliDevice>(
    model: &ImageFlow<F>,
    dev: &D,
    images: &[f32],
    noise: &[f32],
) -> Result<Vec<f64>, D::Err>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    assert_eq!(images.len(), noise.len(), "images and noise differ in size");
    let n = images.len() / 784;
    let x = dev.try_tensor_from_vec(images.to_vec(), Img::<1, 28, 28>::with_batch(n))?;
    let mut ctx = FlowCtx::with_noise(noise.to_vec());
    Ok(model
        .log_likelihood(x, &mut ctx)?
        .as_vec()
        .into_iter()
        .map(f64::from)
        .collect())
}

fn cmd_loglik<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &LoglikArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    let (dev, model) = open_model(name, build, 0, &args.weights)?;
    let images = read_images(&args.inputs, "images")?;
    let noise = read_images(&args.inputs, "noise")?;
    if images.len() != noise.len() {
        return Err(failed(format!(
            "{}: `images` has {} images but `noise` has {}",
            args.inputs.display(),
            images.len() / 784,
            noise.len() / 784
        )));
    }
    if images.is_empty() {
        return Err(failed(format!("{}: no images", args.inputs.display())));
    }
    if let Some(bad) = images.iter().find(|v| !(0.0..=255.0).contains(*v)) {
        return Err(failed(format!(
            "{}: `images` holds {bad}; pixel values must be in 0..=255",
            args.inputs.display()
        )));
    }
    if let Some(bad) = noise.iter().find(|v| !(0.0..1.0).contains(*v)) {
        return Err(failed(format!(
            "{}: `noise` holds {bad}; dequantization noise must be in [0, 1)",
            args.inputs.display()
        )));
    }
    let log_px = log_likelihoods(&model, &dev, &images, &noise).map_err(device_failed)?;
    let bpd: Vec<f64> = log_px
        .iter()
        .map(|l| -l * std::f64::consts::LOG2_E / 784.0)
        .collect();
    println!("image\tlog p(x) [nats]\tbpd");
    for (i, (l, b)) in log_px.iter().zip(&bpd).enumerate() {
        println!("{i}\t{l:.6}\t{b:.6}");
    }
    let results = LoglikResults {
        model: name.to_string(),
        log_px,
        bpd,
    };
    if let Some(out) = &args.out {
        check_results_file::<LoglikResults>(out)?;
        checkpoint::write_atomic(
            out,
            serde_json::to_string_pretty(&results)
                .expect("serializable")
                .as_bytes(),
        )
        .map_err(failed)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// `resume_hint` completes the Ctrl-C message: how to continue.
fn cmd_train<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
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
    let pixels = |split: Split| -> Vec<u8> {
        let view = mnist.split(split);
        (0..view.len())
            .flat_map(|i| view.image(i).iter().copied())
            .collect()
    };
    let (train_px, val_px) = (pixels(Split::Train), pixels(Split::Validation));
    let dev = D::open(args.seed)?;
    let mut model = build(&dev).map_err(failed)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        max_train: args.max_train,
        max_val: args.max_val,
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
        &train_px,
        &val_px,
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
fn run_exists(dir: &Path) -> CliError {
    failed(format!(
        "{} already holds a training run (checkpoints/): continue it with `train --resume`, or \
         train into another directory (`--out`), or delete it first",
        dir.display()
    ))
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// Finds the weights file for `--checkpoint P`: P itself if a file, P/model.safetensors, or
/// the best (else last) checkpoint under P/checkpoints or P. A pointer file that cannot be
/// read is an error, not a missing checkpoint.
pub fn find_weights(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("model.safetensors").is_file() {
        return Ok(path.join("model.safetensors"));
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        for tag in ["best", "last"] {
            match checkpoint::resolve(&root, tag) {
                Ok(dir) => return Ok(dir.join("model.safetensors")),
                Err(checkpoint::CheckpointError::Missing(_)) => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    Err(failed(format!(
        "no checkpoint found at {} (give a run directory written by `train`, its checkpoints/ directory, or a checkpoint directory)",
        path.display()
    )))
}

/// Opens the device (seeded) and builds the model on it with the weights found at `path`.
fn open_model<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    seed: u64,
    path: &Path,
) -> Result<(D, ImageFlow<F>), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    let weights = find_weights(path)?;
    // A checkpoint written by `train` names its model: say that, rather than which tensor
    // differs, when it is another one.
    if let Some(dir) = weights.parent() {
        if let Ok(meta) = checkpoint::read_meta_in(dir) {
            if meta.model != name {
                return Err(failed(format!(
                    "{} holds the `{}` model, not `{name}`: use the `{}` example for it",
                    weights.display(),
                    meta.model,
                    meta.model
                )));
            }
            if meta.epoch_step > 0 {
                eprintln!(
                    "note: {} was written in the middle of epoch {} (step {} of it; not \
                     validated yet)",
                    weights.display(),
                    meta.epoch + 1,
                    meta.epoch_step
                );
            }
        }
    }
    let dev = D::open(seed)?;
    let mut model = build(&dev).map_err(failed)?;
    load_weights(&weights, &mut model).map_err(failed)?;
    Ok((dev, model))
}

fn cmd_sample<F, D: CliDevice>(
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
    let (dev, model) = open_model(name, build, args.seed, &args.checkpoint)?;
    let mut ctx = FlowCtx {
        temperature: args.temperature,
        ..FlowCtx::default()
    };
    let samples = model
        .sample(&dev, args.n, None, &mut ctx)
        .map_err(device_failed)?;
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

/// The tutorial's results table, as `eval` writes it to results.json (non-finite numbers as
/// `null`, read back as NaN).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EvalResults {
    /// Model name.
    pub model: String,
    /// Validation bpd (one dequantization draw).
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub val_bpd: f64,
    /// Test bpd with importance sampling.
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub test_bpd: f64,
    /// Importance samples used.
    pub import_samples: usize,
    /// Seconds to compute the bpd of 64 images (one dequantization draw).
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub inference_seconds_per_64: f64,
    /// Seconds to sample 64 images.
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub sampling_seconds_per_64: f64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Evaluated on the first N images of each split only (`--max-images`); `None`: all.
    #[serde(default)]
    pub max_images: Option<usize>,
}

fn cmd_eval<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &EvalArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.import_samples == 0 || args.max_images == Some(0) {
        return Err(failed(
            "--import-samples and --max-images must be at least 1",
        ));
    }
    let (dev, mut model) = open_model(name, build, 42, &args.checkpoint)?;
    model.import_samples = args.import_samples;
    let mnist = Mnist::obtain(args.data.clone()).map_err(failed)?;
    let limit = args.max_images.unwrap_or(usize::MAX);
    let pixels = |split: Split| -> Vec<u8> {
        let view = mnist.split(split);
        (0..view.len().min(limit))
            .flat_map(|i| view.image(i).iter().copied())
            .collect()
    };
    let (val, test) = (pixels(Split::Validation), pixels(Split::Test));
    let val_bpd = evaluate_bpd(&model, &dev, &val, 64, 0).map_err(failed)?;
    let mut test_sum = 0.0;
    let mut inference_seconds = 0.0;
    for chunk in test.chunks(64 * 784) {
        let x = dev.tensor_from_vec(
            chunk.iter().map(|v| *v as f32).collect(),
            Img::<1, 28, 28>::with_batch(chunk.len() / 784),
        );
        let t = Instant::now();
        let bpd = model.importance_bpd(&x).map_err(device_failed)?;
        inference_seconds += t.elapsed().as_secs_f64();
        test_sum += bpd.iter().sum::<f64>();
    }
    let n_test = test.len() / 784;
    let test_bpd = test_sum / n_test as f64;
    let t = Instant::now();
    model
        .sample(&dev, 64, None, &mut FlowCtx::default())
        .map_err(device_failed)?;
    let results = EvalResults {
        model: name.to_string(),
        val_bpd,
        test_bpd,
        import_samples: model.import_samples,
        // Per 64 images and per dequantization draw, over the whole (possibly partial) set.
        inference_seconds_per_64: inference_seconds / model.import_samples as f64 / n_test as f64
            * 64.0,
        sampling_seconds_per_64: t.elapsed().as_secs_f64(),
        parameters: model.num_trainable_params(),
        max_images: args.max_images,
    };
    let out = match &args.out {
        Some(out) => out.clone(),
        None => results_path(&find_weights(&args.checkpoint)?),
    };
    check_results_file::<EvalResults>(&out)?;
    checkpoint::write_atomic(
        &out,
        serde_json::to_string_pretty(&results)
            .expect("serializable")
            .as_bytes(),
    )
    .map_err(failed)?;
    print!("{}", results_table(std::slice::from_ref(&results), true));
    println!("wrote {}", out.display());
    Ok(())
}

/// A results file may replace an earlier results file of the same kind, never another file
/// (a run's metrics.jsonl, a checkpoint pointer, ...).
fn check_results_file<R: serde::de::DeserializeOwned>(out: &Path) -> Result<(), CliError> {
    if out.is_dir() {
        return Err(failed(format!(
            "cannot write {}: it is a directory",
            out.display()
        )));
    }
    match std::fs::read(out) {
        Ok(bytes) if serde_json::from_slice::<R>(&bytes).is_err() => Err(failed(format!(
            "{} exists and is not a results file of this command; give another --out",
            out.display()
        ))),
        _ => Ok(()),
    }
}

/// Where `eval` writes by default: the run directory of a checkpoint written by `train`
/// (`RUN/checkpoints/step-N/model.safetensors` → `RUN/results.json`), else beside the weights.
fn results_path(weights: &Path) -> PathBuf {
    let dir = weights.parent().unwrap_or(Path::new("."));
    match dir.parent() {
        Some(ckpts) if ckpts.file_name().is_some_and(|n| n == "checkpoints") => ckpts
            .parent()
            .unwrap_or(Path::new("."))
            .join("results.json"),
        _ => dir.join("results.json"),
    }
}

/// Renders a model summary as a text table (layer, input, output, parameters) followed by a
/// last line `parameters: N` with the model's total.
pub fn layer_table(rows: &[LayerInfo], total_params: usize) -> String {
    let headers = ["#", "layer", "input", "output", "parameters"];
    // Rows whose name starts with spaces are parts of the layer above (e.g. the couplings
    // inside variational dequantization): numbered `i.k`, parameters in parentheses because
    // the layer's own row already counts them.
    let (mut top, mut inner) = (0usize, 0usize);
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let (index, params) = if r.name.starts_with("  ") {
                inner += 1;
                (
                    format!("{}.{}", top - 1, inner - 1),
                    format!("({})", group_thousands(r.params)),
                )
            } else {
                top += 1;
                inner = 0;
                ((top - 1).to_string(), group_thousands(r.params))
            };
            [
                index,
                r.name.clone(),
                r.input.clone(),
                r.output.clone(),
                params,
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers) + "\n";
    out += &"-".repeat(widths.iter().sum::<usize>() + 8);
    out.push('\n');
    for row in &cells {
        out += &line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        out.push('\n');
    }
    out += &format!("parameters: {total_params}\n");
    out
}

/// `1711818` → `1,711,818`.
pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pictures: interpolate, latents, dequant-hist, charts (the tutorial's figures).
// ---------------------------------------------------------------------------------------------

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
    /// A run directory, its checkpoints/ directory, a checkpoint directory, or a weights file
    #[arg(long)]
    pub checkpoint: PathBuf,
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

/// Options of `latents`.
///
/// The tutorial's "latents in different levels of multi-scale" figure: each row draws the final
/// latent `z` once and decodes it 8 times, the split layers drawing their part anew each time,
/// so a row shows what the early split-off variables change (local detail) and what the final
/// ones fix (the digit). Needs a model with split layers.
#[derive(Debug, Args)]
pub struct LatentsArgs {
    /// A run directory, its checkpoints/ directory, a checkpoint directory, or a weights file
    #[arg(long)]
    pub checkpoint: PathBuf,
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
    /// A run directory, its checkpoints/ directory, a checkpoint directory, or a weights file
    #[arg(long)]
    pub checkpoint: PathBuf,
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

/// Options of `charts`.
#[derive(Debug, Args)]
pub struct ChartsArgs {
    /// Directory to write the charts to (created if missing)
    #[arg(long, default_value = "charts")]
    pub out_dir: PathBuf,
    /// A run directory written by `train` (or its metrics.jsonl): also draw its training curves
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
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
    ) -> Result<Vec<E>, D::Err>;
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
            ) -> Result<Vec<E>, D::Err> {
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

/// Fails before any work if `path` cannot be an output file: it is a directory, or its
/// directory does not exist. (Other problems, such as permissions, surface when writing.)
fn check_output(path: &Path) -> Result<(), CliError> {
    if path.is_dir() {
        return Err(failed(format!(
            "cannot write {}: it is a directory",
            path.display()
        )));
    }
    // Only PNG is written: refuse another extension rather than put PNG bytes in `x.jpg`.
    if !path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return Err(failed(format!(
            "cannot write {}: pictures are written as PNG; give a name ending in .png",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(failed(format!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The first `n` test images (values 0..=255), image after image.
fn test_images(data: Option<PathBuf>, n: usize) -> Result<Vec<f32>, CliError> {
    let mnist = Mnist::obtain(data).map_err(failed)?;
    let test = mnist.split(Split::Test);
    if n > test.len() {
        return Err(failed(format!(
            "asked for {n} test images, but the test split has {}",
            test.len()
        )));
    }
    Ok((0..n)
        .flat_map(|i| test.image(i).iter().map(|&p| f32::from(p)))
        .collect())
}

/// Writes a grid of 28×28 images (`per_row` a row) as PNG.
fn write_grid(path: &Path, images: &[f32], per_row: usize) -> Result<(), CliError> {
    let n = images.len() / 784;
    let style = GridStyle {
        per_row,
        ..GridStyle::default()
    };
    save_grid(path, &to_bytes(images), n, 28, 28, style)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

/// Linear interpolation between the latents of image pairs: `values` holds `2·pairs` latents
/// of equal size (image after image); returns `pairs·steps` latents, row `p` going from latent
/// `2p` (weight 0) to latent `2p + 1` (weight 1) in `steps ≥ 2` equal steps. The ends are the
/// inputs exactly.
pub fn lerp_pairs(values: &[f32], pairs: usize, steps: usize) -> Vec<f32> {
    assert!(pairs > 0 && steps >= 2, "lerp_pairs: pairs ≥ 1, steps ≥ 2");
    let per = values.len() / (2 * pairs);
    assert_eq!(per * 2 * pairs, values.len(), "lerp_pairs: ragged latents");
    let mut out = Vec::with_capacity(pairs * steps * per);
    for p in 0..pairs {
        let a = &values[2 * p * per..(2 * p + 1) * per];
        let b = &values[(2 * p + 1) * per..(2 * p + 2) * per];
        for k in 0..steps {
            let w = k as f64 / (steps - 1) as f64;
            let (wa, wb) = ((1.0 - w) as f32, w as f32);
            out.extend(a.iter().zip(b).map(|(&a, &b)| wa * a + wb * b));
        }
    }
    out
}

fn cmd_interpolate<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &InterpolateArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
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
    let (dev, model) = open_model(name, build, args.seed, &args.checkpoint)?;
    let n = 2 * args.pairs;
    let images = test_images(args.data.clone(), n)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let noise: Vec<f32> = (0..images.len()).map(|_| rng.gen::<f32>()).collect();
    let x = dev
        .try_tensor_from_vec(images, Img::<1, 28, 28>::with_batch(n))
        .map_err(device_failed)?;
    let mut ctx = FlowCtx {
        dequant_noise: Some(noise),
        record_latents: true,
        ..FlowCtx::default()
    };
    let (z, _) = model.encode(x, &mut ctx).map_err(device_failed)?;
    let m = args.pairs * args.steps;
    let z = dev
        .try_tensor_from_vec(
            lerp_pairs(&z.as_vec(), args.pairs, args.steps),
            F::Out::with_batch(m),
        )
        .map_err(device_failed)?;
    let mut decode = FlowCtx::default();
    if !args.sample_splits {
        decode.latents = ctx
            .latents
            .iter()
            .map(|l| lerp_pairs(l, args.pairs, args.steps))
            .collect();
    }
    let images = model
        .sample(&dev, m, Some(z), &mut decode)
        .map_err(device_failed)?;
    write_grid(&args.out, &images.as_vec(), args.steps)?;
    println!(
        "wrote {} interpolation(s) of {} steps between test images to {}",
        args.pairs,
        args.steps,
        args.out.display()
    );
    Ok(())
}

fn cmd_latents<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &LatentsArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.rows == 0 {
        return Err(failed("--rows must be at least 1"));
    }
    if !(args.temperature.is_finite() && args.temperature > 0.0) {
        return Err(failed("--temperature must be a positive number"));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.checkpoint)?;
    if model
        .split_latent_sizes(&dev)
        .map_err(device_failed)?
        .is_empty()
    {
        return Err(failed(
            "this model has no split layers: its final latent is the whole latent, so there are no earlier levels to vary (use the multiscale model)",
        ));
    }
    let finals = crate::flow::standard_normal(&dev, &F::Out::with_batch(args.rows))
        .map_err(device_failed)?
        .as_vec();
    let per = finals.len() / args.rows;
    let t = args.temperature as f32;
    let z: Vec<f32> = finals
        .chunks(per)
        .flat_map(|row| {
            std::iter::repeat_n(row, LATENT_ROW)
                .flatten()
                .map(|&v: &f32| v * t)
        })
        .collect();
    let n = args.rows * LATENT_ROW;
    let z = dev
        .try_tensor_from_vec(z, F::Out::with_batch(n))
        .map_err(device_failed)?;
    let mut ctx = FlowCtx {
        temperature: args.temperature,
        ..FlowCtx::default()
    };
    let samples = model
        .sample(&dev, n, Some(z), &mut ctx)
        .map_err(device_failed)?;
    write_grid(&args.out, &samples.as_vec(), LATENT_ROW)?;
    println!(
        "wrote {} rows of {LATENT_ROW} samples sharing their final latent to {}",
        args.rows,
        args.out.display()
    );
    Ok(())
}

fn cmd_dequant_hist<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &DequantHistArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>> + FirstLayer<f32, D>,
{
    if args.images == 0 || args.draws == 0 || args.bins == 0 {
        return Err(failed("--images, --draws and --bins must be at least 1"));
    }
    check_output(&args.out)?;
    let (dev, model) = open_model(name, build, args.seed, &args.checkpoint)?;
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
            .map_err(device_failed)?;
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
    crate::charts::histogram(&args.out, &title, &[("", &values)], range, args.bins)
        .map_err(failed)?;
    println!(
        "wrote the histogram of {} dequantized values ({}) to {}",
        values.len(),
        kind.to_lowercase(),
        args.out.display()
    );
    Ok(())
}

/// The training curves of a run directory's (or a given) `metrics.jsonl`.
fn read_metrics(path: &Path) -> Result<Vec<crate::charts::EpochPoint>, CliError> {
    let file = if path.is_dir() {
        RunDir(path.to_path_buf()).metrics()
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        failed(format!(
            "cannot read {} ({e}): give a run directory written by `train`",
            file.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(failed(format!(
            "{} has no epochs yet: train at least one epoch for the training curves",
            file.display()
        )));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let m: crate::train::EpochMetrics = serde_json::from_str(line)
                .map_err(|e| failed(format!("{} line {}: {e}", file.display(), i + 1)))?;
            Ok(crate::charts::EpochPoint {
                epoch: m.epoch,
                train_bpd: m.train_bpd,
                val_bpd: Some(m.val_bpd),
            })
        })
        .collect()
}

/// Draws two masks into one picture, one above the other (the tutorial shows them in turn).
fn write_masks(path: &Path) -> Result<(), CliError> {
    use crate::layers::{ChannelMask, Checkerboard, MaskKind};
    let tmp = tempfile::tempdir().map_err(|e| failed(format!("temporary directory: {e}")))?;
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let parts = [
        (
            tmp.path().join("checkerboard.png"),
            f32s(Checkerboard::<false>::values::<1, 8, 8>()),
            (1, 8, 8),
        ),
        (
            tmp.path().join("channel.png"),
            f32s(ChannelMask::<false>::values::<8, 1, 1>()),
            (8, 1, 1),
        ),
    ];
    let mut pictures = Vec::new();
    for (file, mask, (c, h, w)) in &parts {
        crate::charts::mask_image(file, mask, *c, *h, *w).map_err(failed)?;
        pictures.push(
            image::open(file)
                .map_err(|e| failed(format!("{}: {e}", file.display())))?
                .to_rgb8(),
        );
    }
    const GAP: u32 = 16;
    let width = pictures.iter().map(|p| p.width()).max().unwrap_or(1);
    let height = pictures.iter().map(|p| p.height()).sum::<u32>() + GAP;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for p in &pictures {
        image::imageops::overlay(&mut canvas, p, i64::from((width - p.width()) / 2), y);
        y += i64::from(p.height() + GAP);
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

fn cmd_charts(args: &ChartsArgs) -> Result<(), CliError> {
    use crate::charts;
    // Read the metrics first: a bad --checkpoint fails before anything is written.
    let metrics = args.checkpoint.as_deref().map(read_metrics).transpose()?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| {
        failed(format!(
            "cannot create the directory {}: {e}",
            args.out_dir.display()
        ))
    })?;
    let dir = &args.out_dir;
    let mut written = Vec::new();
    let mut wrote = |file: &str| written.push(file.to_string());
    charts::dequantization_distribution(&dir.join("dequantization_uniform.png"), 8, None)
        .map_err(failed)?;
    wrote("dequantization_uniform.png");
    charts::dequantization_distribution(
        &dir.join("dequantization_prior.png"),
        8,
        Some(&charts::TUTORIAL_PRIOR),
    )
    .map_err(failed)?;
    wrote("dequantization_prior.png");
    charts::scaling_factor(&dir.join("scaling_factor.png")).map_err(failed)?;
    wrote("scaling_factor.png");
    write_masks(&dir.join("masks.png"))?;
    wrote("masks.png");
    if let Some(points) = metrics {
        charts::training_curves(&dir.join("training_curves.png"), &points).map_err(failed)?;
        wrote("training_curves.png");
    }
    println!(
        "wrote {} charts ({}) to {}",
        written.len(),
        written.join(", "),
        dir.display()
    );
    Ok(())
}

/// The tutorial's comparison table of the models' `results.json` (written by `eval`), as
/// aligned text (`markdown: false`) or as a Markdown table: Model, Validation Bpd, Test Bpd,
/// Inference time, Sampling time, Num Parameters, one row per result, in the given order.
pub fn results_table(results: &[EvalResults], markdown: bool) -> String {
    let headers = [
        "Model",
        "Validation Bpd",
        "Test Bpd",
        "Inference time",
        "Sampling time",
        "Num Parameters",
    ];
    let rows: Vec<[String; 6]> = results
        .iter()
        .map(|r| {
            [
                match r.max_images {
                    Some(n) => format!("{} (first {n} images)", r.model),
                    None => r.model.clone(),
                },
                format!("{:.3} bpd", r.val_bpd),
                format!("{:.3} bpd", r.test_bpd),
                format!("{:.0} ms", r.inference_seconds_per_64 * 1e3),
                format!("{:.0} ms", r.sampling_seconds_per_64 * 1e3),
                group_thousands(r.parameters),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        out += &format!("| {} |\n", headers.join(" | "));
        out += "|---|---:|---:|---:|---:|---:|\n";
        for row in &rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        return out;
    }
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    out += &line(headers);
    out += &(widths
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("  ")
        + "\n");
    for r in &rows {
        out += &line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
    }
    out
}
