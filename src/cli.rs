//! The command line shared by the examples `simple`, `vardeq` and `multiscale`.
//!
//! ```text
//! cargo run --release --example multiscale                 # the main job: train, then sample
//! cargo run --release --example multiscale -- train --epochs 1 --max-train 2048
//! cargo run --release --example multiscale -- info         # layers, shapes, parameters
//! cargo run --release --example multiscale -- sample --checkpoint runs/multiscale --n 16 --out s.png
//! cargo run --release --example multiscale -- eval --checkpoint runs/multiscale
//! ```
use crate::checkpoint::{self, load_weights};
use crate::data::{Mnist, Split};
use crate::flow::{Flow, FlowCtx, ImgShape, LayerInfo};
use crate::model::ImageFlow;
use crate::shape::Img;
use crate::train::{evaluate_bpd, train, RunDir, TrainConfig, TrainError};
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
    /// Learning rate
    #[arg(long, default_value_t = 1e-3)]
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
    /// Standard deviation of the prior (Glow's temperature)
    #[arg(long, default_value_t = 1.0)]
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
    /// Where to write the results [default: results.json beside the checkpoints]
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

/// The CPU device as the examples use it: seeded, denormals flushed.
///
/// dfdx's allocation cache stays off: it keeps every freed buffer for reuse, which measured
/// no faster here and raised the peak memory of a simple-flow training step from 6.9 to 10.1 GB.
pub fn cpu_device(seed: u64) -> Cpu {
    dfdx::flush_denormals_to_zero();
    Cpu::seed_from_u64(seed)
}

/// Runs the command line for one model. `build` makes a fresh model.
pub fn run<F>(name: &str, build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>) -> ExitCode
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    let cli = Cli::parse();
    match dispatch(name, build, cli.command) {
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

fn dispatch<F>(
    name: &str,
    build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>,
    command: Option<Command>,
) -> Result<(), CliError>
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    match command {
        None => {
            let mut args = TrainArgs::default();
            let out = PathBuf::from("runs").join(name);
            // The main job picks up where an earlier (interrupted) run of it stopped.
            if checkpoint::resolve(&RunDir(out.clone()).checkpoints(), "last").is_ok() {
                eprintln!("found a checkpoint in {}: resuming", out.display());
                args.resume = true;
            }
            cmd_train(name, build, &args)?;
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
        Some(Command::Train(args)) => cmd_train(name, build, &args),
        Some(Command::Info) => {
            let dev = cpu_device(0);
            let model = build(&dev).map_err(failed)?;
            let rows: Vec<LayerInfo> = model.describe();
            print!("{}", layer_table(&rows, model.num_trainable_params()));
            Ok(())
        }
        Some(Command::Sample(args)) => cmd_sample(name, build, &args),
        Some(Command::Eval(args)) => cmd_eval(name, build, &args),
    }
}

fn cmd_train<F>(
    name: &str,
    build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>,
    args: &TrainArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    if args.batch_size == 0 || args.epochs == 0 {
        return Err(failed("--batch-size and --epochs must be at least 1"));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(name));
    let mnist = Mnist::obtain(args.data.clone()).map_err(failed)?;
    let pixels = |split: Split| -> Vec<u8> {
        let view = mnist.split(split);
        (0..view.len())
            .flat_map(|i| view.image(i).iter().copied())
            .collect()
    };
    let (train_px, val_px) = (pixels(Split::Train), pixels(Split::Validation));
    let dev = cpu_device(args.seed);
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
        "training {name} ({} parameters) on {} images, {} epochs, batch {}; writing to {}",
        crate::cli::group_thousands(model.num_trainable_params()),
        (train_px.len() / 784).min(args.max_train.unwrap_or(usize::MAX)),
        args.epochs,
        args.batch_size,
        out.display()
    );
    match train(
        &mut model,
        name,
        &dev,
        &train_px,
        &val_px,
        &config,
        &RunDir(out.clone()),
        args.resume,
        interrupt,
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
                eprintln!("nothing to do: the run already has {} epochs", args.epochs);
            }
            Ok(())
        }
        Err(TrainError::Interrupted(dir)) => Err(CliError::Interrupted(format!(
            "interrupted: checkpoint written to {} — continue with `train --resume`",
            dir.display()
        ))),
        Err(e) => Err(failed(e)),
    }
}

