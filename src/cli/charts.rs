//! `charts`: the tutorial's charts from a run's metrics and results.
use super::*;

/// Options of `charts`.
#[derive(Debug, Args)]
pub struct ChartsArgs {
    /// Directory to write the charts to (created if missing)
    #[arg(long, default_value = "charts")]
    pub out_dir: PathBuf,
    /// A run directory written by `train` (or its metrics.jsonl): also draw its training curves
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// The training curves of a run directory's (or a given) `metrics.jsonl`.
pub(super) fn read_metrics(path: &Path) -> Result<Vec<crate::viz::charts::EpochPoint>, CliError> {
    let file = if path.is_dir() {
        RunDir(path.to_path_buf()).metrics()
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        failed(format!(
            "cannot read {} ({e}): give a run directory written by `train`",
            file.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(failed(format!(
            "{} has no epochs yet: train at least one epoch for the training curves",
            file.display()
        )));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let m: crate::train::EpochMetrics = serde_json::from_str(line)
                .map_err(|e| failed(format!("{} line {}: {e}", file.display(), i + 1)))?;
            Ok(crate::viz::charts::EpochPoint {
                epoch: m.epoch,
                train_bpd: m.train_bpd,
                val_bpd: Some(m.val_bpd),
            })
        })
        .collect()
}

/// Draws two masks into one picture, one above the other (the tutorial shows them in turn).
pub(super) fn write_masks(path: &Path) -> Result<(), CliError> {
    use crate::layers::{ChannelMask, Checkerboard, MaskKind};
    let tmp = tempfile::tempdir().map_err(|e| failed(format!("temporary directory: {e}")))?;
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let parts = [
        (
            tmp.path().join("checkerboard.png"),
            f32s(Checkerboard::<false>::values::<1, 8, 8>()),
            (1, 8, 8),
        ),
        (
            tmp.path().join("channel.png"),
            f32s(ChannelMask::<false>::values::<8, 1, 1>()),
            (8, 1, 1),
        ),
    ];
    let mut pictures = Vec::new();
    for (file, mask, (c, h, w)) in &parts {
        crate::viz::charts::mask_image(file, mask, *c, *h, *w).map_err(failed)?;
        pictures.push(
            image::open(file)
                .map_err(|e| failed(format!("{}: {e}", file.display())))?
                .to_rgb8(),
        );
    }
    const GAP: u32 = 16;
    let width = pictures.iter().map(|p| p.width()).max().unwrap_or(1);
    let height = pictures.iter().map(|p| p.height()).sum::<u32>() + GAP;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for p in &pictures {
        image::imageops::overlay(&mut canvas, p, i64::from((width - p.width()) / 2), y);
        y += i64::from(p.height() + GAP);
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

pub(super) fn cmd_charts(args: &ChartsArgs) -> Result<(), CliError> {
    use crate::viz::charts;
    // Read the metrics first: a bad --checkpoint fails before anything is written.
    let metrics = args.checkpoint.as_deref().map(read_metrics).transpose()?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| {
        failed(format!(
            "cannot create the directory {}: {e}",
            args.out_dir.display()
        ))
    })?;
    let dir = &args.out_dir;
    let mut written = Vec::new();
    let mut wrote = |file: &str| written.push(file.to_string());
    charts::dequantization_distribution(&dir.join("dequantization_uniform.png"), 8, None)
        .map_err(failed)?;
    wrote("dequantization_uniform.png");
    charts::dequantization_distribution(
        &dir.join("dequantization_prior.png"),
        8,
        Some(&charts::TUTORIAL_PRIOR),
    )
    .map_err(failed)?;
    wrote("dequantization_prior.png");
    charts::scaling_factor(&dir.join("scaling_factor.png")).map_err(failed)?;
    wrote("scaling_factor.png");
    write_masks(&dir.join("masks.png"))?;
    wrote("masks.png");
    if let Some(points) = metrics {
        charts::training_curves(&dir.join("training_curves.png"), &points).map_err(failed)?;
        wrote("training_curves.png");
    }
    println!(
        "wrote {} charts ({}) to {}",
        written.len(),
        written.join(", "),
        dir.display()
    );
    Ok(())
}
