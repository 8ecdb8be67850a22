//! Checkpoints: weights (safetensors, PyTorch `state_dict` names), optimizer state, and a JSON
//! sidecar — written so that a kill at any moment leaves the previous checkpoint loadable.
//!
//! Layout under a run directory:
//! ```text
//! checkpoints/
//!   last.json, best.json          pointers: {"dir": "step-00001170"}
//!   step-00001170/
//!     model.safetensors           weights and buffers, names like flows.1.network.nn.0.weight
//!     optimizer.safetensors       Adam moments m/<name>, v/<name> (f64)
//!     meta.json                   model, epoch, step, val bpd, config, crate version, shapes
//! ```
//! A checkpoint directory is written completely and fsync'd under a temporary name, renamed into
//! place, and only then does a pointer file move to it (itself written to a temporary file,
//! fsync'd and renamed). Directories no pointer names are removed afterwards. A directory is
//! never overwritten: a second checkpoint at the same step (the end of an epoch whose last step
//! was interrupted) goes to `step-00001170.1`, so the pointers always name a complete one.
//!
//! Whenever `last.json` exists, `best.json` exists too: `best` is written before `last`, and
//! until an epoch validates to a finite bpd (a Ctrl-C in the first epoch, a diverged first
//! epoch) every checkpoint is also `best`; after that, `best` moves only to a lower finite bpd. A kill between any two steps of a save therefore
//! leaves either the previous pair of pointers or a pair whose `best` is at least as new.
use crate::atomic_file;
use crate::dtype::FlowDtype;
use crate::flow::FlowDevice;
use crate::optim::{Adam, AdamSlot};
use crate::params::{tensor_entries, TensorEntry};
use ::safetensors::tensor::{Dtype as SDtype, SafeTensors, TensorView};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors, TensorCollection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A function called after each durable step of a checkpoint save and of the trainer's epoch
/// end, with the step's name; crash-safety tests stop the process there to check the on-disk
/// state at every kill point deterministically.
#[doc(hidden)]
pub type FaultHook = fn(&'static str);

static FAULT_HOOK: OnceLock<FaultHook> = OnceLock::new();

/// Installs the fault-injection hook (once per process; later calls are ignored). For tests.
#[doc(hidden)]
pub fn set_fault_hook(hook: FaultHook) {
    let _ = FAULT_HOOK.set(hook);
}

/// Reports that the durable step `name` is done to the fault-injection hook, if any.
pub(crate) fn fault_point(name: &'static str) {
    if let Some(hook) = FAULT_HOOK.get() {
        hook(name);
    }
}

/// The sidecar of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// Model name, e.g. `multiscale`.
    pub model: String,
    /// dfdx-flows version that wrote it.
    pub crate_version: String,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches done in the current (incomplete) epoch; 0 at an epoch boundary.
    pub epoch_step: usize,
    /// Optimizer steps taken (including skipped ones).
    pub step: u64,
    /// Validation bpd after the last completed epoch, if any.
    pub val_bpd: Option<f64>,
    /// Best validation bpd so far.
    pub best_val_bpd: Option<f64>,
    /// Steps skipped for non-finite loss or gradients so far.
    pub skipped_steps: u64,
    /// The training configuration, as the trainer wrote it.
    pub config: serde_json::Value,
    /// Every tensor of the model with its shape.
    pub tensors: Vec<TensorEntry>,
    /// Running totals of the incomplete epoch (zero at an epoch boundary), so that an epoch
    /// resumed mid-way reports the same training bpd as an uninterrupted one.
    #[serde(default)]
    pub epoch_progress: EpochProgress,
}

impl CheckpointMeta {
    /// The sidecar of a fresh model named `model_name` (epoch 0, no validation yet), for
    /// [`save`] from one's own training loop; [`load`] checks the name.
    ///
    /// ```
    /// # use dfdx::prelude::*;
    /// # use dfdx_flows::prelude::*;
    /// # type Small = Chain<(Dequantization<1, 4, 4>, CheckerboardCoupling<1, 4, 4, 4, false, f32, Cpu>)>;
    /// use dfdx_flows::checkpoint::{self, CheckpointMeta};
    /// let dev: Cpu = Default::default();
    /// let mut model = ImageFlow::<Small>::build(&dev);
    /// let adam = dfdx_flows::optim::Adam::new(1e-3);
    /// let root = tempfile::tempdir().unwrap();
    /// let mut meta = CheckpointMeta::new("small", &model);
    /// meta.step = 10;
    /// checkpoint::save(root.path(), &["last"], &model, &adam, &meta).unwrap();
    /// let (_adam, meta) = checkpoint::load(root.path(), "last", "small", &mut model).unwrap();
    /// assert_eq!(meta.step, 10);
    /// ```
    pub fn new<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
        model_name: &str,
        model: &M,
    ) -> Self {
        Self {
            model: model_name.to_string(),
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            epoch: 0,
            epoch_step: 0,
            step: 0,
            val_bpd: None,
            best_val_bpd: None,
            skipped_steps: 0,
            config: serde_json::Value::Null,
            tensors: tensor_entries(model),
            epoch_progress: EpochProgress::default(),
        }
    }
}

