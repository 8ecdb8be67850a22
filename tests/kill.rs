//! A training process killed with SIGKILL at arbitrary moments — mid-step, mid-checkpoint,
//! mid-metrics — always leaves a loadable checkpoint, and resuming finishes the run with
//! consistent metrics.
//!
//! This test drives real processes: it runs its own executable again as the training child
//! (`harness = false`; the environment variable `DFDX_FLOWS_KILL_CHILD` selects the child's
//! role). Two phases:
//! - deterministic: the child stops itself (abort, no clean-up, as a kill) right after the N-th
//!   durable step of its checkpoint saves and epoch ends, for every N, including a Ctrl-C save
//!   in the first epoch; after each stop `last` and `best` both load, and resuming finishes the
//!   run with one metrics line per epoch;
//! - timing: the child is killed with SIGKILL several times at different delays, and resumes.
use dfdx::prelude::*;
use dfdx_flows::checkpoint;
use dfdx_flows::prelude::*;
use dfdx_flows::train::{train, EpochMetrics, RunDir, TrainConfig, TrainError};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tiny = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
    CheckerboardCoupling<1, 8, 8, 4, true, f32, Cpu>,
)>;

const CHILD: &str = "DFDX_FLOWS_KILL_CHILD";
const EPOCHS: &str = "DFDX_FLOWS_KILL_EPOCHS";
/// In the child: abort right after the N-th fault point (1-based).
const FAULT_AT: &str = "DFDX_FLOWS_KILL_FAULT_AT";
/// In the child: start with a Ctrl-C after the first step if the run has no checkpoint yet.
const CTRL_C_FIRST: &str = "DFDX_FLOWS_KILL_CTRL_C_FIRST";

static FAULTS_SEEN: AtomicUsize = AtomicUsize::new(0);
static FAULT_TARGET: AtomicUsize = AtomicUsize::new(0);

/// The fault hook of the child: counts the durable steps and aborts after the chosen one.
fn abort_at_target(step: &'static str) {
    let seen = FAULTS_SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    if seen == FAULT_TARGET.load(Ordering::SeqCst) {
        eprintln!("fault point {seen}: aborting after `{step}`");
        std::process::abort();
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        samples: 4,
        ..TrainConfig::default()
    }
}

/// The child: trains (resuming if the run has a checkpoint) until `epochs`; with
/// `ctrl_c_first` and no checkpoint yet, first trains one step and stops as Ctrl-C does.
fn child(run: &Path, epochs: usize, ctrl_c_first: bool) {
    let dev = Cpu::seed_from_u64(0);
    let mut model = ImageFlow::<Tiny>::build(&dev);
    let train_px: Vec<u8> = (0..64 * 64).map(|i| ((i * 37) % 251) as u8).collect();
    let val_px: Vec<u8> = (0..16 * 64).map(|i| ((i * 91) % 253) as u8).collect();
    let run = RunDir(run.to_path_buf());
    let mut resume = checkpoint::has_checkpoints(&run.checkpoints());
    if ctrl_c_first && !resume {
        let stop = Arc::new(AtomicBool::new(true));
        let cfg = config(epochs);
        match train(
            &mut model, "tiny", &dev, &train_px, &val_px, &cfg, &run, false, stop,
        ) {
            Err(TrainError::Interrupted(_)) => resume = true,
            other => panic!("a set interrupt flag must stop training: {other:?}"),
        }
    }
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

/// Runs a child to its end with stderr kept in `log`; returns whether it succeeded.
fn run_child(mut cmd: Command, log: &Path) -> bool {
    let file = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .status()
        .unwrap()
        .success()
}

/// A child's stderr, for a failure message.
fn child_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    format!("--- child stderr ({}):\n{text}---", log.display())
}

/// The metrics file's epochs, each line parsed completely.
fn metric_epochs(run: &RunDir) -> Vec<usize> {
    std::fs::read_to_string(run.metrics())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<EpochMetrics>(l)
                .unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))
        })
        .map(|m| m.epoch)
        .collect()
}

