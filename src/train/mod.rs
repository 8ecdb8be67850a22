//! Training: the tutorial's recipe (Adam 1e-3, StepLR ×0.99 per epoch, batch 128, loss = bpd)
//! with per-epoch metrics, samples and atomic checkpoints, NaN guards, a clean stop on request
//! and exact resume. What happens is reported to a [`TrainObserver`]; the command line adds
//! progress bars and Ctrl-C handling.
use crate::checkpoint::{self, CheckpointError, CheckpointMeta, EpochProgress};
use crate::classes::Labels;
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::FlowDevice;
use crate::flow::{Flow, FlowCtx, ImgShape};
use crate::image_flow::ImageFlow;
use crate::optim::{Adam, UpdateOutcome};
use crate::viz::{save_grid, to_bytes, GridStyle};
use dfdx::prelude::*;
use rand::prelude::*;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod images;
mod observer;
pub use images::Images;
pub use observer::{
    epoch_line, resume_line, short_duration, step_line, EpochLog, PlainProgress, RunStart,
    StepReport, TrainObserver,
};

/// How to train.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Epochs to train in total (a resumed run continues up to this count).
    pub epochs: usize,
    /// Images per batch (the last incomplete batch of an epoch is dropped, as in the tutorial).
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Learning-rate factor applied after every epoch (StepLR).
    pub lr_decay: f64,
    /// Seed of the shuffles and of the dequantization noise.
    pub seed: u64,
    /// Use only the first N training images (for quick runs).
    pub max_train: Option<usize>,
    /// Use only the first N validation images.
    pub max_val: Option<usize>,
    /// Consecutive skipped (non-finite) steps after which the run stops.
    pub max_bad_steps: u64,
    /// Samples drawn into a PNG after every epoch.
    pub samples: usize,
    /// Learning-rate warmup: over the first `warmup_steps` steps of the run the rate rises
    /// linearly from `lr / warmup_steps` to the scheduled rate (0: no warmup). What Glow's users
    /// report most, NaN or divergence in the first steps, is fixed by it.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Clip the global L2 norm of the gradients to this before each step (`None`: no clipping;
    /// see [`Adam::update_clipped`]).
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 200,
            batch_size: 128,
            lr: 1e-3,
            lr_decay: 0.99,
            seed: 42,
            max_train: None,
            max_val: None,
            max_bad_steps: 10,
            samples: 16,
            warmup_steps: 0,
            max_grad_norm: None,
        }
    }
}

/// Reads a number that JSON wrote as `null` (serde_json writes NaN and infinities so) as NaN.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One line of `metrics.jsonl`. Non-finite numbers are written as `null` and read back as NaN.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub lr: f64,
    /// Mean training bpd over the epoch's applied steps (NaN if every step was skipped).
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_bpd: f64,
    /// Validation bpd (one fixed dequantization draw).
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_bpd: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    /// Training images per second.
    #[serde(deserialize_with = "f64_or_nan")]
    pub images_per_sec: f64,
    /// Steps skipped in the epoch for non-finite loss or gradients.
    pub skipped_steps: u64,
}

/// Why training stopped early.
#[derive(Debug)]
pub enum TrainError {
    /// Saving or loading a checkpoint failed.
    Checkpoint(CheckpointError),
    /// Other I/O (metrics, samples).
    Io(PathBuf, String),
    /// Too many consecutive non-finite steps; the last checkpoint was left as it was.
    Diverged {
        /// Consecutive bad steps.
        bad_steps: u64,
        /// The checkpoint to resume from.
        last_checkpoint: Option<PathBuf>,
    },
    /// Ctrl-C: a checkpoint was written; resume with `--resume`.
    Interrupted(PathBuf),
    /// The device reported an error.
    Device(String),
    /// The data or the configuration cannot be trained on (no full batch, no validation image,
    /// a learning rate that is not a positive number, a resume with another batch order).
    Data(String),
    /// The run directory already holds checkpoints and `resume` was not asked for: training
    /// afresh would delete them.
    RunExists(PathBuf),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checkpoint(e) => write!(f, "{e}"),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Diverged {
                bad_steps,
                last_checkpoint,
            } => {
                write!(f, "training diverged: {bad_steps} consecutive steps had a NaN or infinite loss or gradient")?;
                match last_checkpoint {
                    Some(p) => write!(
                        f,
                        "; the last good checkpoint is {} (resume from it with a lower learning \
                         rate)",
                        p.display()
                    ),
                    None => write!(
                        f,
                        "; no checkpoint was written yet (try a lower learning rate)"
                    ),
                }
            }
            Self::Interrupted(p) => write!(
                f,
                "interrupted; checkpoint written to {} (resume to continue)",
                p.display()
            ),
            Self::Device(e) => write!(f, "device error: {e}"),
            Self::Data(e) => write!(f, "{e}"),
            Self::RunExists(p) => write!(
                f,
                "{} already holds a training run (checkpoints/): resume it, or train into \
                 another run directory, or delete it first",
                p.display()
            ),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        Self::Checkpoint(e)
    }
}

