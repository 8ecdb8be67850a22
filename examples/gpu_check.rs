//! The GPU check of `scripts/gpu-check.sh`: for each of the tutorial's models, on the device
//! given by `--device` (default `cuda`):
//!
//! 1. agreement: log p(x) of the same images with the same weights and dequantization noise on
//!    the CPU and on the device (relative difference, must be ≤ `--tolerance`, 1e-4);
//! 2. a timed training run: `--steps` Adam steps of batch `--batch` (128) after one warm-up step,
//!    back to back with one synchronization at the end (throughput, as a training loop runs);
//!    also the host time per step until the last step was queued: when it is close to the
//!    step time, the CPU issuing kernels is the limit, not the GPU;
//! 3. bpd of 64 images and sampling of 64 images, timed.
//!
//! With `--probe`, then the building blocks on the device, to tell what limits a step: the cost
//! of one op (launch), an elementwise op on a 4-axis tensor and on the same data as one axis
//! (dfdx's CUDA kernels divide per axis to index), the 3×3 convolution against the bare matrix
//! product inside it, the concatenated ELU and the layer norm at the simple flow's size, and a
//! multi-scale training step with dfdx's allocation cache off and on.
//!
//! ```text
//! cargo build --release --features cuda --example gpu_check     # on any machine (no GPU needed)
//! gpu_check [--device cuda|cpu] [--steps 10] [--batch 128] [--json FILE] [--probe] [MODEL...]
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
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;
use std::process::ExitCode;
use std::time::Instant;

#[path = "common/alloc.rs"]
mod alloc;

#[derive(Parser, Debug, Clone)]
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
    /// Also time the building blocks of a step (see the program's documentation)
    #[arg(long)]
    probe: bool,
    /// Images per batch in the probe
    #[arg(long, default_value_t = 128)]
    probe_batch: usize,
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
    /// Host time per step until the last step was queued (before the final synchronization).
    train_step_host_seconds: f64,
    images_per_second: f64,
    batch: usize,
    bpd_64_seconds: f64,
    sample_64_seconds: f64,
    /// Memory in use on the GPU after the timed work (`Cuda::open` turns dfdx's allocation
    /// cache on, which keeps freed buffers, so this is close to the peak); `None` on the CPU.
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
    let ferr = |what: &'static str| move |e: FlowError<D::Err>| format!("{name}: {what}: {e:?}");
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
    let on_dev = log_likelihoods(&model, &dev, &x, &noise).map_err(ferr("log p(x)"))?;
    let max_rel_diff = on_cpu
        .iter()
        .zip(&on_dev)
        .map(|(a, b)| ((a - b) / a).abs())
        .fold(0.0, f64::max);

    // 2. Training steps from a fresh model.
    let mut model = M::build(&dev).map_err(err("build"))?;
    let (step_seconds, host_seconds) = time_training::<M, D>(name, &dev, &mut model, args)?;

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
        bpd.map(|b| drop(b.as_vec())).map_err(ferr("bpd"))
    })?;
    let sample_64 = timed(&mut || {
        let s = model.sample(&dev, 64, None, &mut FlowCtx::default());
        s.map(|s| drop(s.as_vec())).map_err(ferr("sample"))
    })?;
    Ok(Report {
        model: name.to_string(),
        device: D::NAME.to_string(),
        max_rel_diff_log_px: max_rel_diff,
        agrees: max_rel_diff <= args.tolerance,
        train_step_seconds: step_seconds,
        train_step_host_seconds: host_seconds,
        images_per_second: args.batch as f64 / step_seconds,
        batch: args.batch,
        bpd_64_seconds: bpd_64,
        sample_64_seconds: sample_64,
        device_memory_used_bytes: (D::NAME == "cuda").then(gpu_memory_used).flatten(),
    })
}