/// Stops the child after every durable step in turn, and checks the run after each stop.
fn deterministic_faults(exe: &Path, tmp: &Path) {
    const EPOCHS_TO_RUN: usize = 2;
    let mut stops = 0;
    for target in 1.. {
        let run = RunDir(tmp.join(format!("fault-{target}")));
        let log = tmp.join(format!("fault-{target}.log"));
        let mut cmd = Command::new(exe);
        cmd.env(CHILD, &run.0)
            .env(EPOCHS, EPOCHS_TO_RUN.to_string())
            .env(CTRL_C_FIRST, "1")
            .env(FAULT_AT, target.to_string());
        if run_child(cmd, &log) {
            // The target is past the run's last fault point: every point has been visited.
            assert!(
                stops >= 20,
                "only {stops} fault points; is the hook installed?"
            );
            break;
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains(&format!("fault point {target}: aborting")),
            "the child failed before fault point {target}\n{}",
            child_log(&log)
        );
        stops += 1;
        let root = run.checkpoints();
        let has_last = root.join("last.json").exists();
        let has_best = root.join("best.json").exists();
        assert!(
            has_best || !has_last,
            "stop {target}: `last` exists without `best`\n{}",
            child_log(&log)
        );
        if has_best {
            load(&run, "best");
        }
        if has_last {
            // Both load; `best` may be one save newer than `last` (stopped between the two).
            let (last, best) = (load(&run, "last"), load(&run, "best"));
            assert!(
                best.step >= last.step || best.val_bpd.is_some(),
                "stop {target}"
            );
        }
        // Resuming (or starting, if nothing was saved) finishes the run consistently.
        let mut cmd = Command::new(exe);
        cmd.env(CHILD, &run.0)
            .env(EPOCHS, EPOCHS_TO_RUN.to_string());
        let resume_log = tmp.join(format!("fault-{target}-resume.log"));
        assert!(
            run_child(cmd, &resume_log),
            "stop {target}: resuming failed\n{}",
            child_log(&resume_log)
        );
        let meta = load(&run, "last");
        assert_eq!(
            (meta.epoch, meta.epoch_step),
            (EPOCHS_TO_RUN, 0),
            "stop {target}"
        );
        load(&run, "best");
        assert_eq!(
            metric_epochs(&run),
            (1..=EPOCHS_TO_RUN).collect::<Vec<_>>(),
            "stop {target}"
        );
        std::fs::remove_dir_all(&run.0).unwrap();
    }
    println!("kill: stopped after each of {stops} durable steps; never `last` without `best`, every pointer loadable, every run resumed to its end");
}

fn main() {
    if let Ok(run) = std::env::var(CHILD) {
        let epochs = std::env::var(EPOCHS).unwrap().parse().unwrap();
        if let Ok(n) = std::env::var(FAULT_AT) {
            FAULT_TARGET.store(n.parse().unwrap(), Ordering::SeqCst);
            checkpoint::set_fault_hook(abort_at_target);
        }
        child(Path::new(&run), epochs, std::env::var(CTRL_C_FIRST).is_ok());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    deterministic_faults(&exe, tmp.path());

    let run = RunDir(tmp.path().join("run"));
    let spawn = |epochs: usize, log: &Path| {
        Command::new(&exe)
            .env(CHILD, &run.0)
            .env(EPOCHS, epochs.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .spawn()
            .unwrap()
    };

    // Kill at different moments after the child has made progress: an epoch here is 4 steps
    // and a checkpoint, a few milliseconds, so the delays land in steps, checkpoint writes,
    // metrics appends and sample writes.
    let mut last_step = 0;
    let delays_ms = [0, 3, 7, 13, 29, 61, 127];
    for (round, delay) in delays_ms.iter().enumerate() {
        let log = tmp.path().join(format!("kill-{round}.log"));
        let mut child = spawn(1_000_000, &log);
        let start = Instant::now();
        while !(checkpoint::resolve(&run.checkpoints(), "last").is_ok()
            && std::fs::read_to_string(run.checkpoints().join("last.json"))
                .ok()
                .and_then(|_| {
                    let dev = Cpu::seed_from_u64(1);
                    let mut m = ImageFlow::<Tiny>::build(&dev);
                    checkpoint::load(&run.checkpoints(), "last", "tiny", &mut m).ok()
                })
                .is_some_and(|(_, meta)| meta.step > last_step))
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "round {round}: the child ended ({status}) before a new checkpoint\n{}",
                    child_log(&log)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "round {round}: timed out waiting for a new checkpoint\n{}",
                child_log(&log)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished");
        let meta = load(&run, "last");
        let best = load(&run, "best");
        assert!(meta.step >= last_step, "progress went backwards");
        // `best` is written before `last`: a kill between the two leaves it one epoch ahead.
        assert!(best.epoch <= meta.epoch + 1);
        println!(
            "kill {round} after {delay} ms: last checkpoint epoch {} step {}, loadable",
            meta.epoch, meta.step
        );
        last_step = meta.step;
    }

    // Resume and finish two more epochs.
    let target = load(&run, "last").epoch + 2;
    let log = tmp.path().join("child.log");
    let out = spawn(target, &log).wait_with_output().unwrap();
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
