//! Training step, inference and sampling times of the tutorial's three models and of Glow
//! (`GlowFlow`'s defaults) on the CPU (release build, batch 128 / 64 like the tutorial), and the
//! peak memory of a training step.
//!
//! ```text
//! cargo bench --bench step [-- MODEL...] [--batch 128] [--reps 3] [--json] [--peak-rss]
//! ```
//!
//! Prints the median of `--reps` repetitions (after one warm-up) per figure; with `--json`, one
//! JSON object per figure in the format of `benches/reference/bench_torch.py`, so that
//! `benches/reference/side_by_side.py` can put both in one table. Threads: `RAYON_NUM_THREADS`.
//! Compare ratios measured in one run: absolute times on a shared machine vary.
use dfdx::prelude::*;
use dfdx_flows::optim::Adam;
use dfdx_flows::prelude::*;
use std::time::Instant;

#[path = "../examples/common/alloc.rs"]
mod alloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn images(dev: &Cpu, n: usize) -> Tensor<Img<1, 28, 28>, f32, Cpu> {
    // Random integer images 0..255, as the PyTorch side uses (seeded).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let px = (0..n * 784)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f32
        })
        .collect();
    dev.tensor_from_vec(px, Img::<1, 28, 28>::with_batch(n))
}

/// The models this bench knows, in the order it runs them.
const MODELS: [&str; 4] = ["simple", "vardeq", "multiscale", "glow"];

struct Opts {
    batch: usize,
    reps: usize,
    json: bool,
}

fn emit(opts: &Opts, model: &str, figure: &str, seconds: f64, batch: usize) {
    if opts.json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "dfdx-flows", "model": model, "figure": figure, "seconds": seconds,
                "batch": batch, "threads": rayon::current_num_threads(),
            })
        );
    } else {
        println!("{model:<11} {figure:<16} {seconds:8.3} s");
    }
}

/// One training step: bpd of the batch, backward, Adam.
fn train_step<F: Flow<f32, Cpu, In = Img<1, 28, 28>>>(
    model: &mut ImageFlow<F>,
    adam: &mut Adam,
    grads: &mut Option<Gradients<f32, Cpu>>,
    x: &Tensor<Img<1, 28, 28>, f32, Cpu>,
) {
    let g = grads.take().unwrap_or_else(|| model.alloc_grads());
    let loss = model
        .bpd(x.clone().traced(g), &mut FlowCtx::default())
        .unwrap();
    let mut g = loss.backward();
    adam.update(model, &g).unwrap();
    model.zero_grads(&mut g);
    *grads = Some(g);
}

fn bench<F: Flow<f32, Cpu, In = Img<1, 28, 28>>>(
    name: &str,
    mut model: ImageFlow<F>,
    dev: &Cpu,
    opts: &Opts,
) {
    let x = images(dev, opts.batch);
    // Glow's ActNorm layers initialise on the first batch, as the trainer does it.
    if model.flows.needs_initialization() {
        model
            .initialize(x.clone(), &mut FlowCtx::default())
            .unwrap();
    }
    let mut adam = Adam::new(1e-3);
    let mut grads = None;
    let step: Vec<f64> = (0..opts.reps + 1)
        .map(|_| {
            let t = Instant::now();
            train_step(&mut model, &mut adam, &mut grads, &x);
            t.elapsed().as_secs_f64()
        })
        .collect();
    // The first repetition warms caches and allocations.
    let figure = format!("train_step_b{}", opts.batch);
    emit(opts, name, &figure, median(step[1..].to_vec()), opts.batch);

    let x64 = images(dev, 64);
    let timed = |f: &mut dyn FnMut()| {
        f();
        median(
            (0..opts.reps)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let infer = timed(&mut || {
        model.bpd(x64.clone(), &mut FlowCtx::default()).unwrap();
    });
    emit(opts, name, "bpd_64", infer, 64);
    let sample = timed(&mut || {
        model
            .sample(dev, 64, None, &mut FlowCtx::default())
            .unwrap();
    });
    emit(opts, name, "sample_64", sample, 64);
}

/// Peak resident memory of this process so far (`VmHWM`), bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// In a fresh process: build the model, run a warm-up and one training step, report the peak.
fn rss_child(name: &str, batch: usize) {
    let dev = dfdx_flows::device::cpu_device(0);
    let x = images(&dev, batch);
    let before = peak_rss();
    let mut adam = Adam::new(1e-3);
    let mut grads = None;
    macro_rules! run {
        ($build:expr) => {{
            let mut model = $build(&dev).unwrap();
            if model.flows.needs_initialization() {
                model
                    .initialize(x.clone(), &mut FlowCtx::default())
                    .unwrap();
            }
            train_step(&mut model, &mut adam, &mut grads, &x);
            train_step(&mut model, &mut adam, &mut grads, &x);
        }};
    }
    match name {
        "simple" => run!(simple_flow::<f32, Cpu>),
        "vardeq" => run!(vardeq_flow::<f32, Cpu>),
        "multiscale" => run!(multiscale_flow::<f32, Cpu>),
        "glow" => run!(glow_flow::<f32, Cpu>),
        other => panic!("unknown model {other}"),
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "dfdx-flows", "model": name, "figure": "peak_rss_train_step",
            "bytes": peak_rss(), "rss_before_step_bytes": before, "batch": batch,
            "threads": rayon::current_num_threads(),
        })
    );
}

fn main() {
    alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number"))
    };
    let opts = Opts {
        batch: value("--batch").unwrap_or(128),
        reps: value("--reps").unwrap_or(3),
        json: args.iter().any(|a| a == "--json"),
    };
    if let Some(i) = args.iter().position(|a| a == "--rss-child") {
        rss_child(&args[i + 1], opts.batch);
        return;
    }
    let flags_with_values = ["--batch", "--reps"];
    let models: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !flags_with_values.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a.as_str())
        .filter(|a| MODELS.contains(a))
        .collect();
    let wanted = |name: &str| models.is_empty() || models.contains(&name);
    let dev = dfdx_flows::device::cpu_device(0);
    if !opts.json {
        println!("threads: {}", rayon::current_num_threads());
    }
    if wanted("simple") {
        bench("simple", simple_flow(&dev).unwrap(), &dev, &opts);
    }
    if wanted("vardeq") {
        bench("vardeq", vardeq_flow(&dev).unwrap(), &dev, &opts);
    }
    if wanted("multiscale") {
        bench("multiscale", multiscale_flow(&dev).unwrap(), &dev, &opts);
    }
    if wanted("glow") {
        bench("glow", glow_flow(&dev).unwrap(), &dev, &opts);
    }
    if args.iter().any(|a| a == "--peak-rss") {
        for name in MODELS.into_iter().filter(|n| wanted(n)) {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--rss-child", name, "--batch", &opts.batch.to_string()])
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout);
            if opts.json {
                print!("{line}");
            } else {
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
                println!(
                    "{name:<11} peak RSS of a training step (batch {}): {:.2} GB",
                    opts.batch,
                    v["bytes"].as_f64().unwrap() / 1e9
                );
            }
        }
    }
}
