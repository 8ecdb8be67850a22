//! A training process killed with SIGKILL at arbitrary moments — mid-step, mid-checkpoint,
//! mid-metrics — always leaves a loadable checkpoint, and resuming finishes the run with
//! consistent metrics.
//!
//! This test drives real processes: it runs its own executable again as the training child
//! (`harness = false`; the environment variable `DFDX_FLOWS_KILL_CHILD` selects the child's
//! role), kills it with SIGKILL several times at different delays, and resumes each time.
use dfdx::prelude::*;
use dfdx_flows::checkpoint;
use dfdx_flows::prelude::*;
use dfdx_flows::train::{train, EpochMetrics, RunDir, TrainConfig};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tiny = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
    CheckerboardCoupling<1, 8, 8, 4, true, f32, Cpu>,
)>;

const CHILD: &str = "DFDX_FLOWS_KILL_CHILD";
const EPOCHS: &str = "DFDX_FLOWS_KILL_EPOCHS";

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        samples: 4,
        ..TrainConfig::default()
    }
}

/// The child: trains (resuming if the run has a checkpoint) until `epochs`.
fn child(run: &Path, epochs: usize) {
    let dev = Cpu::seed_from_u64(0);
    let mut model = ImageFlow::<Tiny>::build(&dev);
    let train_px: Vec<u8> = (0..64 * 64).map(|i| ((i * 37) % 251) as u8).collect();
    let val_px: Vec<u8> = (0..16 * 64).map(|i| ((i * 91) % 253) as u8).collect();
    let run = RunDir(run.to_path_buf());
    let resume = checkpoint::resolve(&run.checkpoints(), "last").is_ok();
    let flag = Arc::new(AtomicBool::new(false));
    train(
        &mut model,
        "tiny",
        &dev,
        &train_px,
        &val_px,
        &config(epochs),
        &run,
        resume,
        flag,
    )
    .unwrap();
}

/// Loads the checkpoint `tag`; panics with the reason if it is not loadable.
fn load(run: &RunDir, tag: &str) -> checkpoint::CheckpointMeta {
    let dev = Cpu::seed_from_u64(1);
    let mut model = ImageFlow::<Tiny>::build(&dev);
    match checkpoint::load(&run.checkpoints(), tag, "tiny", &mut model) {
        Ok((_, meta)) => meta,
        Err(e) => panic!("checkpoint `{tag}` not loadable after SIGKILL: {e}"),
    }
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    if let Ok(run) = std::env::var(CHILD) {
        let epochs = std::env::var(EPOCHS).unwrap().parse().unwrap();
        child(Path::new(&run), epochs);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir(tmp.path().join("run"));
    let exe = std::env::current_exe().unwrap();
    let spawn = |epochs: usize, stderr: Stdio| {
        Command::new(&exe)
            .env(CHILD, &run.0)
            .env(EPOCHS, epochs.to_string())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };

    // Kill at different moments after the child has made progress: an epoch here is 4 steps
    // and a checkpoint, a few milliseconds, so the delays land in steps, checkpoint writes,
    // metrics appends and sample writes.
    let mut last_step = 0;
    let delays_ms = [0, 3, 7, 13, 29, 61, 127];
    for (round, delay) in delays_ms.iter().enumerate() {
        let mut child = spawn(1_000_000, Stdio::null());
        wait_for("a new checkpoint", Duration::from_secs(120), || {
            checkpoint::resolve(&run.checkpoints(), "last").is_ok()
                && std::fs::read_to_string(run.checkpoints().join("last.json"))
                    .ok()
                    .and_then(|_| {
                        let dev = Cpu::seed_from_u64(1);
                        let mut m = ImageFlow::<Tiny>::build(&dev);
                        checkpoint::load(&run.checkpoints(), "last", "tiny", &mut m).ok()
                    })
                    .is_some_and(|(_, meta)| meta.step > last_step)
        });
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished");
        let meta = load(&run, "last");
        let best = load(&run, "best");
        assert!(meta.step >= last_step, "progress went backwards");
        assert!(best.epoch <= meta.epoch);
        println!(
            "kill {round} after {delay} ms: last checkpoint epoch {} step {}, loadable",
            meta.epoch, meta.step
        );
        last_step = meta.step;
    }

    // Resume and finish two more epochs.
    let target = load(&run, "last").epoch + 2;
    let log = tmp.path().join("child.log");
    let child = spawn(target, Stdio::from(std::fs::File::create(&log).unwrap()));
    let out = child.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "resumed run failed:\n{stderr}");
    assert!(stderr.contains("resuming from epoch"), "{stderr}");
    let meta = load(&run, "last");
    assert_eq!((meta.epoch, meta.epoch_step), (target, 0));

    // The metrics file has exactly one line per epoch, 1..=target, in order, all complete.
    let metrics: Vec<EpochMetrics> = std::fs::read_to_string(run.metrics())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let epochs: Vec<usize> = metrics.iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, (1..=target).collect::<Vec<_>>());
    assert!(metrics.iter().all(|m| m.val_bpd.is_finite()));
    // Every epoch's samples picture is a complete PNG.
    for epoch in 1..=target {
        image::open(run.samples(epoch)).unwrap_or_else(|e| panic!("samples of epoch {epoch}: {e}"));
    }
    println!("kill: resumed to epoch {target}; checkpoints, metrics and samples consistent");
}