/// Totals of the steps done so far in an incomplete epoch.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochProgress {
    /// Sum of the training bpd of the applied steps.
    pub bpd_sum: f64,
    /// Steps whose update was applied.
    pub applied: usize,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped: u64,
    /// Training images seen.
    pub images: usize,
    /// Wall-clock seconds spent on the epoch's steps.
    pub seconds: f64,
}

/// What went wrong with a checkpoint.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing failed.
    Io(PathBuf, std::io::Error),
    /// A file is not a valid safetensors or JSON file (truncated, corrupt).
    Corrupt(PathBuf, String),
    /// The checkpoint holds another model.
    WrongModel {
        /// The file.
        path: PathBuf,
        /// What differs, naming the first mismatched tensor and both shapes.
        detail: String,
    },
    /// No checkpoint where one was expected.
    Missing(PathBuf),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Corrupt(p, e) => write!(
                f,
                "{} is truncated or corrupt ({e}); use another checkpoint or retrain",
                p.display()
            ),
            Self::WrongModel { path, detail } => write!(
                f,
                "{} is a checkpoint of another architecture: {detail}",
                path.display()
            ),
            Self::Missing(p) => write!(
                f,
                "no checkpoint at {} (train first, or pass the run directory with --out)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, CheckpointError> {
    r.map_err(|e| CheckpointError::Io(path.to_path_buf(), e))
}

fn fsync_file(path: &Path) -> Result<(), CheckpointError> {
    io(path, fs::File::open(path).and_then(|f| f.sync_all()))
}

/// [`atomic_file::write_atomic`], with the error naming `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    io(path, atomic_file::write_atomic(path, bytes))
}

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    dir: String,
}

/// Saves a checkpoint under `root` (the `checkpoints/` directory) and points `tags` (e.g.
/// `["last"]` or `["last", "best"]`) at it. `best` is always written before `last`, and while
/// the run has no validated best (`meta.best_val_bpd` is `None`: before the first epoch with a
/// finite validation bpd) every checkpoint is also `best`, so that `last` never exists without
/// `best`.
pub fn save<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    root: &Path,
    tags: &[&str],
    model: &M,
    adam: &Adam,
    meta: &CheckpointMeta,
) -> Result<PathBuf, CheckpointError> {
    io(root, fs::create_dir_all(root))?;
    let step = format!("step-{:08}", meta.step);
    let name = (0..)
        .map(|k| match k {
            0 => step.clone(),
            k => format!("{step}.{k}"),
        })
        .find(|n| !root.join(n).exists())
        .expect("a free name");
    let final_dir = root.join(&name);
    let tmp_dir = root.join(format!(".{name}.tmp"));
    if tmp_dir.exists() {
        io(&tmp_dir, fs::remove_dir_all(&tmp_dir))?;
    }
    io(&tmp_dir, fs::create_dir_all(&tmp_dir))?;
    fault_point("checkpoint: temporary directory");
    let weights = tmp_dir.join("model.safetensors");
    model
        .save_safetensors(&weights)
        .map_err(|e| CheckpointError::Corrupt(weights.clone(), format!("cannot write: {e:?}")))?;
    fsync_file(&weights)?;
    fault_point("checkpoint: weights");
    // The learning rate also as a tensor: safetensors 0.3 cannot read back a file with
    // metadata and no tensor, which is what an optimizer before its first step would give.
    let mut moments: Vec<(String, Vec<u8>, Vec<usize>)> =
        vec![("lr".to_string(), f64_bytes(&[adam.lr]), vec![1])];
    for slot in &adam.state {
        moments.push((
            format!("m/{}", slot.name),
            f64_bytes(&slot.m),
            vec![slot.m.len()],
        ));
        moments.push((
            format!("v/{}", slot.name),
            f64_bytes(&slot.v),
            vec![slot.v.len()],
        ));
    }
    let views: Vec<(String, TensorView)> = moments
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(SDtype::F64, s.clone(), b).expect("consistent sizes"),
            )
        })
        .collect();
    let mut adam_meta = HashMap::new();
    adam_meta.insert("step".to_string(), adam.step.to_string());
    adam_meta.insert("lr".to_string(), adam.lr.to_string());
    let opt_path = tmp_dir.join("optimizer.safetensors");
    let bytes = ::safetensors::tensor::serialize(views, &Some(adam_meta)).map_err(|e| {
        CheckpointError::Corrupt(opt_path.clone(), format!("cannot serialize: {e:?}"))
    })?;
    write_atomic(&opt_path, &bytes)?;
    fault_point("checkpoint: optimizer");
    let meta_path = tmp_dir.join("meta.json");
    write_atomic(
        &meta_path,
        serde_json::to_string_pretty(meta)
            .expect("serializable")
            .as_bytes(),
    )?;
    atomic_file::fsync_dir(&tmp_dir);
    fault_point("checkpoint: sidecar");
    io(&final_dir, fs::rename(&tmp_dir, &final_dir))?;
    atomic_file::fsync_dir(root);
    fault_point("checkpoint: directory renamed");
    let pointer = serde_json::to_vec(&Pointer { dir: name.clone() }).expect("serializable");
    for tag in pointer_order(root, tags, meta.best_val_bpd.is_none()) {
        write_atomic(&root.join(format!("{tag}.json")), &pointer)?;
        fault_point(if tag == "last" {
            "checkpoint: last pointer"
        } else {
            "checkpoint: other pointer"
        });
    }
    prune(root);
    fault_point("checkpoint: pruned");
    Ok(final_dir)
}

