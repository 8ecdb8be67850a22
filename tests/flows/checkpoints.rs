//! Checkpoints and resume: exact continuation, interruption mid-epoch, corrupt files and
//! checkpoints of another architecture.
use dfdx::prelude::*;
use dfdx_flows::checkpoint::{self, CheckpointError};
use dfdx_flows::params::tensor_entries;
use dfdx_flows::prelude::*;
use dfdx_flows::train::{train, EpochMetrics, RunDir, TrainConfig, TrainError};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

type Tiny = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
    CheckerboardCoupling<1, 8, 8, 4, true, f32, Cpu>,
)>;
type Other = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 6, false, f32, Cpu>,
)>;

fn data(n: usize, offset: usize) -> Vec<u8> {
    (0..n * 64)
        .map(|i| (((i + offset) * 37) % 251) as u8)
        .collect()
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        samples: 4,
        ..TrainConfig::default()
    }
}

fn fresh() -> (Cpu, ImageFlow<Tiny>) {
    let dev = Cpu::seed_from_u64(0);
    let model = ImageFlow::new(dev.build_module::<Tiny, f32>());
    (dev, model)
}

fn weights(model: &ImageFlow<Tiny>) -> Vec<Vec<f32>> {
    vec![
        model.flows.0 .1.network.conv_in.weight.as_vec(),
        model.flows.0 .1.network.conv_out.weight.as_vec(),
        model.flows.0 .2.scaling_factor.as_vec(),
        model.flows.0 .2.network.norms[1].gamma.as_vec(),
    ]
}

fn run(
    model: &mut ImageFlow<Tiny>,
    dev: &Cpu,
    cfg: &TrainConfig,
    dir: &RunDir,
    resume: bool,
    stop: bool,
) -> Result<(), TrainError> {
    let (train_px, val_px) = (data(64, 0), data(16, 7));
    let flag = Arc::new(AtomicBool::new(stop));
    train(
        model, "tiny", dev, &train_px, &val_px, cfg, dir, resume, flag,
    )
    .map(|_| ())
}

#[test]
fn resuming_continues_exactly_like_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Uninterrupted: 2 epochs of 4 steps.
    let (dev, mut straight) = fresh();
    let dir_a = RunDir(tmp.path().join("a"));
    run(&mut straight, &dev, &config(2), &dir_a, false, false).unwrap();

    // Interrupted after the first step (Ctrl-C flag already set), resumed with a fresh model
    // and optimizer from the checkpoint, stopped again at the end of epoch 1, resumed again.
    let dir_b = RunDir(tmp.path().join("b"));
    let (dev, mut model) = fresh();
    match run(&mut model, &dev, &config(2), &dir_b, false, true) {
        Err(TrainError::Interrupted(path)) => assert!(path.join("model.safetensors").is_file()),
        other => panic!("expected an interruption, got {other:?}"),
    }
    // Before any validation the only checkpoint is also `best`: `last` never exists alone.
    assert_eq!(
        checkpoint::resolve(&dir_b.checkpoints(), "best").unwrap(),
        checkpoint::resolve(&dir_b.checkpoints(), "last").unwrap()
    );
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &config(1), &dir_b, true, false).unwrap();
    let (dev, mut resumed) = fresh();
    run(&mut resumed, &dev, &config(2), &dir_b, true, false).unwrap();

    assert_eq!(weights(&resumed), weights(&straight));
    let (_, untrained) = fresh();
    assert_ne!(
        weights(&straight)[1],
        weights(&untrained)[1],
        "training must have moved the weights"
    );
    let metrics = |d: &RunDir| std::fs::read_to_string(d.metrics()).unwrap();
    let (a, b) = (metrics(&dir_a), metrics(&dir_b));
    let val = |s: &str| {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_bpd"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(val(&a), val(&b));
    // The epoch resumed after its first step reports the mean over all four steps, as the
    // uninterrupted run does (the totals before the interruption travel in the checkpoint).
    let field = |s: &str, name: &str| {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[name].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(field(&a, "train_bpd"), field(&b, "train_bpd"));
    assert_eq!(field(&a, "skipped_steps"), field(&b, "skipped_steps"));
    // The epochs' pictures come from the run's seed, not the device's random state: the same
    // in both runs, and the model has changed between the epochs.
    let png = |d: &RunDir, epoch| std::fs::read(d.samples(epoch)).unwrap();
    assert_eq!(png(&dir_a, 1), png(&dir_b, 1));
    assert_eq!(png(&dir_a, 2), png(&dir_b, 2));
    assert_ne!(png(&dir_a, 1), png(&dir_a, 2));
}

#[test]
fn training_again_without_resume_refuses_to_touch_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (dev, mut model) = fresh();
    let dir = RunDir(tmp.path().join("run"));
    run(&mut model, &dev, &config(1), &dir, false, false).unwrap();
    let metrics = std::fs::read_to_string(dir.metrics()).unwrap();
    let last = checkpoint::resolve(&dir.checkpoints(), "last").unwrap();
    let (dev, mut model) = fresh();
    let err = run(&mut model, &dev, &config(2), &dir, false, false).unwrap_err();
    assert!(matches!(err, TrainError::RunExists(_)), "{err}");
    assert!(err.to_string().contains("resume it"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.metrics()).unwrap(), metrics);
    assert_eq!(
        checkpoint::resolve(&dir.checkpoints(), "last").unwrap(),
        last
    );
    assert!(last.join("model.safetensors").is_file());
}

