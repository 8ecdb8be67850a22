//! `loglik`: log p(x) of given images with given dequantization noise (safetensors in and out),
//! the check against the PyTorch reference.
use super::*;

/// Options of `loglik`.
#[derive(Debug, Args)]
pub struct LoglikArgs {
    /// Weights: a safetensors file with the model's tensor names (e.g. a PyTorch `state_dict`
    /// saved with safetensors), or a run/checkpoint directory
    #[arg(long)]
    pub weights: PathBuf,
    /// Safetensors file with `images` (N,1,28,28; values 0..255) and `noise` (N,1,28,28;
    /// uniform in [0, 1)), both f32
    #[arg(long)]
    pub inputs: PathBuf,
    /// Also write the results as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `loglik` computes: per image, `log p(x)` in nats and bits per dimension.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoglikResults {
    /// Model name.
    pub model: String,
    /// `log p(x)` per image, nats.
    pub log_px: Vec<f64>,
    /// Bits per dimension per image.
    pub bpd: Vec<f64>,
}

/// Reads the f32 tensor `name` of shape (N, 1, 28, 28) from a safetensors file.
pub(super) fn read_images(path: &Path, name: &str) -> Result<Vec<f32>, CliError> {
    use ::safetensors::tensor::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        failed(format!(
            "{}: not a safetensors file ({e:?})",
            path.display()
        ))
    })?;
    let view = st.tensor(name).map_err(|_| {
        failed(format!(
            "{}: no tensor `{name}` (expected `images` and `noise`, f32, shape (N, 1, 28, 28))",
            path.display()
        ))
    })?;
    let shape = view.shape();
    if view.dtype() != Dtype::F32 || shape.len() != 4 || shape[1..] != [1, 28, 28] {
        return Err(failed(format!(
            "{}: tensor `{name}` is {:?} {:?}; expected F32 (N, 1, 28, 28)",
            path.display(),
            view.dtype(),
            shape
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

/// `log p(x)` per image of `images` (values 0..255) with dequantization noise `noise`, both
/// laid out as (N, 1, 28, 28): the library call behind `loglik`.
pub fn log_likelihoods<F, D: CliDevice, const K: usize>(
    model: &ImageFlow<F, K>,
    dev: &D,
    images: &[f32],
    noise: &[f32],
) -> Result<Vec<f64>, FlowError<D::Err>>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    assert_eq!(images.len(), noise.len(), "images and noise differ in size");
    let n = images.len() / 784;
    let x = dev.try_tensor_from_vec(images.to_vec(), Img::<1, 28, 28>::with_batch(n))?;
    let mut ctx = FlowCtx::with_noise(noise.to_vec());
    Ok(model
        .log_likelihood(x, &mut ctx)?
        .as_vec()
        .into_iter()
        .map(f64::from)
        .collect())
}

pub(super) fn cmd_loglik<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &LoglikArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    unconditional_only::<K>("loglik", name)?;
    let (dev, model) = open_model(name, build, 0, &args.weights)?;
    let images = read_images(&args.inputs, "images")?;
    let noise = read_images(&args.inputs, "noise")?;
    if images.len() != noise.len() {
        return Err(failed(format!(
            "{}: `images` has {} images but `noise` has {}",
            args.inputs.display(),
            images.len() / 784,
            noise.len() / 784
        )));
    }
    if images.is_empty() {
        return Err(failed(format!("{}: no images", args.inputs.display())));
    }
    if let Some(bad) = images.iter().find(|v| !(0.0..=255.0).contains(*v)) {
        return Err(failed(format!(
            "{}: `images` holds {bad}; pixel values must be in 0..=255",
            args.inputs.display()
        )));
    }
    if let Some(bad) = noise.iter().find(|v| !(0.0..1.0).contains(*v)) {
        return Err(failed(format!(
            "{}: `noise` holds {bad}; dequantization noise must be in [0, 1)",
            args.inputs.display()
        )));
    }
    let log_px = log_likelihoods(&model, &dev, &images, &noise).map_err(flow_failed)?;
    let bpd: Vec<f64> = log_px
        .iter()
        .map(|l| -l * std::f64::consts::LOG2_E / 784.0)
        .collect();
    println!("image\tlog p(x) [nats]\tbpd");
    for (i, (l, b)) in log_px.iter().zip(&bpd).enumerate() {
        println!("{i}\t{l:.6}\t{b:.6}");
    }
    let results = LoglikResults {
        model: name.to_string(),
        log_px,
        bpd,
    };
    if let Some(out) = &args.out {
        check_results_file::<LoglikResults>(out)?;
        checkpoint::write_atomic(
            out,
            serde_json::to_string_pretty(&results)
                .expect("serializable")
                .as_bytes(),
        )
        .map_err(failed)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