fn dev_err<T, Err: std::fmt::Debug>(r: Result<T, Err>) -> Result<T, TrainError> {
    r.map_err(|e| TrainError::Device(format!("{e:?}")))
}

/// A flow's error as a training error: the device's own, or the data's.
fn flow_err<T, Err: std::fmt::Debug + std::fmt::Display>(
    r: Result<T, FlowError<Err>>,
) -> Result<T, TrainError> {
    r.map_err(|e| match e {
        FlowError::Device(d) => TrainError::Device(format!("{d:?}")),
        other => TrainError::Data(other.to_string()),
    })
}

/// Where a run writes: `checkpoints/`, `metrics.jsonl`, `samples/epoch-NNN.png`.
#[derive(Clone, Debug)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// The checkpoints directory.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    /// The metrics file, one JSON object per epoch.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// The samples PNG of an epoch.
    pub fn samples(&self, epoch: usize) -> PathBuf {
        self.0.join("samples").join(format!("epoch-{epoch:03}.png"))
    }
}

/// The uniform dequantization noise of one batch, from the run's seed and the step number, so
/// that a resumed run draws exactly what an uninterrupted one would.
fn noise_for<E: FlowDtype>(seed: u64, step: u64, len: usize) -> Vec<E> {
    let mut rng = StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..len)
        .map(|_| unit_noise::<E>(rng.gen::<f64>()))
        .collect()
}

/// `u` from `[0, 1)` as `E`, still below 1: an `f64` within 2⁻²⁵ of 1 rounds to 1.0 in `f32`,
/// which the dequantization layer rejects as noise (it happened about once an epoch on MNIST),
/// so such a value becomes the largest `E` below 1.
fn unit_noise<E: FlowDtype>(u: f64) -> E {
    let v = E::from_f64(u).unwrap_or_else(E::zero);
    let below_one = E::one() - E::epsilon() / (E::one() + E::one());
    if v < E::one() {
        v
    } else {
        below_one
    }
}

/// The order of the training images in an epoch.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(1_000_003 * epoch as u64),
    ));
    order
}

/// The images `indices` of `train` (u8, `numel` values each) as one batch of `E` values.
fn batch_pixels<E: FlowDtype>(train: &[u8], indices: &[usize], numel: usize) -> Vec<E> {
    let mut pixels = Vec::with_capacity(indices.len() * numel);
    for &i in indices {
        pixels.extend(
            train[i * numel..(i + 1) * numel]
                .iter()
                .map(|v| E::from_u8(*v).unwrap_or(E::zero())),
        );
    }
    pixels
}

/// The learning-rate factor of step `step` (counted from 0 over the whole run) with a linear
/// warmup over `warmup_steps` steps: `(step + 1) / warmup_steps` during the warmup, then 1.
pub fn warmup_factor(step: u64, warmup_steps: u64) -> f64 {
    if step >= warmup_steps {
        1.0
    } else {
        (step + 1) as f64 / warmup_steps as f64
    }
}

/// Whether an epoch's validation bpd makes its checkpoint the new best: a finite bpd below the
/// best so far. A NaN (a diverged model) or infinite bpd never does; were NaN taken as the best,
/// no later bpd would compare below it and `best` would stay on the diverged epoch.
fn improves(val_bpd: f64, best_so_far: Option<f64>) -> bool {
    val_bpd.is_finite() && best_so_far.is_none_or(|b| val_bpd < b)
}