/// `args.steps` training steps of `model` on a batch of `args.batch` images after one warm-up
/// step, queued back to back: (seconds per step, host seconds per step until the last one was
/// queued). The loss is read once, at the end, so nothing inside the loop waits for the GPU.
fn time_training<M: CliModel, D: CliDevice + Synchronize>(
    name: &str,
    dev: &D,
    model: &mut ImageFlow<M::Flow<D>>,
    args: &Args,
) -> Result<(f64, f64), String> {
    let err = |what: &'static str| move |e: D::Err| format!("{name}: {what}: {e:?}");
    let ferr = |what: &'static str| move |e: FlowError<D::Err>| format!("{name}: {what}: {e:?}");
    let batch = dev
        .try_tensor_from_vec(
            images(args.batch, 3),
            Img::<1, 28, 28>::with_batch(args.batch),
        )
        .map_err(err("upload"))?;
    let mut adam = Adam::new(1e-3);
    let mut grads = model.try_alloc_grads().map_err(err("grads"))?;
    let mut step = |model: &mut ImageFlow<M::Flow<D>>| -> Result<Tensor<Rank0, f32, D>, String> {
        let loss = model
            .bpd(batch.clone().traced(grads.clone()), &mut FlowCtx::default())
            .map_err(ferr("forward"))?;
        let (loss, tape) = loss.split_tape();
        let mut g = loss.clone().put_tape(tape).backward();
        adam.update(model, &g)
            .map_err(|e| format!("{name}: adam: {e:?}"))?;
        model.zero_grads(&mut g);
        grads = g;
        Ok(loss)
    };
    step(model)?;
    dev.try_synchronize().map_err(err("sync"))?;
    let t = Instant::now();
    let mut last = None;
    for _ in 0..args.steps {
        last = Some(step(model)?);
    }
    let queued = t.elapsed().as_secs_f64();
    dev.try_synchronize().map_err(err("sync"))?;
    let total = t.elapsed().as_secs_f64();
    if let Some(loss) = last {
        let value = loss.as_vec()[0];
        if !value.is_finite() {
            return Err(format!("{name}: training loss is {value}"));
        }
    }
    let steps = args.steps.max(1) as f64;
    Ok((total / steps, queued / steps))
}

/// One line of the probe.
#[derive(serde::Serialize)]
struct ProbeLine {
    probe: String,
    device: String,
    seconds: f64,
}

/// Seconds per call of `f`, `reps` calls queued back to back after one warm-up call.
fn per_call<D: Synchronize>(
    dev: &D,
    reps: usize,
    mut f: impl FnMut() -> Result<(), D::Err>,
) -> Result<f64, D::Err> {
    f()?;
    dev.try_synchronize()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    dev.try_synchronize()?;
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// Runs `f`, turning a panic (dfdx unwraps some CUDA errors) into an error, so that one failing
/// part does not cost the results of the others in a one-shot GPU run.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(format!("panicked: {msg}"))
        }
    }
}

/// JSON lines, each written (and flushed) as soon as it is known: a run stopped by a timeout
/// keeps what it measured.
struct Sink(Option<std::fs::File>);

impl Sink {
    fn create(path: Option<&std::path::Path>) -> Result<Self, String> {
        path.map(|p| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display())))
            .transpose()
            .map(Sink)
    }

    fn emit(&mut self, value: &impl serde::Serialize) -> Result<(), String> {
        use std::io::Write;
        if let Some(file) = &mut self.0 {
            let line = serde_json::to_string(value).expect("serializable");
            writeln!(file, "{line}")
                .and_then(|()| file.flush())
                .map_err(|e| format!("writing the JSON lines: {e}"))?;
        }
        Ok(())
    }
}