#[test]
fn an_interruption_in_the_last_step_of_an_epoch_is_finished_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir(tmp.path().join("run"));
    // 64 images in batches of 64: one step per epoch, interrupted right after it.
    let cfg = |epochs| TrainConfig {
        batch_size: 64,
        ..config(epochs)
    };
    let (dev, mut model) = fresh();
    let err = run(&mut model, &dev, &cfg(2), &dir, false, true).unwrap_err();
    assert!(matches!(err, TrainError::Interrupted(_)), "{err}");
    let root = dir.checkpoints();
    let meta = checkpoint::read_meta(&root, "last").unwrap();
    assert_eq!((meta.epoch, meta.epoch_step, meta.step), (0, 1, 1));
    assert_eq!(meta.epoch_progress.applied, 1);

    // Resuming finishes epoch 1 without a step: its checkpoint is at the same step, and must
    // still be written (a new directory), with the epoch's validation and the step's bpd.
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &cfg(1), &dir, true, false).unwrap();
    let meta = checkpoint::read_meta(&root, "last").unwrap();
    assert_eq!((meta.epoch, meta.epoch_step, meta.step), (1, 0, 1));
    assert!(meta.val_bpd.is_some());
    assert_eq!(
        checkpoint::resolve(&root, "best").unwrap(),
        checkpoint::resolve(&root, "last").unwrap()
    );
    let (_, mut loaded) = fresh();
    checkpoint::load(&root, "last", "tiny", &mut loaded).unwrap();
    assert_eq!(weights(&loaded), weights(&model));
    let lines = std::fs::read_to_string(dir.metrics()).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let m: EpochMetrics = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(m.train_bpd.is_finite() && m.train_bpd > 0.0, "{m:?}");

    // And once done, it stays done.
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &cfg(1), &dir, true, false).unwrap();
    assert_eq!(std::fs::read_to_string(dir.metrics()).unwrap(), lines);
    assert_eq!(checkpoint::read_meta(&root, "last").unwrap().epoch, 1);
}

#[test]
fn resuming_mid_epoch_with_other_batches_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir(tmp.path().join("run"));
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &config(1), &dir, false, true).unwrap_err();
    let cfg = TrainConfig {
        batch_size: 8,
        ..config(1)
    };
    let (dev, mut model) = fresh();
    let err = run(&mut model, &dev, &cfg, &dir, true, false).unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(err.to_string().contains("--batch-size 16 (now 8)"), "{err}");
    // The same batches resume.
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &config(1), &dir, true, false).unwrap();
}

#[test]
fn learning_rates_that_are_not_positive_numbers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir(tmp.path().join("run"));
    for lr in [-1e-3, 0.0, f64::NAN, f64::INFINITY] {
        let (dev, mut model) = fresh();
        let cfg = TrainConfig { lr, ..config(1) };
        let err = run(&mut model, &dev, &cfg, &dir, false, false).unwrap_err();
        assert!(err.to_string().contains("learning rate"), "{lr}: {err}");
    }
    assert!(!dir.0.exists());
}