/// Validation bpd: mean over `images` with fixed noise, no tape. For a class-conditional model
/// (`K > 0`) the images need labels, and the bpd is that of `log p(x | y)`.
pub fn evaluate_bpd<'a, E: FlowDtype, D: FlowDevice<E>, F: Flow<E, D>, const K: usize>(
    model: &ImageFlow<F, K>,
    dev: &D,
    images: impl Into<Images<'a>>,
    batch_size: usize,
    seed: u64,
) -> Result<f64, TrainError> {
    let images = images.into();
    let numel = F::In::NUMEL;
    images.check_labels::<K>(numel, "validation")?;
    let n = images.pixels.len() / numel;
    let mut total = 0.0;
    let batch_size = batch_size.max(1);
    for (b, chunk) in images.pixels.chunks(batch_size * numel).enumerate() {
        let count = chunk.len() / numel;
        let x = dev.tensor_from_vec(
            chunk
                .iter()
                .map(|v| E::from_u8(*v).unwrap_or(E::zero()))
                .collect(),
            F::In::with_batch(count),
        );
        let mut ctx = FlowCtx::with_noise(noise_for::<E>(seed ^ 0x5EED, b as u64, chunk.len()));
        ctx.classes = images.classes_of::<K>(b * batch_size..b * batch_size + count)?;
        let ll = flow_err(model.log_likelihood(x, &mut ctx))?;
        total += ll.as_vec().iter().map(|v| v.to_f64().unwrap()).sum::<f64>();
    }
    Ok(-total / n as f64 * std::f64::consts::LOG2_E / numel as f64)
}

/// Trains `model` on `train` images (pixel values, image after image: `&[u8]`, or
/// [`Images::labelled`] for a class-conditional model) and validates on `val`, writing into
/// `run`. With `resume`, continues from `run`'s last checkpoint. Returns the metrics of
/// the epochs run. `interrupt` is polled after every step (set it from a Ctrl-C handler).
/// Reports to standard error with [`EpochLog`]; [`train_with`] takes an observer of one's own.
#[allow(clippy::too_many_arguments)]
pub fn train<'a, 'b, E, D, F, const K: usize>(
    model: &mut ImageFlow<F, K>,
    model_name: &str,
    dev: &D,
    train: impl Into<Images<'a>>,
    val: impl Into<Images<'b>>,
    config: &TrainConfig,
    run: &RunDir,
    resume: bool,
    interrupt: Arc<AtomicBool>,
) -> Result<Vec<EpochMetrics>, TrainError>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    F: Flow<E, D>,
{
    train_with(
        model, model_name, dev, train, val, config, run, resume, &interrupt, EpochLog,
    )
}

/// [`train`] reporting to `observer`, which sees every step, epoch and checkpoint and can stop
/// the run cleanly ([`TrainObserver::should_stop`]), as setting `interrupt` does.
#[allow(clippy::too_many_arguments)]
pub fn train_with<'a, 'b, E, D, F, const K: usize>(
    model: &mut ImageFlow<F, K>,
    model_name: &str,
    dev: &D,
    train: impl Into<Images<'a>>,
    val: impl Into<Images<'b>>,
    config: &TrainConfig,
    run: &RunDir,
    resume: bool,
    interrupt: &AtomicBool,
    mut observer: impl TrainObserver,
) -> Result<Vec<EpochMetrics>, TrainError>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    F: Flow<E, D>,
{
    let result = run_training(
        model,
        model_name,
        dev,
        train.into(),
        val.into(),
        config,
        run,
        resume,
        interrupt,
        &mut observer,
    );
    observer.finished();
    result
}

