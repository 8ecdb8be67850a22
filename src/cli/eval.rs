//! `eval`: test bits per dimension (importance sampling), sampling time, parameter count; for a
//! class-conditional model the conditional and the marginal bpd and its accuracy as a
//! classifier; the layer table and the results table.
use super::nearest_class_mean::NearestClassMean;
use super::*;
use crate::classes::Labels;

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
    /// Class-conditional models: samples of each class drawn for the nearest-class-mean check
    #[arg(long, default_value_t = 100)]
    pub class_samples: usize,
    /// Class-conditional models: the prior's standard deviation for those samples (Glow's
    /// temperature; 0 or more)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
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
    /// Validation bpd (one dequantization draw); of `log p(x | y)` for a class-conditional
    /// model.
    #[serde(deserialize_with = "crate::train::f64_or_nan")]
    pub val_bpd: f64,
    /// Test bpd with importance sampling; of `log p(x | y)` for a class-conditional model.
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
    /// Class-conditional models only: the test bpd of `log p(x) = log Σ_y p(x | y) / K` (one
    /// dequantization draw, shared by the classes), comparable with an unconditional model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marginal_test_bpd: Option<f64>,
    /// Class-conditional models only: the fraction of test images whose label is
    /// `argmax_y p(x | y)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Class-conditional models only: the fraction of samples (`class_samples` of each class,
    /// at `sample_temperature`) that a nearest-class-mean classifier on the training images'
    /// pixels assigns to the class they were drawn for; chance is 1 / K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_class_rate: Option<f64>,
    /// Class-conditional models only: the temperature of the samples of `sample_class_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_temperature: Option<f64>,
    /// Class-conditional models only: the same classifier's accuracy on the test images, what
    /// `sample_class_rate` would be for samples as good as real images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nearest_mean_test_accuracy: Option<f64>,
}

