//! `eval`: test bits per dimension (importance sampling), sampling time, parameter count;
//! the layer table and the results table.
use super::*;

/// Options of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Which weights: --checkpoint PATH or --pretrained
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// MNIST directory [default: $MNIST_DIR, else data/mnist]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Importance samples for the test bpd
    #[arg(long, default_value_t = 8)]
    pub import_samples: usize,
    /// Evaluate on the first N images of each split only
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Where to write the results [default: results.json in the run directory, else beside
    /// the weights file]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The tutorial's results table, as `eval` writes it to results.json (non-finite numbers as
/// `null`, read back as NaN).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EvalResults {
    /// Model name.
    pub model: String,
    /// Validation bpd (one dequantization draw).
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub val_bpd: f64,
    /// Test bpd with importance sampling.
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub test_bpd: f64,
    /// Importance samples used.
    pub import_samples: usize,
    /// Seconds to compute the bpd of 64 images (one dequantization draw).
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub inference_seconds_per_64: f64,
    /// Seconds to sample 64 images.
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub sampling_seconds_per_64: f64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Evaluated on the first N images of each split only (`--max-images`); `None`: all.
    #[serde(default)]
    pub max_images: Option<usize>,
    /// Epochs the weights were trained for, where the checkpoint's sidecar (`meta.json` beside
    /// the weights) says; `None` for a bare weights file.
    #[serde(default)]
    pub epochs: Option<usize>,
}

pub(super) fn cmd_eval<F, D: CliDevice>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F>, D::Err>,
    args: &EvalArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.import_samples == 0 || args.max_images == Some(0) {
        return Err(failed(
            "--import-samples and --max-images must be at least 1",
        ));
    }
    let weights = find_weights(&args.weights.path(name)?)?;
    let (dev, mut model) = open_model(name, build, 42, &weights)?;
    let epochs = weights
        .parent()
        .and_then(|dir| checkpoint::read_meta_in(dir).ok())
        .map(|meta| meta.epoch);
    model.import_samples = args.import_samples;
    let mnist = Mnist::obtain(args.data.clone()).map_err(failed)?;
    let limit = args.max_images.unwrap_or(usize::MAX);
    let pixels = |split: Subset| -> Vec<u8> {
        let view = mnist.split(split);
        (0..view.len().min(limit))
            .flat_map(|i| view.image(i).iter().copied())
            .collect()
    };
    let (val, test) = (pixels(Subset::Validation), pixels(Subset::Test));
    let val_bpd = evaluate_bpd(&model, &dev, &val, 64, 0).map_err(failed)?;
    let mut test_sum = 0.0;
    let mut inference_seconds = 0.0;
    for chunk in test.chunks(64 * 784) {
        let x = dev.tensor_from_vec(
            chunk.iter().map(|v| *v as f32).collect(),
            Img::<1, 28, 28>::with_batch(chunk.len() / 784),
        );
        let t = Instant::now();
        let bpd = model.importance_bpd(&x).map_err(flow_failed)?;
        inference_seconds += t.elapsed().as_secs_f64();
        test_sum += bpd.iter().sum::<f64>();
    }
    let n_test = test.len() / 784;
    let test_bpd = test_sum / n_test as f64;
    let t = Instant::now();
    model
        .sample(&dev, 64, None, &mut FlowCtx::default())
        .map_err(flow_failed)?;
    let results = EvalResults {
        model: name.to_string(),
        val_bpd,
        test_bpd,
        import_samples: model.import_samples,
        // Per 64 images and per dequantization draw, over the whole (possibly partial) set.
        inference_seconds_per_64: inference_seconds / model.import_samples as f64 / n_test as f64
            * 64.0,
        sampling_seconds_per_64: t.elapsed().as_secs_f64(),
        parameters: model.num_trainable_params(),
        max_images: args.max_images,
        epochs,
    };
    let out = match &args.out {
        Some(out) => out.clone(),
        None => results_path(&weights),
    };
    check_results_file::<EvalResults>(&out)?;
    checkpoint::write_atomic(
        &out,
        serde_json::to_string_pretty(&results)
            .expect("serializable")
            .as_bytes(),
    )
    .map_err(failed)?;
    print!("{}", results_table(std::slice::from_ref(&results), true));
    println!("wrote {}", out.display());
    Ok(())
}