#[allow(clippy::too_many_arguments)]
fn run_training<E, D, F, const K: usize>(
    model: &mut ImageFlow<F, K>,
    model_name: &str,
    dev: &D,
    train: Images,
    val: Images,
    config: &TrainConfig,
    run: &RunDir,
    resume: bool,
    interrupt: &AtomicBool,
    observer: &mut dyn TrainObserver,
) -> Result<Vec<EpochMetrics>, TrainError>
where
    E: FlowDtype,
    D: FlowDevice<E>,
    F: Flow<E, D>,
{
    check_config(config)?;
    let numel = F::In::NUMEL;
    train.check_labels::<K>(numel, "training")?;
    let n_train = (train.pixels.len() / numel).min(config.max_train.unwrap_or(usize::MAX));
    let val = val.first(config.max_val.unwrap_or(usize::MAX), numel);
    val.check_labels::<K>(numel, "validation")?;
    let steps_per_epoch = n_train / config.batch_size.max(1);
    if steps_per_epoch == 0 {
        return Err(TrainError::Data(format!(
            "fewer training images ({n_train}) than one batch ({}): train on more images or \
             with smaller batches",
            config.batch_size
        )));
    }
    if val.pixels.is_empty() {
        return Err(TrainError::Data(
            "no validation images: the validation bpd of each epoch picks the best checkpoint; \
             give at least one"
                .into(),
        ));
    }
    let ckpt_root = run.checkpoints();
    if !resume && checkpoint::has_checkpoints(&ckpt_root) {
        return Err(TrainError::RunExists(run.0.clone()));
    }

    let mut adam = Adam::new(config.lr);
    let mut meta = CheckpointMeta {
        config: serde_json::to_value(config).expect("serializable"),
        ..CheckpointMeta::new(model_name, model)
    };
    let mut last_checkpoint = None;
    if resume {
        let tag = checkpoint::resume_tag(&ckpt_root);
        let (a, m) = checkpoint::load(&ckpt_root, tag, model_name, model)?;
        // A configuration written by another version is not compared.
        if let Ok(saved) = serde_json::from_value::<TrainConfig>(m.config.clone()) {
            if m.epoch_step > 0 {
                check_same_batches(&saved, config)?;
            }
            if saved.lr != config.lr {
                observer.note(&format!(
                    "the learning rate is now {} (the run had {}); the schedule continues from it",
                    config.lr, saved.lr
                ));
            }
        }
        adam = a;
        meta = CheckpointMeta {
            config: meta.config,
            tensors: meta.tensors,
            ..m
        };
        last_checkpoint = Some(checkpoint::resolve(&ckpt_root, tag)?);
    }

    std::fs::create_dir_all(run.0.join("samples"))
        .map_err(|e| TrainError::Io(run.0.clone(), e.to_string()))?;
    reconcile_metrics(&run.metrics(), meta.epoch)?;

    observer.started(&RunStart {
        epochs_done: meta.epoch,
        epoch_step: meta.epoch_step,
        step: meta.step,
        epochs: config.epochs,
        steps_per_epoch,
        resumed_from: last_checkpoint.clone(),
    });
    let mut history = Vec::new();
    let mut bad_in_a_row = 0u64;
    if model.flows.needs_initialization() {
        // Data-dependent initialisation (ActNorm) on the batch and noise of the first step. A
        // resumed or loaded model has it done already: its checkpoint holds the layers' flags.
        let order = epoch_order(config.seed, meta.epoch, n_train);
        let first = &order[..config.batch_size];
        let pixels = batch_pixels::<E>(train.pixels, first, numel);
        let x = dev.tensor_from_vec(pixels, F::In::with_batch(config.batch_size));
        let noise = noise_for::<E>(config.seed, meta.step, config.batch_size * numel);
        let mut ctx = FlowCtx::with_noise(noise);
        ctx.classes = train.classes_of::<K>(first.iter().copied())?;
        flow_err(model.initialize(x, &mut ctx))?;
    }
    let mut grads = model.alloc_grads();

    while meta.epoch < config.epochs {
        let epoch = meta.epoch + 1;
        let epoch_lr = config.lr * config.lr_decay.powi(meta.epoch as i32);
        adam.lr = epoch_lr;
        let order = epoch_order(config.seed, meta.epoch, n_train);
        let started = Instant::now();
        // Totals of the steps done before an interruption, if this epoch is resumed.
        let before = meta.epoch_progress;
        let EpochProgress {
            mut bpd_sum,
            mut applied,
            mut skipped,
            images: mut images_done,
            ..
        } = before;
        let seconds_so_far = || before.seconds + started.elapsed().as_secs_f64();
        for s in meta.epoch_step..steps_per_epoch {
            let indices = &order[s * config.batch_size..(s + 1) * config.batch_size];
            let pixels = batch_pixels::<E>(train.pixels, indices, numel);
            let x = dev.tensor_from_vec(pixels, F::In::with_batch(config.batch_size));
            let mut ctx = FlowCtx::with_noise(noise_for::<E>(
                config.seed,
                meta.step,
                config.batch_size * numel,
            ));
            ctx.classes = train.classes_of::<K>(indices.iter().copied())?;
            let loss = flow_err(model.bpd(x.traced(grads), &mut ctx))?;
            let value = loss.as_vec()[0].to_f64().unwrap();
            grads = loss.backward();
            adam.lr = epoch_lr * warmup_factor(meta.step, config.warmup_steps);
            let outcome = if value.is_finite() {
                dev_err(adam.update_clipped(model, &grads, config.max_grad_norm))?
            } else {
                UpdateOutcome::SkippedNonFinite
            };
            model.zero_grads(&mut grads);
            meta.step += 1;
            meta.epoch_step = s + 1;
            images_done += config.batch_size;
            match outcome {
                UpdateOutcome::Applied => {
                    bad_in_a_row = 0;
                    bpd_sum += value;
                    applied += 1;
                }
                UpdateOutcome::SkippedNonFinite => {
                    bad_in_a_row += 1;
                    skipped += 1;
                    meta.skipped_steps += 1;
                }
            }
            let seconds = seconds_so_far();
            observer.step(&StepReport {
                epoch,
                epoch_step: meta.epoch_step,
                steps_per_epoch,
                epochs: config.epochs,
                bpd: value,
                skipped: outcome == UpdateOutcome::SkippedNonFinite,
                lr: adam.lr,
                epoch_bpd: if applied == 0 {
                    f64::NAN
                } else {
                    bpd_sum / applied as f64
                },
                images_per_sec: images_done as f64 / seconds,
                epoch_seconds: seconds,
            });
            if bad_in_a_row >= config.max_bad_steps {
                return Err(TrainError::Diverged {
                    bad_steps: bad_in_a_row,
                    last_checkpoint,
                });
            }
            if interrupt.load(Ordering::SeqCst) || observer.should_stop() {
                meta.epoch_progress = EpochProgress {
                    bpd_sum,
                    applied,
                    skipped,
                    images: images_done,
                    seconds: seconds_so_far(),
                };
                let dir = checkpoint::save(&ckpt_root, &["last"], model, &adam, &meta)?;
                observer.checkpoint(&dir);
                return Err(TrainError::Interrupted(dir));
            }
        }
        let val_bpd = evaluate_bpd(model, dev, val, 256, config.seed)?;
        meta.epoch = epoch;
        meta.epoch_step = 0;
        meta.epoch_progress = EpochProgress::default();
        meta.val_bpd = Some(val_bpd);
        let improved = improves(val_bpd, meta.best_val_bpd);
        if improved {
            meta.best_val_bpd = Some(val_bpd);
        }
        let tags: &[&str] = if improved {
            &["last", "best"]
        } else {
            &["last"]
        };
        let seconds = seconds_so_far();
        let metrics = EpochMetrics {
            epoch,
            lr: epoch_lr,
            train_bpd: if applied == 0 {
                f64::NAN
            } else {
                bpd_sum / applied as f64
            },
            val_bpd,
            seconds,
            images_per_sec: images_done as f64 / seconds,
            skipped_steps: skipped,
        };
        // Samples and the metrics line go before the checkpoint: a kill in between leaves a
        // picture and a line for an epoch that the last checkpoint does not include; resuming
        // redoes that epoch, overwrites the picture and `reconcile_metrics` drops the line. (The
        // other order would lose them for a checkpointed epoch for good.)
        write_samples(model, dev, config.samples, config.seed, &run.samples(epoch))?;
        checkpoint::fault_point("epoch: samples");
        append_line(
            &run.metrics(),
            &serde_json::to_string(&metrics).expect("serializable"),
        )?;
        checkpoint::fault_point("epoch: metrics");
        let dir = checkpoint::save(&ckpt_root, tags, model, &adam, &meta)?;
        observer.checkpoint(&dir);
        last_checkpoint = Some(dir);
        observer.epoch(&metrics, improved);
        history.push(metrics);
    }
    Ok(history)
}