pub(super) fn cmd_eval<F, D: CliDevice, const K: usize>(
    name: &str,
    build: fn(&D) -> Result<ImageFlow<F, K>, D::Err>,
    args: &EvalArgs,
) -> Result<(), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    if args.import_samples == 0 || args.max_images == Some(0) || args.class_samples == 0 {
        return Err(failed(
            "--import-samples, --max-images and --class-samples must be at least 1",
        ));
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(failed(format!(
            "--temperature must be a number of 0 or more, not {}",
            args.temperature
        )));
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
    let labels = |split: Subset| -> Vec<u8> {
        let mut labels = mnist.split(split).labels();
        labels.truncate(limit);
        labels
    };
    let (val, test) = (pixels(Subset::Validation), pixels(Subset::Test));
    let (val_labels, test_labels) = (labels(Subset::Validation), labels(Subset::Test));
    let val_bpd =
        evaluate_bpd(&model, &dev, Images::labelled(&val, &val_labels), 64, 0).map_err(failed)?;
    let mut test_sum = 0.0;
    let mut marginal_sum = 0.0;
    let mut correct = 0usize;
    let mut inference_seconds = 0.0;
    for (chunk, chunk_labels) in test.chunks(64 * 784).zip(test_labels.chunks(64)) {
        let x = dev.tensor_from_vec(
            chunk.iter().map(|v| *v as f32).collect(),
            Img::<1, 28, 28>::with_batch(chunk.len() / 784),
        );
        let t = Instant::now();
        let bpd = if K == 0 {
            model.importance_bpd(&x)
        } else {
            let given = Labels::<K>::from_bytes(chunk_labels).map_err(failed)?;
            model.importance_bpd_given(&x, &given)
        }
        .map_err(flow_failed)?;
        inference_seconds += t.elapsed().as_secs_f64();
        test_sum += bpd.iter().sum::<f64>();
        if K > 0 {
            let rows = model
                .class_log_likelihoods(&x, &mut FlowCtx::default())
                .map_err(flow_failed)?;
            for (row, &label) in rows.iter().zip(chunk_labels) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                marginal_sum += -(lse - (K as f64).ln()) * std::f64::consts::LOG2_E / 784.0;
                let best = (0..K).fold(0, |b, y| if row[y] > row[b] { y } else { b });
                correct += usize::from(best == usize::from(label));
            }
        }
    }
    let n_test = test.len() / 784;
    let test_bpd = test_sum / n_test as f64;
    let t = Instant::now();
    let mut sample_ctx = FlowCtx::default();
    if K > 0 {
        let classes = Labels::<K>::new((0..64).map(|i| i % K).collect()).map_err(failed)?;
        sample_ctx.classes = Some(classes.into());
    }
    model
        .sample(&dev, 64, None, &mut sample_ctx)
        .map_err(flow_failed)?;
    let class_check = if K > 0 {
        Some(sample_class_rate(
            &model,
            &dev,
            &mnist,
            args,
            &test,
            &test_labels,
        )?)
    } else {
        None
    };
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
        marginal_test_bpd: (K > 0).then(|| marginal_sum / n_test as f64),
        test_accuracy: (K > 0).then(|| correct as f64 / n_test as f64),
        sample_class_rate: class_check.map(|(rate, _)| rate),
        sample_temperature: (K > 0).then_some(args.temperature),
        nearest_mean_test_accuracy: class_check.map(|(_, accuracy)| accuracy),
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
    if let (Some(marginal), Some(accuracy)) = (results.marginal_test_bpd, results.test_accuracy) {
        println!(
            "class-conditional: the bpds above are of log p(x | y); log p(x) = log Σ_y p(x | y) \
             / {K}: test {marginal:.3} bpd; as a classifier (argmax_y p(x | y)): {:.1} % of \
             the test images right",
            accuracy * 100.0
        );
    }
    if let (Some(rate), Some(judge)) = (
        results.sample_class_rate,
        results.nearest_mean_test_accuracy,
    ) {
        println!(
            "samples of class c nearest the training images' mean of class c: {:.1} % of {} \
             at temperature {} (chance {:.1} %; the test images: {:.1} %)",
            rate * 100.0,
            args.class_samples * K,
            args.temperature,
            100.0 / K as f64,
            judge * 100.0
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// Draws `--class-samples` samples of each of the `K` classes (at `--temperature`) and returns
/// the fraction a nearest-class-mean classifier of the training images assigns to the class
/// they were drawn for, with that classifier's accuracy on `test` (the images and their labels).
fn sample_class_rate<F, D: CliDevice, const K: usize>(
    model: &ImageFlow<F, K>,
    dev: &D,
    mnist: &Mnist,
    args: &EvalArgs,
    test: &[u8],
    test_labels: &[u8],
) -> Result<(f64, f64), CliError>
where
    F: Flow<f32, D, In = Img<1, 28, 28>>,
{
    let train = mnist.split(Subset::Train);
    let train_pixels: Vec<u8> = (0..train.len())
        .flat_map(|i| train.image(i).iter().copied())
        .collect();
    let judge = NearestClassMean::fit(&train_pixels, &train.labels(), K).map_err(failed)?;
    let test_labels: Vec<usize> = test_labels.iter().map(|&l| usize::from(l)).collect();
    let test_accuracy = judge.accuracy(test, &test_labels);
    let classes: Vec<usize> = (0..K)
        .flat_map(|c| std::iter::repeat_n(c, args.class_samples))
        .collect();
    let mut samples = Vec::with_capacity(classes.len() * 784);
    // Batches of 128 keep the sampling memory of a large --class-samples bounded.
    for batch in classes.chunks(128) {
        let mut ctx = FlowCtx {
            classes: Some(Labels::<K>::new(batch.to_vec()).map_err(failed)?.into()),
            temperature: args.temperature,
            ..FlowCtx::default()
        };
        let drawn = model
            .sample(dev, batch.len(), None, &mut ctx)
            .map_err(flow_failed)?;
        samples.extend(to_bytes(&drawn.as_vec()));
    }
    Ok((judge.accuracy(&samples, &classes), test_accuracy))
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
