//! The command line shared by the examples `simple`, `vardeq` and `multiscale`.
//!
//! ```text
//! cargo run --release --example multiscale                 # the main job: train, then sample
//! cargo run --release --example multiscale -- train --epochs 1 --max-train 2048
//! cargo run --release --example multiscale -- info         # layers, shapes, parameters
//! cargo run --release --example multiscale -- sample --checkpoint runs/multiscale --n 16 --out s.png
//! cargo run --release --example multiscale -- eval --checkpoint runs/multiscale
//! cargo run --release --example multiscale -- sample --pretrained --out s.png   # shipped weights
//! cargo run --release --example simple -- loglik --weights W.safetensors --inputs X.safetensors
//! cargo run --release --example multiscale -- interpolate --checkpoint runs/multiscale --out interp.png
//! cargo run --release --example multiscale -- latents --checkpoint runs/multiscale --out shared.png
//! cargo run --release --example vardeq -- dequant-hist --checkpoint runs/vardeq --out hist.png
//! cargo run --release --example simple -- charts --out-dir charts --checkpoint runs/simple
//! cargo run --release --example class_glow -- sample --checkpoint runs/class-glow --class 7 --out 7s.png
//! ```
pub mod progress;

mod charts;
mod dequant_hist;
mod eval;
mod interpolate;
mod latents;
mod loglik;
mod nearest_class_mean;
mod sample;
mod train;
mod weights;

pub use charts::*;
pub use dequant_hist::*;
pub use eval::*;
pub use interpolate::*;
pub use latents::*;
pub use loglik::*;
pub use sample::*;
pub use train::*;
pub use weights::*;

use crate::checkpoint::{self, load_weights};
use crate::data::{Mnist, Subset};
use crate::device::{DeviceChoice, DeviceError, OpenDevice, Resolved};
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo};
use crate::image_flow::ImageFlow;
use crate::shape::Img;
use crate::train::{evaluate_bpd, train_with, Images, RunDir, TrainConfig, TrainError};
use crate::viz::{save_grid, to_bytes, GridStyle};
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

/// A model as the command line runs it: how to build it on any device. `K` is its number of
/// classes: 0 (the default) for an unconditional model, which [`run`] takes; a
/// class-conditional model ([`ImageFlow<F, K>`]) goes to [`run_conditional`].
///
/// The examples pass [`Simple`], [`VarDeq`], [`Multiscale`] or [`Glow`] to [`run`]; your own
/// model works the same way:
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
pub trait CliModel<const K: usize = 0> {
    /// The flow on device `D`: a [`Chain`](crate::Chain) on 1×28×28 images ([`FirstLayer`]:
    /// `dequant-hist` runs its first layer alone).
    type Flow<D: FlowDevice<f32>>: Flow<f32, D, In = Img<1, 28, 28>> + FirstLayer<f32, D>;
    /// A fresh model on `dev`.
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>, K>, D::Err>;
}

/// The tutorial's simple flow ([`SimpleFlow`](crate::models::SimpleFlow)) for [`run`].
pub struct Simple;
/// The tutorial's variational-dequantization flow ([`VarDeqFlow`](crate::models::VarDeqFlow)).
pub struct VarDeq;
/// The tutorial's multi-scale flow ([`MultiscaleFlow`](crate::models::MultiscaleFlow)).
pub struct Multiscale;
/// Glow for MNIST ([`GlowFlow`](crate::models::GlowFlow), default size).
pub struct Glow;
/// The multi-scale flow conditioned on MNIST's 10 digits
/// ([`ClassMultiscaleFlow`](crate::models::ClassMultiscaleFlow)), for [`run_conditional`].
pub struct ClassMultiscale;
/// Glow conditioned on MNIST's 10 digits ([`ClassGlowFlow`](crate::models::ClassGlowFlow),
/// default size), for [`run_conditional`].
pub struct ClassGlow;