/// Rejects configurations that cannot train: a learning rate or decay that is not a positive
/// finite number, an empty batch.
fn check_config(config: &TrainConfig) -> Result<(), TrainError> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(TrainError::Data(format!(
                "the {name} must be a positive number, not {v}"
            )))
        }
    };
    positive("learning rate", config.lr)?;
    if let Some(max) = config.max_grad_norm {
        positive("gradient-norm limit", max)?;
    }
    positive("learning-rate decay", config.lr_decay)?;
    if config.batch_size == 0 {
        return Err(TrainError::Data("the batch size must be at least 1".into()));
    }
    Ok(())
}

/// A run stopped mid-epoch continues that epoch's batches, which the batch size, the image
/// count and the seed determine: resuming it with others would repeat or skip images.
fn check_same_batches(saved: &TrainConfig, config: &TrainConfig) -> Result<(), TrainError> {
    let show = |v: Option<usize>| v.map_or("(all)".to_string(), |v| v.to_string());
    let differences: Vec<String> = [
        (
            "--batch-size",
            saved.batch_size.to_string(),
            config.batch_size.to_string(),
        ),
        ("--max-train", show(saved.max_train), show(config.max_train)),
        ("--seed", saved.seed.to_string(), config.seed.to_string()),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(name, a, b)| format!("{name} {a} (now {b})"))
    .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(TrainError::Data(format!(
        "the run stopped in the middle of an epoch, whose batches were drawn with {}; resume \
         with the same values, or start a new run",
        differences.join(", ")
    )))
}

