//! Which weights a command reads: `--checkpoint PATH` or `--pretrained`.
use super::*;

/// The weights of `sample`, `eval`, `interpolate`, `latents` and `dequant-hist`: a checkpoint of
/// one's own, or the weights that ship in this repository's `pretrained/MODEL/`.
#[derive(Clone, Debug, Default, Args)]
#[group(required = true, multiple = false)]
pub struct WeightsArgs {
    /// A run directory, its checkpoints/ directory, a checkpoint directory, or a weights file
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The trained weights shipped in pretrained/MODEL/ (see pretrained/README.md) instead of
    /// --checkpoint
    #[arg(long)]
    pub pretrained: bool,
}

impl WeightsArgs {
    /// `--checkpoint PATH`.
    pub fn checkpoint(path: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: Some(path.into()),
            pretrained: false,
        }
    }

    /// Where the weights of model `name` are: the `--checkpoint` path, or the pretrained
    /// directory, which must hold `model.safetensors`.
    pub fn path(&self, name: &str) -> Result<PathBuf, CliError> {
        match (&self.checkpoint, self.pretrained) {
            (Some(path), false) => Ok(path.clone()),
            (None, true) => {
                let dir = pretrained_dir(name);
                if dir.join("model.safetensors").is_file() {
                    Ok(dir)
                } else {
                    Err(failed(format!(
                        "no pretrained weights for `{name}` in {} (this repository ships them \
                         for: {}); train your own with `train` and give --checkpoint",
                        dir.display(),
                        shipped_models().join(", ")
                    )))
                }
            }
            _ => Err(failed("give either --checkpoint PATH or --pretrained")),
        }
    }
}

/// `pretrained/` of this repository: one directory per model with `model.safetensors`,
/// `config.json`, `metrics.jsonl` and `results.json`.
pub fn pretrained_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pretrained")
}

/// The pretrained directory of model `name`.
pub fn pretrained_dir(name: &str) -> PathBuf {
    pretrained_root().join(name)
}

/// The models with pretrained weights, sorted (none if `pretrained/` is missing).
fn shipped_models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pretrained_root())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("model.safetensors").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    if names.is_empty() {
        names.push("none".to_string());
    }
    names
}