/// The building blocks of a training step on `D` (see the program's documentation), at the
/// simple flow's sizes: 28×28 images, 32 hidden channels, `args.probe_batch` images. Each part
/// is reported as it finishes; a failing part is reported and the others still run. Returns
/// whether all ran.
fn probe<D: CliDevice + Synchronize + Cache>(args: &Args, sink: &mut Sink) -> bool {
    let dev = match D::open(0) {
        Ok(dev) => dev,
        Err(e) => {
            eprintln!("error: probe: {e}");
            return false;
        }
    };
    let dbg = |e: D::Err| format!("{e:?}");
    let n = args.probe_batch;
    let mut ok = true;
    let mut record = |probe: &str, result: Result<f64, String>| match result.and_then(|seconds| {
        println!("probe {probe:<52} {:>12.1} us", seconds * 1e6);
        sink.emit(&ProbeLine {
            probe: probe.to_string(),
            device: D::NAME.to_string(),
            seconds,
        })
    }) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: probe {probe}: {e}");
            ok = false;
        }
    };

    // Launch: ops on one element, so only the per-op cost of dfdx and the driver is left.
    let one: Tensor<(usize,), f32, D> = dev.ones_like(&(1,));
    record(
        "unary op on 1 element (launch cost)",
        guarded(|| per_call(&dev, 1000, || one.clone().try_add(1.0).map(drop)).map_err(dbg)),
    );
    record(
        "binary op on 1 element (launch cost)",
        guarded(|| {
            per_call(&dev, 1000, || one.clone().try_add(one.clone()).map(drop)).map_err(dbg)
        }),
    );

    // Elementwise: the same add on 4 axes and on one.
    let shape = (n, 64usize, 28usize, 28usize);
    let a: Tensor<_, f32, D> = dev.sample_normal_like(&shape);
    let b: Tensor<_, f32, D> = dev.sample_normal_like(&shape);
    record(
        &format!("add ({n}, 64, 28, 28) as 4 axes"),
        guarded(|| per_call(&dev, 20, || a.clone().try_add(b.clone()).map(drop)).map_err(dbg)),
    );
    let flat = (n * 64 * 28 * 28,);
    record(
        &format!("add ({n}, 64, 28, 28) as 1 axis"),
        guarded(|| {
            let af = a.clone().try_reshape_like(&flat).map_err(dbg)?;
            let bf = b.clone().try_reshape_like(&flat).map_err(dbg)?;
            per_call(&dev, 20, || af.clone().try_add(bf.clone()).map(drop)).map_err(dbg)
        }),
    );
    record(
        &format!("exp ({n}, 64, 28, 28) (unary)"),
        guarded(|| per_call(&dev, 20, || a.clone().try_exp().map(drop)).map_err(dbg)),
    );

    // The 3x3 convolution 64 -> 32 channels at 28x28, and the matrix product inside it.
    let w: Tensor<(usize, usize, Const<3>, Const<3>), f32, D> =
        dev.sample_normal_like(&(32, 64, Const, Const));
    let bias: Tensor<(usize,), f32, D> = dev.zeros_like(&(32,));
    record(
        "conv 3x3 64->32 at 28x28, forward",
        guarded(|| {
            per_call(&dev, 10, || {
                D::try_conv2d_same(a.clone(), &w, &bias).map(drop)
            })
            .map_err(dbg)
        }),
    );
    record(
        "conv 3x3 64->32 at 28x28, forward + backward",
        guarded(|| {
            per_call(&dev, 5, || {
                let y = D::try_conv2d_same(a.leaky_trace(), &w, &bias)?;
                y.try_sum()?.backward();
                Ok(())
            })
            .map_err(dbg)
        }),
    );
    let cols: Tensor<(usize, usize), f32, D> = dev.sample_normal_like(&(n * 28 * 28, 9 * 64));
    let wm: Tensor<(usize, usize), f32, D> = dev.sample_normal_like(&(9 * 64, 32));
    record(
        "  its matrix product alone (pixels x 576) @ (576 x 32)",
        guarded(|| {
            per_call(&dev, 10, || cols.clone().try_matmul(wm.clone()).map(drop)).map_err(dbg)
        }),
    );

    // The gated ResNet's elementwise ops at 32 hidden channels.
    let x: Tensor<(usize, usize, usize, usize), f32, D> = dev.sample_normal_like(&(n, 32, 28, 28));
    record(
        "concat ELU 32->64 at 28x28, forward",
        guarded(|| {
            per_call(&dev, 10, || D::try_concat_elu(x.clone(), 64usize).map(drop)).map_err(dbg)
        }),
    );
    record(
        "concat ELU 32->64 at 28x28, forward + backward",
        guarded(|| {
            per_call(&dev, 5, || {
                let y = D::try_concat_elu(x.leaky_trace(), 64usize)?;
                y.try_sum()?.backward();
                Ok(())
            })
            .map_err(dbg)
        }),
    );
    let gamma: Tensor<(Const<1>, usize, Const<1>, Const<1>), f32, D> =
        dev.ones_like(&(Const, 32, Const, Const));
    let beta = dev.zeros_like(&(Const::<1>, 32usize, Const::<1>, Const::<1>));
    record(
        "layer norm over 32 channels at 28x28, forward",
        guarded(|| {
            per_call(&dev, 10, || {
                D::try_layer_norm_channels(x.clone(), &gamma, &beta, 1e-5).map(drop)
            })
            .map_err(dbg)
        }),
    );

    // A multi-scale training step with the allocation cache off, then on.
    let steps_args = Args {
        steps: args.steps.min(5),
        ..args.clone()
    };
    for (label, on) in [("off", false), ("on", true)] {
        record(
            &format!("multiscale training step, allocation cache {label}"),
            guarded(|| {
                if on {
                    dev.try_enable_cache().map_err(dbg)?;
                } else {
                    dev.try_disable_cache().map_err(dbg)?;
                }
                let mut model = Multiscale::build(&dev).map_err(|e| format!("{e:?}"))?;
                time_training::<Multiscale, D>("multiscale", &dev, &mut model, &steps_args)
                    .map(|(seconds, _)| seconds)
            }),
        );
    }
    ok
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
    let mut sink = match Sink::create(args.json.as_deref()) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<11} {:>7} {:>13} {:>11} {:>11} {:>9} {:>10} {:>10} {:>10}",
        "model",
        "device",
        "rel.diff",
        "step [s]",
        "host [s]",
        "img/s",
        "bpd64 [s]",
        "smp64 [s]",
        "mem [GB]"
    );
    let mut ok = true;
    for name in &models {
        let report = guarded(|| match device {
            Resolved::Cpu => check_on::<Cpu>(name, &args),
            #[cfg(feature = "cuda")]
            Resolved::Cuda => check_on::<Cuda>(name, &args),
            #[cfg(not(feature = "cuda"))]
            Resolved::Cuda => unreachable!("resolve() refuses CUDA without the feature"),
        });
        match report.and_then(|r| {
            println!(
                "{:<11} {:>7} {:>13.3e} {:>11.4} {:>11.4} {:>9.1} {:>10.4} {:>10.4} {:>10}{}",
                r.model,
                r.device,
                r.max_rel_diff_log_px,
                r.train_step_seconds,
                r.train_step_host_seconds,
                r.images_per_second,
                r.bpd_64_seconds,
                r.sample_64_seconds,
                r.device_memory_used_bytes
                    .map_or("-".into(), |b| format!("{:.2}", b as f64 / 1e9)),
                if r.agrees { "" } else { "  DISAGREES" }
            );
            sink.emit(&r).map(|()| r.agrees)
        }) {
            Ok(agrees) => ok &= agrees,
            Err(e) => {
                eprintln!("error: {name}: {e}");
                ok = false;
            }
        }
    }
    if args.probe {
        ok &= match device {
            Resolved::Cpu => probe::<Cpu>(&args, &mut sink),
            #[cfg(feature = "cuda")]
            Resolved::Cuda => probe::<Cuda>(&args, &mut sink),
            #[cfg(not(feature = "cuda"))]
            Resolved::Cuda => unreachable!("resolve() refuses CUDA without the feature"),
        };
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