impl CliModel<{ crate::models::MNIST_CLASSES }> for ClassMultiscale {
    type Flow<D: FlowDevice<f32>> = crate::models::ClassMultiscaleFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(
        dev: &D,
    ) -> Result<ImageFlow<Self::Flow<D>, { crate::models::MNIST_CLASSES }>, D::Err> {
        crate::models::class_multiscale_flow(dev)
    }
}

impl CliModel<{ crate::models::MNIST_CLASSES }> for ClassGlow {
    type Flow<D: FlowDevice<f32>> = crate::models::ClassGlowFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(
        dev: &D,
    ) -> Result<ImageFlow<Self::Flow<D>, { crate::models::MNIST_CLASSES }>, D::Err> {
        crate::models::class_glow_flow(dev)
    }
}

impl CliModel for Glow {
    type Flow<D: FlowDevice<f32>> = crate::models::GlowFlow<f32, D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
        crate::models::glow_flow(dev)
    }
}

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
    run_conditional::<M, 0>(name)
}

/// [`run`] for a model on `K` classes: `train` learns from MNIST's labels, `sample --class`
/// draws a digit (without it, one row per class), `eval` reports the bpd of `log p(x | y)` and
/// of `log p(x) = log Σ_y p(x | y) / K` and how often the flow, used as a classifier, is right.
pub fn run_conditional<M: CliModel<K>, const K: usize>(name: &str) -> ExitCode {
    match run_cli::<M, K>(name, Cli::parse()) {
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
    run_conditional_from::<M, 0, I, T>(name, args)
}

/// [`run_from`] for a model on `K` classes (see [`run_conditional`]).
pub fn run_conditional_from<M, const K: usize, I, T>(name: &str, args: I) -> Result<(), CliError>
where
    M: CliModel<K>,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| CliError::Failed(e.to_string()))?;
    run_cli::<M, K>(name, cli)
}

fn run_cli<M: CliModel<K>, const K: usize>(name: &str, cli: Cli) -> Result<(), CliError> {
    // The charts need no model and no device.
    if let Some(Command::Charts(args)) = &cli.command {
        return cmd_charts(args);
    }
    match cli.device.resolve()? {
        Resolved::Cpu => dispatch::<M::Flow<Cpu>, Cpu, K>(name, M::build::<Cpu>, cli.command),
        #[cfg(feature = "cuda")]
        Resolved::Cuda => dispatch::<M::Flow<Cuda>, Cuda, K>(name, M::build::<Cuda>, cli.command),
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

/// A flow's error: the device's (in its debug form, which names the failure), or the data's.
fn flow_failed<E: std::fmt::Debug + std::fmt::Display>(e: FlowError<E>) -> CliError {
    match e {
        FlowError::Device(e) => device_failed(e),
        other => failed(other),
    }
}

impl From<DeviceError> for CliError {
    fn from(e: DeviceError) -> Self {
        failed(e)
    }
}

fn dispatch<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
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
                    weights: WeightsArgs::checkpoint(out),
                    // One row of 8 a class for a class-conditional model.
                    n: if K == 0 { 16 } else { 8 },
                    class: None,
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

/// Fails for a class-conditional model (`K > 0`): `command` has no option yet to give the
/// class of each image.
fn unconditional_only<const K: usize>(command: &str, name: &str) -> Result<(), CliError> {
    if K == 0 {
        return Ok(());
    }
    Err(failed(format!(
        "`{command}` does not take class-conditional models yet: `{name}` needs the class of \
         each image, which `{command}` has no option for (`train`, `sample --class`, `eval`, \
         `info` and `dequant-hist` do take them)"
    )))
}

/// Opens the device (seeded) and builds the model on it with the weights found at `path`.
fn open_model<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    seed: u64,
    path: &Path,
) -> Result<(D, ImageFlow<F, K>), CliError>
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
    let test = mnist.split(Subset::Test);
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

pub use crate::device::cpu_device;