/// The pointers to write for a save that asked for `tags`, in a safe order: `best` (asked for,
/// missing so far, or not yet validated) before every other tag, `last` after them all.
fn pointer_order<'a>(root: &Path, tags: &[&'a str], unvalidated: bool) -> Vec<&'a str> {
    let mut order: Vec<&'a str> = Vec::with_capacity(tags.len() + 1);
    if tags.contains(&"best") || unvalidated || !root.join("best.json").exists() {
        order.push("best");
    }
    order.extend(tags.iter().filter(|t| !matches!(**t, "best" | "last")));
    if tags.contains(&"last") {
        order.push("last");
    }
    order
}

/// Removes checkpoint directories that no pointer names (best effort).
fn prune(root: &Path) {
    let keep: Vec<String> = ["last", "best"]
        .iter()
        .filter_map(|t| fs::read(root.join(format!("{t}.json"))).ok())
        .filter_map(|b| serde_json::from_slice::<Pointer>(&b).ok())
        .map(|p| p.dir)
        .collect();
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("step-") && !keep.contains(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Whether `root` (a `checkpoints/` directory) holds a checkpoint: a `last` or `best` pointer.
/// (A checkpoint directory no pointer names yet is the remains of a save that a kill
/// interrupted; the next save removes it.)
pub fn has_checkpoints(root: &Path) -> bool {
    ["last", "best"]
        .iter()
        .any(|tag| root.join(format!("{tag}.json")).exists())
}

/// The pointer a resumed run continues from: `last`, or `best` when only `best` exists (a kill
/// after a save wrote `best` and before it wrote `last`: then `best` is the newest checkpoint).
pub fn resume_tag(root: &Path) -> &'static str {
    if !root.join("last.json").exists() && root.join("best.json").exists() {
        "best"
    } else {
        "last"
    }
}

/// The sidecar of the checkpoint `tag` (`last` or `best`) under `root`.
pub fn read_meta(root: &Path, tag: &str) -> Result<CheckpointMeta, CheckpointError> {
    read_meta_in(&resolve(root, tag)?)
}

/// The sidecar (`meta.json`) of the checkpoint directory `dir`.
pub fn read_meta_in(dir: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let meta_path = dir.join("meta.json");
    let meta_bytes = io(&meta_path, fs::read(&meta_path))?;
    serde_json::from_slice(&meta_bytes)
        .map_err(|e| CheckpointError::Corrupt(meta_path, e.to_string()))
}

/// The directory a pointer (`last` or `best`) names, if any.
pub fn resolve(root: &Path, tag: &str) -> Result<PathBuf, CheckpointError> {
    let pointer = root.join(format!("{tag}.json"));
    if !pointer.exists() {
        return Err(CheckpointError::Missing(pointer));
    }
    let bytes = io(&pointer, fs::read(&pointer))?;
    let p: Pointer = serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Corrupt(pointer.clone(), e.to_string()))?;
    Ok(root.join(p.dir))
}