#[test]
fn metrics_with_non_finite_numbers_read_back() {
    let m = EpochMetrics {
        epoch: 3,
        lr: 1e-3,
        train_bpd: f64::NAN,
        val_bpd: f64::INFINITY,
        seconds: 1.5,
        images_per_sec: 10.0,
        skipped_steps: 4,
    };
    let line = serde_json::to_string(&m).unwrap();
    assert!(line.contains("\"train_bpd\":null"), "{line}");
    let back: EpochMetrics = serde_json::from_str(&line).unwrap();
    assert!(back.train_bpd.is_nan() && back.val_bpd.is_nan());
    assert_eq!((back.epoch, back.lr, back.skipped_steps), (3, 1e-3, 4));
}

#[test]
fn a_leftover_partial_checkpoint_does_not_hide_the_last_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (dev, mut model) = fresh();
    let dir = RunDir(tmp.path().to_path_buf());
    run(&mut model, &dev, &config(1), &dir, false, false).unwrap();
    // A kill during the next save leaves a temporary directory and a temporary pointer behind.
    let root = dir.checkpoints();
    std::fs::create_dir_all(root.join(".step-00000099.tmp")).unwrap();
    std::fs::write(
        root.join(".step-00000099.tmp/model.safetensors"),
        b"half a file",
    )
    .unwrap();
    std::fs::write(root.join(".last.json.tmp"), b"{\"dir\": \"step-0").unwrap();
    let (_, mut again) = fresh();
    let (_, meta) = checkpoint::load(&root, "last", "tiny", &mut again).unwrap();
    assert_eq!((meta.epoch, meta.step), (1, 4));
    assert_eq!(weights(&again), weights(&model));
}

#[test]
fn a_truncated_checkpoint_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (dev, mut model) = fresh();
    let dir = RunDir(tmp.path().to_path_buf());
    run(&mut model, &dev, &config(1), &dir, false, false).unwrap();
    let ckpt = checkpoint::resolve(&dir.checkpoints(), "last").unwrap();
    let weights_file = ckpt.join("model.safetensors");
    let bytes = std::fs::read(&weights_file).unwrap();
    std::fs::write(&weights_file, &bytes[..bytes.len() / 2]).unwrap();
    let (_, mut other) = fresh();
    let err = checkpoint::load(&dir.checkpoints(), "last", "tiny", &mut other).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt(..)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn a_checkpoint_of_another_architecture_names_the_first_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Cpu::seed_from_u64(0);
    let other = ImageFlow::new(dev.build_module::<Other, f32>());
    let path = tmp.path().join("other.safetensors");
    other.save_safetensors(&path).unwrap();
    let (_, mut model) = fresh();
    let err = checkpoint::load_weights(&path, &mut model).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::WrongModel { .. }), "{msg}");
    // The first tensor in visiting order whose shape differs: hidden 4 vs 6.
    let first = &tensor_entries(&model)[0];
    assert!(msg.contains(&first.name), "{msg}");
    assert!(
        msg.contains("[6, 1, 3, 3]") && msg.contains("[4, 1, 3, 3]"),
        "{msg}"
    );
    // And a model name mismatch in a run's checkpoint is reported before any tensor.
    let (dev, mut trained) = fresh();
    let dir = RunDir(tmp.path().join("run"));
    run(&mut trained, &dev, &config(1), &dir, false, false).unwrap();
    let err = checkpoint::load(&dir.checkpoints(), "last", "multiscale", &mut model).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds the `tiny` model, not `multiscale`"),
        "{err}"
    );
}