/// A results file may replace an earlier results file of the same kind, never another file
/// (a run's metrics.jsonl, a checkpoint pointer, ...).
pub(super) fn check_results_file<R: serde::de::DeserializeOwned>(
    out: &Path,
) -> Result<(), CliError> {
    if out.is_dir() {
        return Err(failed(format!(
            "cannot write {}: it is a directory",
            out.display()
        )));
    }
    match std::fs::read(out) {
        Ok(bytes) if serde_json::from_slice::<R>(&bytes).is_err() => Err(failed(format!(
            "{} exists and is not a results file of this command; give another --out",
            out.display()
        ))),
        _ => Ok(()),
    }
}

/// Where `eval` writes by default: the run directory of a checkpoint written by `train`
/// (`RUN/checkpoints/step-N/model.safetensors` → `RUN/results.json`), else beside the weights.
pub(super) fn results_path(weights: &Path) -> PathBuf {
    let dir = weights.parent().unwrap_or(Path::new("."));
    match dir.parent() {
        Some(ckpts) if ckpts.file_name().is_some_and(|n| n == "checkpoints") => ckpts
            .parent()
            .unwrap_or(Path::new("."))
            .join("results.json"),
        _ => dir.join("results.json"),
    }
}

/// Renders a model summary as a text table (layer, input, output, parameters) followed by a
/// last line `parameters: N` with the model's total.
pub fn layer_table(rows: &[LayerInfo], total_params: usize) -> String {
    let headers = ["#", "layer", "input", "output", "parameters"];
    // Rows whose name starts with spaces are parts of the layer above (e.g. the couplings
    // inside variational dequantization): numbered `i.k`, parameters in parentheses because
    // the layer's own row already counts them.
    let (mut top, mut inner) = (0usize, 0usize);
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let (index, params) = if r.name.starts_with("  ") {
                inner += 1;
                (
                    format!("{}.{}", top - 1, inner - 1),
                    format!("({})", group_thousands(r.params)),
                )
            } else {
                top += 1;
                inner = 0;
                ((top - 1).to_string(), group_thousands(r.params))
            };
            [
                index,
                r.name.clone(),
                r.input.clone(),
                r.output.clone(),
                params,
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers) + "\n";
    out += &"-".repeat(widths.iter().sum::<usize>() + 8);
    out.push('\n');
    for row in &cells {
        out += &line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        out.push('\n');
    }
    out += &format!("parameters: {total_params}\n");
    out
}

/// `1711818` → `1,711,818`.
pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pictures: interpolate, latents, dequant-hist, charts (the tutorial's figures).
// ---------------------------------------------------------------------------------------------

/// The tutorial's comparison table of the models' `results.json` (written by `eval`), as
/// aligned text (`markdown: false`) or as a Markdown table: Model, Validation Bpd, Test Bpd,
/// Inference time, Sampling time, Num Parameters, one row per result, in the given order.
pub fn results_table(results: &[EvalResults], markdown: bool) -> String {
    let headers = [
        "Model",
        "Validation Bpd",
        "Test Bpd",
        "Inference time",
        "Sampling time",
        "Num Parameters",
    ];
    let rows: Vec<[String; 6]> = results
        .iter()
        .map(|r| {
            [
                match r.max_images {
                    Some(n) => format!("{} (first {n} images)", r.model),
                    None => r.model.clone(),
                },
                format!("{:.3} bpd", r.val_bpd),
                format!("{:.3} bpd", r.test_bpd),
                format!("{:.0} ms", r.inference_seconds_per_64 * 1e3),
                format!("{:.0} ms", r.sampling_seconds_per_64 * 1e3),
                group_thousands(r.parameters),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        out += &format!("| {} |\n", headers.join(" | "));
        out += "|---|---:|---:|---:|---:|---:|\n";
        for row in &rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        return out;
    }
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    out += &line(headers);
    out += &(widths
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("  ")
        + "\n");
    for r in &rows {
        out += &line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
    }
    out
}
