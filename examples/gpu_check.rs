//! The GPU check of `scripts/gpu-check.sh`: for each of the tutorial's models, on the device
//! given by `--device` (default `cuda`):
//!
//! 1. agreement: log p(x) of the same images with the same weights and dequantization noise on
//!    the CPU and on the device (relative difference, must be ≤ `--tolerance`, 1e-4);
//! 2. a timed training run: `--steps` Adam steps of batch `--batch` (128) after one warm-up step;
//! 3. bpd of 64 images and sampling of 64 images, timed.
//!
//! ```text
//! cargo build --release --features cuda --example gpu_check     # on any machine (no GPU needed)
//! gpu_check [--device cuda|cpu] [--steps 10] [--batch 128] [--json FILE] [MODEL...]
//! ```
//!
//! Exits 1 if a model disagrees or a device fails. Synthetic images (no MNIST needed): timing
//! does not depend on the pixels, and agreement is checked on the same inputs on both sides.
use clap::Parser;
use dfdx::prelude::*;
use dfdx_flows::checkpoint::load_weights;
use dfdx_flows::cli::{log_likelihoods, CliDevice, CliModel, Multiscale, Simple, VarDeq};
use dfdx_flows::device::{DeviceChoice, OpenDevice, Resolved};
use dfdx_flows::optim::Adam;
use dfdx_flows::params::perturb_params;
use dfdx_flows::prelude::*;
use std::process::ExitCode;
use std::time::Instant;

#[path = "common/alloc.rs"]
mod alloc;

#[derive(Parser, Debug)]
#[command(about = "CPU-vs-GPU agreement and GPU timings of the tutorial's flows")]
struct Args {
    /// Device to check against the CPU
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cuda)]
    device: DeviceChoice,
    /// Timed training steps per model (after one warm-up step)
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Images per training batch
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Images in the agreement check
    #[arg(long, default_value_t = 32)]
    agree_images: usize,
    /// Largest allowed relative difference of log p(x), CPU vs device
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Also write the results as JSON lines here
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Models to check (default: all three)
    #[arg(value_parser = ["simple", "vardeq", "multiscale"])]
    models: Vec<String>,
}

/// Deterministic pseudo-random values in `0..modulus` (xorshift), the same on every machine.
fn xorshift(seed: u64, n: usize, modulus: u64) -> Vec<u64> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % modulus
        })
        .collect()
}