/// Makes the metrics file agree with the checkpoint the run starts from (epoch `epochs_done`):
/// keeps the lines of epochs 1..=`epochs_done` (the last one of each, in order) and drops the
/// rest — lines of an epoch that a killed run finished but did not checkpoint, and a line cut
/// short by the kill. A fresh run (`epochs_done` 0) starts an empty file.
fn reconcile_metrics(path: &Path, epochs_done: usize) -> Result<(), TrainError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::Io(path.to_path_buf(), e.to_string())),
    };
    let mut by_epoch: Vec<Option<String>> = vec![None; epochs_done];
    for line in text.lines() {
        if let Ok(m) = serde_json::from_str::<EpochMetrics>(line) {
            if (1..=epochs_done).contains(&m.epoch) {
                by_epoch[m.epoch - 1] = Some(line.to_string());
            }
        }
    }
    let kept: String = by_epoch.into_iter().flatten().map(|l| l + "\n").collect();
    if kept != text {
        checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::Io(path.to_path_buf(), e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| TrainError::Io(path.to_path_buf(), e.to_string()))
}

/// Draws `n` samples (temperature 1) and writes them as a PNG grid. Every latent (the final one
/// and those of split layers) comes from `seed`, not from the device's random state: the
/// training run passes its seed, so each epoch's picture shows the same latents through a
/// model that learns, and a resumed run draws what an uninterrupted one would. A
/// class-conditional model draws sample `i` of class `i mod K`, `K` to a row: each column one
/// class.
pub fn write_samples<E: FlowDtype, D: FlowDevice<E>, F: Flow<E, D>, const K: usize>(
    model: &ImageFlow<F, K>,
    dev: &D,
    n: usize,
    seed: u64,
    path: &Path,
) -> Result<(), TrainError> {
    if n == 0 {
        return Ok(());
    }
    let split_sizes = dev_err(model.split_latent_sizes(dev))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normals = |len: usize| -> Vec<E> {
        (0..len)
            .map(|_| E::from_f64(rng.sample::<f64, _>(rand_distr::StandardNormal)).unwrap())
            .collect()
    };
    let z = normals(n * F::Out::NUMEL);
    let latents = split_sizes.iter().map(|len| normals(len * n)).collect();
    let z = dev.tensor_from_vec(z, F::Out::with_batch(n));
    let mut ctx = FlowCtx {
        latents,
        ..FlowCtx::default()
    };
    let mut style = GridStyle::default();
    if K > 0 {
        let labels = Labels::<K>::new((0..n).map(|i| i % K).collect())
            .map_err(|e| TrainError::Data(e.to_string()))?;
        ctx.classes = Some(labels.into());
        style.per_row = K;
    }
    let samples = flow_err(model.sample(dev, n, Some(z), &mut ctx))?;
    let pixels = to_bytes(&samples.as_vec());
    let (c, h, w) = (F::In::C, F::In::H, F::In::W);
    // Greyscale grid of the first channel of each image.
    let first: Vec<u8> = pixels
        .chunks(c * h * w)
        .flat_map(|img| img[..h * w].to_vec())
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::Io(dir.to_path_buf(), e.to_string()))?;
    }
    save_grid(path, &first, n, h, w, style)
        .map_err(|e| TrainError::Io(path.to_path_buf(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{improves, unit_noise};

    #[test]
    fn noise_near_one_stays_below_one_in_f32() {
        let near_one = 1.0 - 1e-9;
        assert_eq!(near_one as f32, 1.0, "the case this guards against");
        let u = unit_noise::<f32>(near_one);
        assert!(u < 1.0 && u > 0.9999999, "{u}");
        assert_eq!(unit_noise::<f64>(near_one), near_one);
        assert_eq!(unit_noise::<f32>(0.25), 0.25);
    }

    #[test]
    fn only_a_finite_lower_bpd_is_an_improvement() {
        assert!(improves(3.0, None));
        assert!(improves(2.0, Some(3.0)));
        assert!(!improves(3.0, Some(3.0)));
        assert!(!improves(4.0, Some(3.0)));
        assert!(
            !improves(f64::NAN, None),
            "a NaN first epoch must not become the best"
        );
        assert!(!improves(f64::NAN, Some(3.0)));
        assert!(!improves(f64::INFINITY, None));
    }
}