#[test]
fn too_few_images_are_an_error_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (dev, mut model) = fresh();
    let dir = RunDir(tmp.path().join("run"));
    let flag = || Arc::new(AtomicBool::new(false));
    // 8 training images, batches of 16.
    let err = train(
        &mut model,
        "tiny",
        &dev,
        &data(8, 0),
        &data(16, 7),
        &config(1),
        &dir,
        false,
        flag(),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(
        err.to_string()
            .contains("fewer training images (8) than one batch (16)"),
        "{err}"
    );
    // No validation image.
    let cfg = TrainConfig {
        max_val: Some(0),
        ..config(1)
    };
    let err = train(
        &mut model,
        "tiny",
        &dev,
        &data(64, 0),
        &data(16, 7),
        &cfg,
        &dir,
        false,
        flag(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no validation images"), "{err}");
    assert!(
        !dir.0.exists(),
        "nothing may be written for a run that cannot start"
    );
}

/// A model with a split layer: the split's latent, too, comes from the seed.
#[test]
fn epoch_samples_of_a_split_model_depend_on_the_seed_only() {
    type TinySplit = Chain<(
        Dequantization<1, 8, 8>,
        CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
        Squeeze<1, 8, 8>,
        Split<4, 4, 4>,
        ChannelCoupling<2, 4, 4, 4, false, f32, Cpu>,
    )>;
    let tmp = tempfile::tempdir().unwrap();
    let dev = Cpu::seed_from_u64(0);
    let model = ImageFlow::<TinySplit>::build(&dev);
    let png = |name: &str, seed: u64| {
        let path = tmp.path().join(name);
        dfdx_flows::train::write_samples(&model, &dev, 6, seed, &path).unwrap();
        std::fs::read(path).unwrap()
    };
    let first = png("a.png", 7);
    // Draws from the device's random state in between change nothing.
    let _: Tensor<Rank1<100>, f32, Cpu> = dev.sample_normal();
    assert_eq!(png("b.png", 7), first);
    assert_ne!(png("c.png", 8), first);
}

/// A model whose loss is NaN (its weights poisoned, as a diverged step leaves them): every step
/// is skipped and counted in the metrics, the epoch's NaN validation bpd never becomes `best`,
/// and after `max_bad_steps` bad steps in a row training stops with `Diverged`, naming the last
/// checkpoint, which is left as it was and loads.
#[test]
fn non_finite_losses_are_skipped_counted_never_best_and_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir(tmp.path().join("run"));
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &config(1), &dir, false, false).unwrap();
    let root = dir.checkpoints();
    let good = checkpoint::resolve(&root, "best").unwrap();
    let good_bpd = checkpoint::read_meta(&root, "best")
        .unwrap()
        .val_bpd
        .unwrap();
    assert!(good_bpd.is_finite());

    // Poison the checkpoint's weights: one scaling factor NaN makes every loss NaN.
    let weights_file = good.join("model.safetensors");
    let (_, mut poisoned) = fresh();
    checkpoint::load_weights(&weights_file, &mut poisoned).unwrap();
    let factor = &mut poisoned.flows.0 .1.scaling_factor;
    *factor = factor.clone().try_mul(f32::NAN).unwrap();
    poisoned.save_safetensors(&weights_file).unwrap();

    // Epoch 2: four steps, all skipped; fewer than `max_bad_steps`, so the epoch finishes.
    let patient = TrainConfig {
        max_bad_steps: 100,
        ..config(2)
    };
    let (dev, mut model) = fresh();
    run(&mut model, &dev, &patient, &dir, true, false).unwrap();
    let metrics: Vec<EpochMetrics> = std::fs::read_to_string(dir.metrics())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[0].skipped_steps, 0);
    assert_eq!(metrics[1].skipped_steps, 4);
    assert!(metrics[1].train_bpd.is_nan() && metrics[1].val_bpd.is_nan());
    let last = checkpoint::read_meta(&root, "last").unwrap();
    assert_eq!((last.epoch, last.skipped_steps), (2, 4));
    // A NaN is written to JSON as null, which reads back as no value.
    assert!(last.val_bpd.is_none_or(f64::is_nan));
    assert_eq!(
        last.best_val_bpd,
        Some(good_bpd),
        "a NaN bpd became the best"
    );
    assert_eq!(
        checkpoint::resolve(&root, "best").unwrap(),
        good,
        "best moved to a NaN epoch"
    );

    // Epochs 3 and 4 with `max_bad_steps` 6: epoch 3 (4 bad steps) finishes and is saved, the
    // second step of epoch 4 is the sixth bad one in a row: stop, nothing more written.
    let strict = TrainConfig {
        max_bad_steps: 6,
        ..config(4)
    };
    let (dev, mut model) = fresh();
    let err = run(&mut model, &dev, &strict, &dir, true, false).unwrap_err();
    let last_dir = checkpoint::resolve(&root, "last").unwrap();
    match &err {
        TrainError::Diverged {
            bad_steps,
            last_checkpoint,
        } => {
            assert_eq!(*bad_steps, 6);
            assert_eq!(last_checkpoint.as_ref(), Some(&last_dir));
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    assert!(err.to_string().contains("lower learning rate"), "{err}");
    let (_, mut reloaded) = fresh();
    let (_, meta) = checkpoint::load(&root, "last", "tiny", &mut reloaded).unwrap();
    assert_eq!((meta.epoch, meta.epoch_step, meta.skipped_steps), (3, 0, 8));
    assert_eq!(checkpoint::resolve(&root, "best").unwrap(), good);
    let lines = std::fs::read_to_string(dir.metrics())
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 3, "the diverged epoch wrote a metrics line");
}