/// Checks that a weights file holds exactly the tensors of `model` with the same shapes.
pub fn check_weights<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    path: &Path,
    model: &M,
) -> Result<(), CheckpointError> {
    let bytes = io(path, fs::read(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| CheckpointError::Corrupt(path.to_path_buf(), format!("{e:?}")))?;
    for entry in tensor_entries(model) {
        match st.tensor(&entry.name) {
            Err(_) => {
                return Err(CheckpointError::WrongModel {
                    path: path.to_path_buf(),
                    detail: format!(
                        "it has no tensor `{}` (expected shape {:?})",
                        entry.name, entry.shape
                    ),
                })
            }
            Ok(view) if view.shape() != entry.shape.as_slice() => {
                return Err(CheckpointError::WrongModel {
                    path: path.to_path_buf(),
                    detail: format!(
                        "tensor `{}` has shape {:?} in the file but {:?} in this model",
                        entry.name,
                        view.shape(),
                        entry.shape
                    ),
                })
            }
            Ok(view) if view.dtype() != E::safe_dtype() => {
                return Err(CheckpointError::WrongModel {
                    path: path.to_path_buf(),
                    detail: format!(
                        "tensor `{}` is {:?}, expected {:?}",
                        entry.name,
                        view.dtype(),
                        E::safe_dtype()
                    ),
                })
            }
            Ok(_) => {}
        }
    }
    let expected = tensor_entries(model).len();
    if st.len() != expected {
        return Err(CheckpointError::WrongModel {
            path: path.to_path_buf(),
            detail: format!("it has {} tensors, this model has {expected}", st.len()),
        });
    }
    Ok(())
}

/// Loads weights from a safetensors file into `model`, after checking names and shapes.
pub fn load_weights<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    path: &Path,
    model: &mut M,
) -> Result<(), CheckpointError> {
    check_weights(path, model)?;
    model
        .load_safetensors(path)
        .map_err(|e| CheckpointError::Corrupt(path.to_path_buf(), format!("{e:?}")))
}

/// Loads the checkpoint `tag` (`last` or `best`) under `root` into `model`; returns the
/// optimizer state and the sidecar. Checks the model name and every tensor's shape first.
pub fn load<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    root: &Path,
    tag: &str,
    model_name: &str,
    model: &mut M,
) -> Result<(Adam, CheckpointMeta), CheckpointError> {
    let dir = resolve(root, tag)?;
    let meta = read_meta(root, tag)?;
    if meta.model != model_name {
        return Err(CheckpointError::WrongModel {
            path: dir.join("meta.json"),
            detail: format!("it holds the `{}` model, not `{model_name}`", meta.model),
        });
    }
    load_weights(&dir.join("model.safetensors"), model)?;
    let opt_path = dir.join("optimizer.safetensors");
    let bytes = io(&opt_path, fs::read(&opt_path))?;
    let corrupt = |e: String| CheckpointError::Corrupt(opt_path.clone(), e);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
    let extra = header.metadata().clone().unwrap_or_default();
    let parse = |k: &str| {
        extra
            .get(k)
            .ok_or_else(|| corrupt(format!("no `{k}` in its metadata")))
    };
    let mut adam = Adam::new(parse("lr")?.parse().map_err(|e| corrupt(format!("{e}")))?);
    adam.step = parse("step")?
        .parse()
        .map_err(|e| corrupt(format!("{e}")))?;
    let read = |name: &str| -> Result<Vec<f64>, CheckpointError> {
        let view = st
            .tensor(name)
            .map_err(|e| corrupt(format!("{name}: {e:?}")))?;
        Ok(view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    };
    for entry in tensor_entries(model).into_iter().filter(|e| e.trainable) {
        let (m_name, v_name) = (format!("m/{}", entry.name), format!("v/{}", entry.name));
        if st.tensor(&m_name).is_err() {
            continue; // no moments yet for this tensor (saved before the first update)
        }
        adam.state.push(AdamSlot {
            name: entry.name,
            m: read(&m_name)?,
            v: read(&v_name)?,
        });
    }
    Ok((adam, meta))
}

#[allow(unused_imports)]
use dfdx::tensor::safetensors::SafeDtype as _;