/// Finds the weights file for `--checkpoint P`: P/model.safetensors, or the best checkpoint
/// under P/checkpoints or P.
pub fn find_weights(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("model.safetensors").is_file() {
        return Ok(path.join("model.safetensors"));
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        for tag in ["best", "last"] {
            if let Ok(dir) = checkpoint::resolve(&root, tag) {
                return Ok(dir.join("model.safetensors"));
            }
        }
    }
    Err(failed(format!(
        "no checkpoint found at {} (give a run directory written by `train`, its checkpoints/ directory, or a checkpoint directory)",
        path.display()
    )))
}

fn load_model<F>(
    build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>,
    dev: &Cpu,
    path: &Path,
) -> Result<ImageFlow<F>, CliError>
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    let weights = find_weights(path)?;
    let mut model = build(dev).map_err(failed)?;
    load_weights(&weights, &mut model).map_err(failed)?;
    Ok(model)
}

fn cmd_sample<F>(
    _name: &str,
    build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>,
    args: &SampleArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    if args.n == 0 {
        return Err(failed("--n must be at least 1"));
    }
    let dev = cpu_device(args.seed);
    let model = load_model(build, &dev, &args.checkpoint)?;
    let mut ctx = FlowCtx {
        temperature: args.temperature,
        ..FlowCtx::default()
    };
    let samples = model
        .sample(&dev, args.n, None, &mut ctx)
        .map_err(|e| failed(format!("{e:?}")))?;
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

/// The tutorial's results table, as `eval` writes it to results.json.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EvalResults {
    /// Model name.
    pub model: String,
    /// Validation bpd (one dequantization draw).
    pub val_bpd: f64,
    /// Test bpd with importance sampling.
    pub test_bpd: f64,
    /// Importance samples used.
    pub import_samples: usize,
    /// Seconds to compute the bpd of a batch of 64 (one dequantization draw).
    pub inference_seconds_per_64: f64,
    /// Seconds to sample 64 images.
    pub sampling_seconds_per_64: f64,
    /// Trainable parameters.
    pub parameters: usize,
}

fn cmd_eval<F>(
    name: &str,
    build: fn(&Cpu) -> Result<ImageFlow<F>, CpuError>,
    args: &EvalArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, Cpu, In = Img<1, 28, 28>>,
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    let dev = cpu_device(42);
    let mut model = load_model(build, &dev, &args.checkpoint)?;
    model.import_samples = args.import_samples.max(1);
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
    let mut inference = Vec::new();
    for chunk in test.chunks(64 * 784) {
        let x = dev.tensor_from_vec(
            chunk.iter().map(|v| *v as f32).collect(),
            Img::<1, 28, 28>::with_batch(chunk.len() / 784),
        );
        let t = Instant::now();
        let bpd = model
            .importance_bpd(&x)
            .map_err(|e| failed(format!("{e:?}")))?;
        if chunk.len() == 64 * 784 {
            inference.push(t.elapsed().as_secs_f64() / model.import_samples as f64);
        }
        test_sum += bpd.iter().sum::<f64>();
    }
    let test_bpd = test_sum / (test.len() / 784) as f64;
    let t = Instant::now();
    model
        .sample(&dev, 64, None, &mut FlowCtx::default())
        .map_err(|e| failed(format!("{e:?}")))?;
    let results = EvalResults {
        model: name.to_string(),
        val_bpd,
        test_bpd,
        import_samples: model.import_samples,
        inference_seconds_per_64: inference.iter().sum::<f64>() / inference.len().max(1) as f64,
        sampling_seconds_per_64: t.elapsed().as_secs_f64(),
        parameters: model.num_trainable_params(),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let w = find_weights(&args.checkpoint).unwrap_or_default();
        w.parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
            .unwrap_or(Path::new("."))
            .join("results.json")
    });
    checkpoint::write_atomic(
        &out,
        serde_json::to_string_pretty(&results)
            .expect("serializable")
            .as_bytes(),
    )
    .map_err(failed)?;
    println!(
        "| Model | Validation bpd | Test bpd | Inference time | Sampling time | Num parameters |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {name} | {:.3} bpd | {:.3} bpd | {:.0} ms | {:.0} ms | {} |",
        results.val_bpd,
        results.test_bpd,
        results.inference_seconds_per_64 * 1e3,
        results.sampling_seconds_per_64 * 1e3,
        group_thousands(results.parameters)
    );
    println!("wrote {}", out.display());
    Ok(())
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