/// An observer of one's own sees every step, epoch and checkpoint, and stops the run cleanly:
/// a checkpoint at the step it asked, then `Interrupted`; resuming finishes the run.
#[test]
fn an_observer_sees_the_run_and_can_stop_it() {
    use dfdx_flows::train::{train_with, RunStart, StepReport, TrainObserver};
    #[derive(Default)]
    struct Watch {
        starts: Vec<RunStart>,
        steps: Vec<(usize, usize)>,
        epochs: Vec<(usize, bool)>,
        checkpoints: Vec<std::path::PathBuf>,
        finished: usize,
        stop_after: usize,
    }
    impl TrainObserver for Watch {
        fn started(&mut self, start: &RunStart) {
            self.starts.push(start.clone());
        }
        fn step(&mut self, step: &StepReport) {
            assert!(step.bpd.is_finite() && !step.skipped);
            assert!(step.images_per_sec > 0.0);
            self.steps.push((step.epoch, step.epoch_step));
        }
        fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
            self.epochs.push((metrics.epoch, best));
        }
        fn checkpoint(&mut self, dir: &std::path::Path) {
            self.checkpoints.push(dir.to_path_buf());
        }
        fn finished(&mut self) {
            self.finished += 1;
        }
        fn should_stop(&mut self) -> bool {
            self.steps.len() == self.stop_after
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir(tmp.path().join("run"));
    let (train_px, val_px) = (data(64, 0), data(16, 7));
    let flag = AtomicBool::new(false);
    let (dev, mut model) = fresh();
    let mut watch = Watch {
        stop_after: 6,
        ..Watch::default()
    };
    let err = train_with(
        &mut model,
        "tiny",
        &dev,
        &train_px,
        &val_px,
        &config(2),
        &dir,
        false,
        &flag,
        &mut watch,
    )
    .unwrap_err();
    let TrainError::Interrupted(stopped_at) = err else {
        panic!("expected a clean stop, got {err:?}")
    };
    assert_eq!(
        watch.steps,
        [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2)]
    );
    assert_eq!(watch.epochs, [(1, true)]);
    assert_eq!(watch.checkpoints.len(), 2);
    assert_eq!(watch.checkpoints[1], stopped_at);
    assert_eq!(watch.finished, 1);
    assert_eq!(watch.starts[0].resumed_from, None);
    let meta = checkpoint::read_meta(&dir.checkpoints(), "last").unwrap();
    assert_eq!((meta.epoch, meta.epoch_step), (1, 2));

    let mut resumed = Watch::default();
    let (dev, mut model) = fresh();
    train_with(
        &mut model,
        "tiny",
        &dev,
        &train_px,
        &val_px,
        &config(2),
        &dir,
        true,
        &flag,
        &mut resumed,
    )
    .unwrap();
    assert_eq!(resumed.starts[0].epochs_done, 1);
    assert_eq!(resumed.starts[0].epoch_step, 2);
    assert_eq!(resumed.starts[0].resumed_from.as_ref(), Some(&stopped_at));
    assert_eq!(resumed.steps, [(2, 3), (2, 4)]);
    assert_eq!(resumed.epochs.len(), 1);
}