fn images(n: usize, seed: u64) -> Vec<f32> {
    xorshift(seed, n * 784, 256)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The results of one model.
#[derive(serde::Serialize)]
struct Report {
    model: String,
    device: String,
    max_rel_diff_log_px: f64,
    agrees: bool,
    train_step_seconds: f64,
    images_per_second: f64,
    batch: usize,
    bpd_64_seconds: f64,
    sample_64_seconds: f64,
    /// Memory in use on the GPU after the timed work (dfdx keeps freed buffers in its cache,
    /// so this is close to the peak); `None` on the CPU.
    device_memory_used_bytes: Option<u64>,
}

fn gpu_memory_used() -> Option<u64> {
    #[cfg(feature = "cuda")]
    {
        cudarc::driver::result::mem_get_info()
            .ok()
            .map(|(free, total)| (total - free) as u64)
    }
    #[cfg(not(feature = "cuda"))]
    None
}

fn check<M: CliModel, D: CliDevice + Synchronize>(
    name: &str,
    args: &Args,
) -> Result<Report, String> {
    let err = |what: &'static str| move |e: D::Err| format!("{name}: {what}: {e:?}");
    let dev = D::open(0).map_err(|e| e.to_string())?;
    let cpu = Cpu::open(0).map_err(|e| e.to_string())?;

    // 1. Agreement on the same weights (perturbed, so that no coupling is the identity),
    //    images and noise.
    let mut reference = M::build(&cpu).map_err(|e| format!("{e:?}"))?;
    perturb_params(&mut reference, 0.05).map_err(|e| format!("{e:?}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let weights = dir.path().join("model.safetensors");
    reference
        .save_safetensors(&weights)
        .map_err(|e| format!("{e:?}"))?;
    let mut model = M::build(&dev).map_err(err("build"))?;
    load_weights(&weights, &mut model).map_err(|e| e.to_string())?;
    let n = args.agree_images;
    let x = images(n, 1);
    let noise: Vec<f32> = xorshift(2, n * 784, 1 << 24)
        .into_iter()
        .map(|v| v as f32 / (1u32 << 24) as f32)
        .collect();
    let on_cpu = log_likelihoods(&reference, &cpu, &x, &noise).map_err(|e| format!("{e:?}"))?;
    let on_dev = log_likelihoods(&model, &dev, &x, &noise).map_err(err("log p(x)"))?;
    let max_rel_diff = on_cpu
        .iter()
        .zip(&on_dev)
        .map(|(a, b)| ((a - b) / a).abs())
        .fold(0.0, f64::max);

    // 2. Training steps from a fresh model.
    let mut model = M::build(&dev).map_err(err("build"))?;
    let batch = dev
        .try_tensor_from_vec(
            images(args.batch, 3),
            Img::<1, 28, 28>::with_batch(args.batch),
        )
        .map_err(err("upload"))?;
    let mut adam = Adam::new(1e-3);
    let mut grads = model.try_alloc_grads().map_err(err("grads"))?;
    let mut step = |model: &mut ImageFlow<M::Flow<D>>| -> Result<f32, String> {
        let loss = model
            .bpd(batch.clone().traced(grads.clone()), &mut FlowCtx::default())
            .map_err(err("forward"))?;
        let value = loss.as_vec()[0];
        let mut g = loss.backward();
        adam.update(model, &g)
            .map_err(|e| format!("{name}: adam: {e:?}"))?;
        model.zero_grads(&mut g);
        grads = g;
        Ok(value)
    };
    step(&mut model)?;
    dev.try_synchronize().map_err(err("sync"))?;
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..args.steps {
        last = step(&mut model)?;
    }
    dev.try_synchronize().map_err(err("sync"))?;
    let step_seconds = t.elapsed().as_secs_f64() / args.steps.max(1) as f64;
    if !last.is_finite() {
        return Err(format!("{name}: training loss is {last}"));
    }

    // 3. Inference and sampling of 64 images (after a warm-up of each).
    let x64 = dev
        .try_tensor_from_vec(images(64, 4), Img::<1, 28, 28>::with_batch(64))
        .map_err(err("upload"))?;
    let timed = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        f()?;
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let bpd_64 = timed(&mut || {
        let bpd = model.bpd(x64.clone(), &mut FlowCtx::default());
        bpd.map(|b| drop(b.as_vec())).map_err(err("bpd"))
    })?;
    let sample_64 = timed(&mut || {
        let s = model.sample(&dev, 64, None, &mut FlowCtx::default());
        s.map(|s| drop(s.as_vec())).map_err(err("sample"))
    })?;
    Ok(Report {
        model: name.to_string(),
        device: D::NAME.to_string(),
        max_rel_diff_log_px: max_rel_diff,
        agrees: max_rel_diff <= args.tolerance,
        train_step_seconds: step_seconds,
        images_per_second: args.batch as f64 / step_seconds,
        batch: args.batch,
        bpd_64_seconds: bpd_64,
        sample_64_seconds: sample_64,
        device_memory_used_bytes: (D::NAME == "cuda").then(gpu_memory_used).flatten(),
    })
}

fn check_on<D: CliDevice + Synchronize>(name: &str, args: &Args) -> Result<Report, String> {
    match name {
        "simple" => check::<Simple, D>(name, args),
        "vardeq" => check::<VarDeq, D>(name, args),
        _ => check::<Multiscale, D>(name, args),
    }
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let args = Args::parse();
    let device = match args.device.resolve() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let models = if args.models.is_empty() {
        vec!["simple".to_string(), "vardeq".into(), "multiscale".into()]
    } else {
        args.models.clone()
    };
    println!(
        "{:<11} {:>7} {:>13} {:>11} {:>9} {:>10} {:>10} {:>10}",
        "model", "device", "rel.diff", "step [s]", "img/s", "bpd64 [s]", "smp64 [s]", "mem [GB]"
    );
    let mut ok = true;
    let mut lines = Vec::new();
    for name in &models {
        let report = match device {
            Resolved::Cpu => check_on::<Cpu>(name, &args),
            #[cfg(feature = "cuda")]
            Resolved::Cuda => check_on::<Cuda>(name, &args),
            #[cfg(not(feature = "cuda"))]
            Resolved::Cuda => unreachable!("resolve() refuses CUDA without the feature"),
        };
        match report {
            Ok(r) => {
                println!(
                    "{:<11} {:>7} {:>13.3e} {:>11.4} {:>9.1} {:>10.4} {:>10.4} {:>10}{}",
                    r.model,
                    r.device,
                    r.max_rel_diff_log_px,
                    r.train_step_seconds,
                    r.images_per_second,
                    r.bpd_64_seconds,
                    r.sample_64_seconds,
                    r.device_memory_used_bytes
                        .map_or("-".into(), |b| format!("{:.2}", b as f64 / 1e9)),
                    if r.agrees { "" } else { "  DISAGREES" }
                );
                ok &= r.agrees;
                lines.push(serde_json::to_string(&r).expect("serializable"));
            }
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, lines.join("\n") + "\n") {
            eprintln!("error: {}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
