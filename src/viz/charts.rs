//! Charts of the tutorial, drawn to PNG files with [`plotters`].
//!
//! Each function draws one figure of the tutorial "Normalizing Flows for Image Modeling" and
//! writes it as a PNG to the path it is given:
//!
//! * [`dequantization_distribution`]: the density that (uniform) dequantization gives to a
//!   discrete distribution, in the space after the dequantization flow;
//! * [`scaling_factor`]: the `tanh` stabilisation of the coupling layers' scaling output;
//! * [`training_curves`]: train and validation bits per dimension over the epochs;
//! * [`histogram`]: histograms of values, such as the dequantized pixel values of uniform and
//!   variational dequantization;
//! * [`mask_image`]: a picture of a checkerboard or channel mask.
//!
//! Charts are drawn in memory with plotters' bitmap backend and saved with the `image` crate.
//! Text is rendered with DejaVu Sans, embedded in the crate (`assets/DejaVuSans.ttf`, license
//! in `assets/DejaVuSans-LICENSE.txt`) and registered with plotters' `ab_glyph` support, so no
//! system font (and no fontconfig) is needed.
//!
//! ```no_run
//! use dfdx_flows::viz::charts::{self, EpochPoint};
//! use std::path::Path;
//!
//! charts::dequantization_distribution(Path::new("dequant.png"), 8, None)?;
//! charts::dequantization_distribution(
//!     Path::new("dequant-prior.png"),
//!     8,
//!     Some(&charts::TUTORIAL_PRIOR),
//! )?;
//! let epochs = [
//!     EpochPoint { epoch: 1, train_bpd: 1.30, val_bpd: Some(1.20) },
//!     EpochPoint { epoch: 2, train_bpd: 1.15, val_bpd: Some(1.12) },
//! ];
//! charts::training_curves(Path::new("bpd.png"), &epochs)?;
//! # Ok::<(), charts::ChartError>(())
//! ```
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// DejaVu Sans 2.37 (Bitstream Vera license; see `assets/DejaVuSans-LICENSE.txt`).
static FONT_TTF: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The font family all text is drawn with (registered to the embedded font).
const FONT: &str = "sans-serif";

/// Size of the single-panel charts, in pixels.
const SIZE: (u32, u32) = (800, 500);

/// Size of the three-panel [`scaling_factor`] chart, in pixels.
const WIDE_SIZE: (u32, u32) = (1200, 420);

/// Matplotlib's default colour cycle ("tab10", `C0`…`C9`), as in the tutorial's figures.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The matplotlib colour `C{i}`.
fn tab10(i: usize) -> RGBColor {
    TAB10[i % TAB10.len()]
}

/// The prior of the tutorial's second dequantization figure
/// (`visualize_dequantization(quants=8, prior=...)`).
pub const TUTORIAL_PRIOR: [f64; 8] = [0.075, 0.2, 0.4, 0.2, 0.075, 0.025, 0.0125, 0.0125];

/// The scaling factors of the tutorial's scaling figure, one panel each.
pub const SCALING_FACTORS: [f64; 3] = [0.5, 1.0, 2.0];

/// The `alpha` of the tutorial's `Dequantization` layer (keeps the sigmoid away from 0 and 1).
const DEQUANT_ALPHA: f64 = 1e-5;

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The PNG file could not be written (missing directory, a directory path, no permission…).
    #[error("cannot write PNG to {}: {reason}", path.display())]
    Write {
        /// Where the PNG was to be written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Plotters failed while drawing the chart (in memory, before anything is written).
    #[error("cannot draw the chart for {}: {reason}", path.display())]
    Draw {
        /// Where the PNG was to be written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// There is nothing to draw.
    #[error("empty data: {0}")]
    EmptyData(String),
    /// The arguments do not describe a chart (mismatched lengths, an empty range, NaN…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The embedded font could not be registered with plotters.
    #[error("cannot load the embedded chart font: {0}")]
    Font(String),
}

/// One epoch of training, for [`training_curves`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochPoint {
    /// The epoch number (the x axis).
    pub epoch: usize,
    /// Mean training bits per dimension over the epoch.
    pub train_bpd: f64,
    /// Validation bits per dimension, where the epoch was validated.
    pub val_bpd: Option<f64>,
}

/// An `f64` axis with ticks at given values, labelled with one decimal, like the tutorial's
/// `plt.xticks(x_ticks, ["%.1f" % x for x in x_ticks])`. (Plotters' own `WithKeyPoints` has no
/// label formatter for `f64` axes.)
struct TickedAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for TickedAxis {
    fn format(value: &f64) -> String {
        format!("{value:.1}")
    }
}

/// Registers the embedded font for every generic family plotters may ask for, once.
fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in ["sans-serif", "serif", "monospace"] {
                register_font(family, FontStyle::Normal, FONT_TTF).map_err(|_| {
                    "assets/DejaVuSans.ttf is not a valid TrueType font".to_string()
                })?;
            }
            Ok(())
        })
        .clone()
        .map_err(ChartError::Font)
}

/// A drawing area of the in-memory bitmap.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// What the drawing closures return: plotters' errors, boxed.
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws a `w`×`h` chart on a white background in memory, then writes it to `path` as PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), ChartError> {
    ensure_font()?;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        let drawn: DrawResult = (|| {
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| ChartError::Draw {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    save_rgb(path, w, h, pixels)
}

/// Writes 8-bit RGB pixels (row-major) to `path` as PNG.
fn save_rgb(path: &Path, w: u32, h: u32, pixels: Vec<u8>) -> Result<(), ChartError> {
    let write_err = |reason: String| ChartError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let img = image::RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| write_err(format!("the pixel buffer does not hold {w}×{h} RGB pixels")))?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| write_err(e.to_string()))
}

/// `(min, max)` of finite values, padded by `pad` of the span (or ±0.5 for a single value).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
    let span = hi - lo;
    if span > 0.0 {
        Some((lo - pad * span, hi + pad * span))
    } else {
        Some((lo - 0.5, hi + 0.5))
    }
}

/// Density that the tutorial's `Dequantization(quants)` flow gives to `z` (its output space),
/// when the discrete values have probabilities `prior`; returns `(discrete value, density)`.
///
/// This is `visualize_dequantization`'s computation: running the flow in reverse maps `z` to
/// `x = sigmoid(z)·(1−α) + α/2`, the discrete value is `floor(x·quants)`, and the density is
/// `exp(ldj)·prior[value]` with `ldj = log sigmoid'(z) + log(1−α) + log(quants)`.
fn dequantized_density(z: f64, quants: usize, prior: &[f64]) -> (usize, f64) {
    let s = 1.0 / (1.0 + (-z).exp());
    let x = s * (1.0 - DEQUANT_ALPHA) + 0.5 * DEQUANT_ALPHA;
    let value = ((x * quants as f64).floor().max(0.0) as usize).min(quants - 1);
    let density = s * (1.0 - s) * (1.0 - DEQUANT_ALPHA) * quants as f64 * prior[value];
    (value, density)
}

/// The tutorial's "Dequantization distribution for 8 discrete values" figure
/// (`visualize_dequantization`): the probability density over `z`, the continuous output of the
/// dequantization flow, of a discrete distribution over `quants` values.
///
/// Dequantization spreads each discrete value `v` uniformly over `[v, v+1)/quants` and maps the
/// result through the inverse sigmoid, so each value owns an interval of `z` whose area is its
/// probability. The figure shades each value's interval in its own colour (legend: the value),
/// draws the density curve in black, and puts the x ticks at the interval borders, on
/// `z ∈ [−4, 4)` like the tutorial.
///
/// `prior` is the discrete distribution (`quants` non-negative weights, normalised here);
/// `None` means uniform. The tutorial draws the figure twice: `prior: None` and
/// `prior: Some(&TUTORIAL_PRIOR)` (see [`TUTORIAL_PRIOR`]), to show how sharp the borders between
/// values become under a non-uniform prior. 800×500 px.
///
/// Errors: [`ChartError::EmptyData`] if `quants` is 0 or `prior` is empty,
/// [`ChartError::InvalidInput`] if `prior` does not have `quants` finite, non-negative weights
/// with a positive sum, and [`ChartError::Write`] if the PNG cannot be written.
pub fn dequantization_distribution(
    path: &Path,
    quants: usize,
    prior: Option<&[f64]>,
) -> Result<(), ChartError> {
    if quants == 0 {
        return Err(ChartError::EmptyData(
            "dequantization_distribution: quants is 0, there are no discrete values".into(),
        ));
    }
    let prior: Vec<f64> = match prior {
        None => vec![1.0 / quants as f64; quants],
        Some([]) => {
            return Err(ChartError::EmptyData(
                "dequantization_distribution: the prior is empty".into(),
            ))
        }
        Some(p) => {
            if p.len() != quants {
                return Err(ChartError::InvalidInput(format!(
                    "dequantization_distribution: the prior has {} values but quants is {quants}",
                    p.len()
                )));
            }
            if let Some((i, v)) = p
                .iter()
                .enumerate()
                .find(|(_, v)| !(**v >= 0.0 && v.is_finite()))
            {
                return Err(ChartError::InvalidInput(format!(
                    "dequantization_distribution: prior[{i}] = {v} is not a finite, non-negative weight"
                )));
            }
            let sum: f64 = p.iter().sum();
            if sum <= 0.0 || !sum.is_finite() {
                return Err(ChartError::InvalidInput(format!(
                    "dequantization_distribution: the prior sums to {sum}, not to a positive number"
                )));
            }
            p.iter().map(|v| v / sum).collect()
        }
    };
    let uniform = prior.iter().all(|&p| (p - prior[0]).abs() <= 1e-12);

    // torch.arange(-4, 4, 0.01)
    let points: Vec<(f64, usize, f64)> = (0..800)
        .map(|i| {
            let z = -4.0 + 0.01 * i as f64;
            let (v, p) = dequantized_density(z, quants, &prior);
            (z, v, p)
        })
        .collect();
    // Runs of consecutive points with the same discrete value.
    let mut segments: Vec<&[(f64, usize, f64)]> = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        if i == points.len() || points[i].1 != points[start].1 {
            segments.push(&points[start..i]);
            start = i;
        }
    }
    let y_max = points.iter().map(|p| p.2).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let (z_min, z_max) = (points[0].0, points[points.len() - 1].0);
    // Ticks at the interval borders, as in the tutorial, while they stay legible.
    let ticks: Vec<f64> = if segments.len() <= 12 {
        segments
            .iter()
            .map(|s| s[0].0)
            .chain(std::iter::once(z_max))
            .collect()
    } else {
        (-4..=4).map(f64::from).collect()
    };
    let caption = format!(
        "Dequantization distribution for {quants} discrete values ({} prior)",
        if uniform { "uniform" } else { "custom" }
    );

    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(
                TickedAxis {
                    inner: (z_min..4.0).into(),
                    ticks,
                },
                0.0..y_max,
            )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("z")
            .y_desc("Probability density")
            .y_label_formatter(&|p| format!("{p:.2}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for segment in &segments {
            let value = segment[0].1;
            let color = tab10(value);
            let (first, last) = (segment[0], segment[segment.len() - 1]);
            let outline: Vec<(f64, f64)> = std::iter::once((first.0, 0.0))
                .chain(segment.iter().map(|&(z, _, p)| (z, p)))
                .chain(std::iter::once((last.0, 0.0)))
                .collect();
            let area = chart.draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.5).filled(),
            )))?;
            if segments.len() <= 16 {
                area.label(value.to_string()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.mix(0.5).filled())
                });
            }
            for edge in [first, last] {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(edge.0, 0.0), (edge.0, edge.2)],
                    color.stroke_width(1),
                )))?;
            }
        }
        chart.draw_series(LineSeries::new(
            points.iter().map(|&(z, _, p)| (z, p)),
            BLACK.stroke_width(2),
        ))?;
        if segments.len() <= 16 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 13))
                .draw()?;
        }
        Ok(())
    })
}

/// The tutorial's figure of the scaling factor of the coupling layers: the raw scaling output
/// `s` of the network is stabilised as `tanh(s / c) · c`, with a learnable scaling factor `c`
/// per channel, so that it stays within `(−c, c)` while being close to the identity near 0.
///
/// One panel per factor of [`SCALING_FACTORS`] (0.5, 1, 2), titled "Scaling factor: c", over
/// `s ∈ [−5, 5]` with the y axis limited to `[−3, 3]` as in the tutorial; each panel also shows
/// the identity and the limits `±c` as grey dashed references. 1200×420 px.
///
/// Errors: [`ChartError::Write`] if the PNG cannot be written.
pub fn scaling_factor(path: &Path) -> Result<(), ChartError> {
    render(path, WIDE_SIZE, |root| {
        let root = root.titled(
            "Stabilised scaling output of the coupling layers: tanh(s / c) · c",
            (FONT, 22),
        )?;
        for (panel, &c) in root
            .split_evenly((1, SCALING_FACTORS.len()))
            .iter()
            .zip(&SCALING_FACTORS)
        {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("Scaling factor: {c}"), (FONT, 18))
                .margin(12)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(-5.0..5.0, -3.0..3.0)?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .bold_line_style(BLACK.mix(0.12))
                .x_desc("network output s")
                .y_desc("tanh(s / c) · c")
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 15))
                .draw()?;
            let grey = RGBColor(150, 150, 150);
            chart
                .draw_series(DashedLineSeries::new(
                    [(-3.0, -3.0), (3.0, 3.0)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))?
                .label("identity")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
            for limit in [-c, c] {
                chart.draw_series(DashedLineSeries::new(
                    [(-5.0, limit), (5.0, limit)],
                    3,
                    4,
                    grey.mix(0.7).stroke_width(1),
                ))?;
            }
            // torch.arange(-5, 5, 0.01)
            chart
                .draw_series(LineSeries::new(
                    (0..1000).map(|i| {
                        let s = -5.0 + 0.01 * f64::from(i);
                        (s, (s / c).tanh() * c)
                    }),
                    tab10(0).stroke_width(2),
                ))?
                .label(format!("tanh(s / {c}) · {c}"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], tab10(0).stroke_width(2))
                });
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 13))
                .draw()?;
        }
        Ok(())
    })
}

/// Training curves: bits per dimension per epoch, the training mean as a blue line and the
/// validation value (where the epoch was validated) as an orange line, with a legend. The
/// tutorial reports these numbers (it trains with PyTorch Lightning, whose logs hold them);
/// this draws them as one chart. Points are sorted by epoch; non-finite values (a diverged
/// epoch) are left out. 800×500 px.
///
/// Errors: [`ChartError::EmptyData`] if `epochs` holds no finite value, and
/// [`ChartError::Write`] if the PNG cannot be written.
pub fn training_curves(path: &Path, epochs: &[EpochPoint]) -> Result<(), ChartError> {
    let mut sorted = epochs.to_vec();
    sorted.sort_by_key(|p| p.epoch);
    let train: Vec<(i64, f64)> = sorted
        .iter()
        .filter(|p| p.train_bpd.is_finite())
        .map(|p| (p.epoch as i64, p.train_bpd))
        .collect();
    let val: Vec<(i64, f64)> = sorted
        .iter()
        .filter_map(|p| {
            p.val_bpd
                .filter(|v| v.is_finite())
                .map(|v| (p.epoch as i64, v))
        })
        .collect();
    if train.is_empty() && val.is_empty() {
        return Err(ChartError::EmptyData(if epochs.is_empty() {
            "training_curves: no epochs".into()
        } else {
            format!(
                "training_curves: none of the {} epochs has a finite bpd",
                epochs.len()
            )
        }));
    }
    let all = train.iter().chain(&val);
    let (x_lo, x_hi) = all.clone().fold((i64::MAX, i64::MIN), |(lo, hi), &(e, _)| {
        (lo.min(e), hi.max(e))
    });
    let (x_lo, x_hi) = if x_lo == x_hi {
        (x_lo - 1, x_hi + 1)
    } else {
        (x_lo, x_hi)
    };
    let (y_lo, y_hi) = padded_range(all.map(|&(_, v)| v), 0.08).unwrap_or((0.0, 1.0));

    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Bits per dimension during training", (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("Epoch")
            .y_desc("Bits per dimension")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (name, points, color) in [("train", &train, tab10(0)), ("validation", &val, tab10(1))] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 14))
            .draw()?;
        Ok(())
    })
}

/// Histograms of values, normalised to densities like matplotlib's `plt.hist(density=True)`,
/// overlaid with translucent fills and solid outlines, one colour per series, with a legend of
/// the series names (series with an empty name get no legend entry).
///
/// This is the tutorial's `visualize_dequant_distribution` figure: the output of the
/// (variational) dequantization of a batch of training images, 8 draws, binned over `[0, 1]`
/// in 256 bins — sharp steps for uniform dequantization, a smooth bump for variational
/// dequantization. Pass one series per method to compare them in one chart.
///
/// Values in `range.0..=range.1` are binned into `bins` equal bins (the last one closed, like
/// numpy); values outside or non-finite are left out, and each series is normalised by the
/// number of its values in range. 800×500 px.
///
/// Errors: [`ChartError::EmptyData`] if there is no series or no value in range,
/// [`ChartError::InvalidInput`] for `bins == 0` or a range that is not finite and increasing,
/// and [`ChartError::Write`] if the PNG cannot be written.
pub fn histogram(
    path: &Path,
    title: &str,
    series: &[(&str, &[f64])],
    range: (f64, f64),
    bins: usize,
) -> Result<(), ChartError> {
    let (lo, hi) = range;
    if series.is_empty() {
        return Err(ChartError::EmptyData(format!(
            "histogram '{title}': no series"
        )));
    }
    if bins == 0 {
        return Err(ChartError::InvalidInput(format!(
            "histogram '{title}': 0 bins"
        )));
    }
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(ChartError::InvalidInput(format!(
            "histogram '{title}': the range ({lo}, {hi}) is not finite and increasing"
        )));
    }
    let width = (hi - lo) / bins as f64;
    let densities: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, values)| {
            let mut counts = vec![0usize; bins];
            for &v in values.iter().filter(|v| (lo..=hi).contains(*v)) {
                counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
            }
            let n: usize = counts.iter().sum();
            counts
                .iter()
                .map(|&c| {
                    if n == 0 {
                        0.0
                    } else {
                        c as f64 / (n as f64 * width)
                    }
                })
                .collect()
        })
        .collect();
    let y_max = densities.iter().flatten().copied().fold(0.0, f64::max);
    if y_max <= 0.0 {
        let total: usize = series.iter().map(|(_, v)| v.len()).sum();
        return Err(ChartError::EmptyData(format!(
            "histogram '{title}': none of the {total} values lies in the range [{lo}, {hi}]"
        )));
    }
    let bin_lo = |b: usize| lo + b as f64 * width;

    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(lo..hi, 0.0..y_max * 1.08)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("Value")
            .y_desc("Density")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        let mut labelled = false;
        for (i, ((name, _), density)) in series.iter().zip(&densities).enumerate() {
            let color = tab10(i);
            chart.draw_series(density.iter().enumerate().filter(|(_, &d)| d > 0.0).map(
                |(b, &d)| {
                    Rectangle::new(
                        [(bin_lo(b), 0.0), (bin_lo(b + 1), d)],
                        color.mix(0.35).filled(),
                    )
                },
            ))?;
            // The outline of each run of non-empty bins, as a step line.
            let mut outlines: Vec<Vec<(f64, f64)>> = Vec::new();
            for (b, &d) in density.iter().enumerate() {
                if d <= 0.0 {
                    continue;
                }
                if b == 0 || density[b - 1] <= 0.0 {
                    outlines.push(vec![(bin_lo(b), 0.0)]);
                }
                let run = outlines.last_mut().expect("a run was started above");
                run.extend([(bin_lo(b), d), (bin_lo(b + 1), d)]);
                if b + 1 == bins || density[b + 1] <= 0.0 {
                    run.push((bin_lo(b + 1), 0.0));
                }
            }
            let drawn = chart.draw_series(
                outlines
                    .into_iter()
                    .map(|run| PathElement::new(run, color.stroke_width(1))),
            )?;
            if !name.is_empty() {
                labelled = true;
                drawn.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.mix(0.5).filled())
                });
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 14))
                .draw()?;
        }
        Ok(())
    })
}

/// A picture of a coupling mask of shape `c`×`h`×`w` (channel-major `mask`): the tutorial shows
/// the checkerboard mask (`create_checkerboard_mask`, 1×H×W) and the channel mask
/// (`create_channel_mask`, C×1×1) as images, 1 white and 0 black.
///
/// Each channel is drawn as a grid of `h`×`w` square cells (grey 1-px grid lines, values
/// between 0 and 1 as grey levels), channels side by side, on a white background: a
/// checkerboard mask becomes a black and white checkerboard, a channel mask a row of `c`
/// squares. Cells are up to 32 px wide (at least 2 px), smaller for large masks so that the
/// picture stays around 512 px high and 2048 px wide. No text, so no font is needed.
///
/// Errors: [`ChartError::EmptyData`] if a dimension is 0, [`ChartError::InvalidInput`] if
/// `mask` does not hold `c·h·w` finite values, and [`ChartError::Write`] if the PNG cannot be
/// written.
pub fn mask_image(
    path: &Path,
    mask: &[f32],
    c: usize,
    h: usize,
    w: usize,
) -> Result<(), ChartError> {
    if c == 0 || h == 0 || w == 0 {
        return Err(ChartError::EmptyData(format!(
            "mask_image: the mask shape {c}×{h}×{w} is empty"
        )));
    }
    let expected = c.checked_mul(h).and_then(|n| n.checked_mul(w));
    if expected != Some(mask.len()) {
        return Err(ChartError::InvalidInput(format!(
            "mask_image: the mask has {} values, a {c}×{h}×{w} mask has {}",
            mask.len(),
            expected.map_or_else(|| "too many".to_string(), |n| n.to_string())
        )));
    }
    if let Some((i, v)) = mask.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ChartError::InvalidInput(format!(
            "mask_image: mask[{i}] = {v} is not finite"
        )));
    }
    const MARGIN: usize = 8;
    const GAP: usize = 12;
    let cell = (512 / h.max(w)).min(2048 / (c * w).max(1)).clamp(2, 32);
    let (panel_w, panel_h) = (w * cell + 1, h * cell + 1);
    let img_w = 2 * MARGIN + c * panel_w + (c - 1) * GAP;
    let img_h = 2 * MARGIN + panel_h;
    let (Ok(iw), Ok(ih)) = (u32::try_from(img_w), u32::try_from(img_h)) else {
        return Err(ChartError::InvalidInput(format!(
            "mask_image: a {c}×{h}×{w} mask is too large to draw"
        )));
    };
    let mut pixels = vec![255u8; img_w * img_h * 3];
    let mut put = |x: usize, y: usize, grey: u8| {
        let i = (y * img_w + x) * 3;
        pixels[i..i + 3].fill(grey);
    };
    for ch in 0..c {
        let x0 = MARGIN + ch * (panel_w + GAP);
        for py in 0..panel_h {
            for px in 0..panel_w {
                let grey = if px % cell == 0 || py % cell == 0 {
                    128 // grid line
                } else {
                    let v = mask[(ch * h + py / cell) * w + px / cell];
                    (v.clamp(0.0, 1.0) * 255.0).round() as u8
                };
                put(x0 + px, MARGIN + py, grey);
            }
        }
    }
    save_rgb(path, iw, ih, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn load(path: &Path) -> image::RgbImage {
        image::open(path)
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", path.display()))
            .to_rgb8()
    }

    fn colours(img: &image::RgbImage) -> usize {
        img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
    }

    fn non_white(img: &image::RgbImage) -> f64 {
        img.pixels().filter(|p| p.0 != [255, 255, 255]).count() as f64
            / (img.width() * img.height()) as f64
    }

    /// A chart of the expected size that shows lines and text, and whose title band (the top
    /// `title_rows` rows) has text in it: the embedded font was used.
    fn assert_chart(path: &Path, size: (u32, u32), title_rows: u32) {
        let img = load(path);
        assert_eq!(img.dimensions(), size, "{}", path.display());
        assert!(colours(&img) >= 2, "{} is a constant image", path.display());
        let ink = non_white(&img);
        assert!(
            (0.01..0.9).contains(&ink),
            "{}: {:.3} of the pixels are not white",
            path.display(),
            ink
        );
        let title_ink = (0..title_rows)
            .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 != [255, 255, 255])
            .count();
        assert!(
            title_ink > 100,
            "{}: no title text drawn ({title_ink} pixels)",
            path.display()
        );
    }

    fn assert_empty(result: Result<(), ChartError>, path: &Path) {
        match result {
            Err(ChartError::EmptyData(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected EmptyData, got {other:?}"),
        }
        assert!(
            !path.exists(),
            "{} was written despite the error",
            path.display()
        );
    }

    #[test]
    fn dequantization_distribution_draws_both_tutorial_figures() {
        let dir = tempfile::tempdir().unwrap();
        let uniform = dir.path().join("uniform.png");
        dequantization_distribution(&uniform, 8, None).unwrap();
        assert_chart(&uniform, SIZE, 40);
        let prior = dir.path().join("prior.png");
        dequantization_distribution(&prior, 8, Some(&TUTORIAL_PRIOR)).unwrap();
        assert_chart(&prior, SIZE, 40);
        assert_ne!(load(&uniform).into_raw(), load(&prior).into_raw());
        // Many values: no legend, plain ticks, still a chart.
        let many = dir.path().join("many.png");
        dequantization_distribution(&many, 256, None).unwrap();
        assert_chart(&many, SIZE, 40);
    }

    #[test]
    fn dequantized_density_gives_each_value_its_probability() {
        // Over a wide z range each value's area is its prior probability; the tutorial's borders
        // for 8 uniform values are at logit(i/8): −1.9, −1.1, −0.5, 0, …
        let prior: Vec<f64> = TUTORIAL_PRIOR.to_vec();
        let dz = 1e-3;
        let mut mass = [0.0; 8];
        for i in 0..40_000 {
            let z = -20.0 + dz * (i as f64 + 0.5);
            let (v, p) = dequantized_density(z, 8, &prior);
            mass[v] += p * dz;
        }
        for (m, p) in mass.iter().zip(&prior) {
            assert!((m - p).abs() < 1e-3, "mass {m} vs prior {p}");
        }
        let uniform = vec![1.0 / 8.0; 8];
        assert_eq!(dequantized_density(-1.95, 8, &uniform).0, 0);
        assert_eq!(dequantized_density(-1.94, 8, &uniform).0, 1);
        assert_eq!(dequantized_density(-0.01, 8, &uniform).0, 3);
        assert_eq!(dequantized_density(0.01, 8, &uniform).0, 4);
        assert_eq!(dequantized_density(10.0, 8, &uniform).0, 7);
        // Uniform prior: the density is the logistic density.
        let (_, p0) = dequantized_density(0.0, 8, &uniform);
        assert!((p0 - 0.25).abs() < 1e-5);
    }

    #[test]
    fn dequantization_distribution_rejects_bad_priors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        assert_empty(dequantization_distribution(&path, 0, None), &path);
        assert_empty(dequantization_distribution(&path, 8, Some(&[])), &path);
        for prior in [
            &[0.5, 0.5][..],
            &[1.0, -1.0, 1.0],
            &[0.0, 0.0, 0.0],
            &[1.0, f64::NAN, 1.0],
        ] {
            let err = dequantization_distribution(&path, 3, Some(prior)).unwrap_err();
            assert!(
                matches!(err, ChartError::InvalidInput(_)),
                "{prior:?}: {err}"
            );
        }
        assert!(!path.exists());
    }

    #[test]
    fn scaling_factor_draws_three_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scaling.png");
        scaling_factor(&path).unwrap();
        assert_chart(&path, WIDE_SIZE, 30);
        // Every third of the picture has the blue tanh curve.
        let img = load(&path);
        for panel in 0..3 {
            let xs = panel * WIDE_SIZE.0 / 3..(panel + 1) * WIDE_SIZE.0 / 3;
            let blue = xs
                .flat_map(|x| (0..WIDE_SIZE.1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0 == [31, 119, 180])
                .count();
            assert!(blue > 200, "panel {panel}: {blue} curve pixels");
        }
    }

    #[test]
    fn training_curves_draw_train_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpd.png");
        let epochs: Vec<EpochPoint> = (1..=20)
            .map(|e| EpochPoint {
                epoch: e,
                train_bpd: 1.05 + 0.5 / e as f64,
                val_bpd: (e % 5 == 0).then(|| 1.04 + 0.45 / e as f64),
            })
            .collect();
        training_curves(&path, &epochs).unwrap();
        assert_chart(&path, SIZE, 40);
        let img = load(&path);
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(count(tab10(0)) > 300, "train curve missing");
        assert!(count(tab10(1)) > 100, "validation curve missing");

        // One epoch, no validation, a NaN epoch: still drawn.
        let one = dir.path().join("one.png");
        let nan = EpochPoint {
            epoch: 2,
            train_bpd: f64::NAN,
            val_bpd: None,
        };
        let first = EpochPoint {
            epoch: 1,
            train_bpd: 1.2,
            val_bpd: None,
        };
        training_curves(&one, &[nan, first]).unwrap();
        assert_chart(&one, SIZE, 40);
    }

    #[test]
    fn training_curves_reject_empty_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        assert_empty(training_curves(&path, &[]), &path);
        let nan = EpochPoint {
            epoch: 1,
            train_bpd: f64::NAN,
            val_bpd: Some(f64::INFINITY),
        };
        assert_empty(training_curves(&path, &[nan]), &path);
    }

    #[test]
    fn histogram_overlays_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hist.png");
        // Uniform-like values and a bump, as for uniform vs variational dequantization.
        let uniform: Vec<f64> = (0..5000).map(|i| (i as f64 * 0.618_034).fract()).collect();
        let bump: Vec<f64> = (0..5000)
            .map(|i| {
                let u = (i as f64 * 0.618_034).fract();
                let v = (i as f64 * 0.414_213).fract();
                (0.5 + 0.12 * (-2.0 * (u + 1e-9).ln()).sqrt() * (std::f64::consts::TAU * v).cos())
                    .clamp(0.0, 1.0)
            })
            .collect();
        histogram(
            &path,
            "Dequantized values",
            &[
                ("Dequantization", &uniform),
                ("Variational dequantization", &bump),
            ],
            (0.0, 1.0),
            256,
        )
        .unwrap();
        assert_chart(&path, SIZE, 40);
        let img = load(&path);
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(count(tab10(0)) > 100 && count(tab10(1)) > 100);

        let single = dir.path().join("single.png");
        histogram(
            &single,
            "One series",
            &[("", &[0.0, 0.2, 0.2, 1.0, 7.0])],
            (0.0, 1.0),
            10,
        )
        .unwrap();
        assert_chart(&single, SIZE, 40);
    }

    #[test]
    fn histogram_rejects_empty_data_and_bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hist.png");
        assert_empty(histogram(&path, "t", &[], (0.0, 1.0), 10), &path);
        assert_empty(histogram(&path, "t", &[("a", &[])], (0.0, 1.0), 10), &path);
        assert_empty(
            histogram(&path, "t", &[("a", &[2.0, f64::NAN])], (0.0, 1.0), 10),
            &path,
        );
        let values = [0.5];
        for (range, bins) in [((0.0, 1.0), 0), ((1.0, 1.0), 4), ((0.0, f64::INFINITY), 4)] {
            let err = histogram(&path, "t", &[("a", &values)], range, bins).unwrap_err();
            assert!(matches!(err, ChartError::InvalidInput(_)), "{err}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn mask_image_draws_checkerboard_and_channel_masks() {
        let dir = tempfile::tempdir().unwrap();
        // create_checkerboard_mask(h=8, w=8): (x + y) % 2.
        let (h, w) = (8, 8);
        let checker: Vec<f32> = (0..h * w).map(|i| ((i / w + i % w) % 2) as f32).collect();
        let path = dir.path().join("checker.png");
        mask_image(&path, &checker, 1, h, w).unwrap();
        let img = load(&path);
        let cell = 32;
        assert_eq!(
            img.dimensions(),
            (2 * 8 + 8 * cell + 1, 2 * 8 + 8 * cell + 1)
        );
        assert!(colours(&img) >= 2);
        let centre = |cx: u32, cy: u32| {
            img.get_pixel(8 + cx * cell + cell / 2, 8 + cy * cell + cell / 2)
                .0
        };
        for cy in 0..8u32 {
            for cx in 0..8u32 {
                let want = if (cx + cy) % 2 == 1 { [255; 3] } else { [0; 3] };
                assert_eq!(centre(cx, cy), want, "cell ({cx}, {cy})");
            }
        }

        // create_channel_mask(c_in=4): first half ones.
        let path = dir.path().join("channel.png");
        mask_image(&path, &[1.0, 1.0, 0.0, 0.0], 4, 1, 1).unwrap();
        let img = load(&path);
        assert_eq!(img.dimensions(), (2 * 8 + 4 * 33 + 3 * 12, 2 * 8 + 33));
        assert!(colours(&img) >= 2);
        let square = |c: u32| img.get_pixel(8 + c * (33 + 12) + 16, 8 + 16).0;
        assert_eq!(
            [square(0), square(1), square(2), square(3)],
            [[255; 3], [255; 3], [0; 3], [0; 3]]
        );
    }

    #[test]
    fn mask_image_rejects_empty_and_mismatched_masks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        assert_empty(mask_image(&path, &[], 1, 0, 4), &path);
        assert!(matches!(
            mask_image(&path, &[1.0; 3], 1, 2, 2),
            Err(ChartError::InvalidInput(_))
        ));
        assert!(matches!(
            mask_image(&path, &[f32::NAN; 4], 1, 2, 2),
            Err(ChartError::InvalidInput(_))
        ));
        assert!(!path.exists());
    }

    #[test]
    fn unwritable_paths_are_errors_that_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("chart.png");
        let as_dir = dir.path().to_path_buf();
        let mask = [0.0, 1.0, 1.0, 0.0];
        let epochs = [EpochPoint {
            epoch: 1,
            train_bpd: 1.1,
            val_bpd: Some(1.0),
        }];
        for path in [&missing, &as_dir] {
            let results = [
                dequantization_distribution(path, 8, None),
                scaling_factor(path),
                training_curves(path, &epochs),
                histogram(path, "t", &[("a", &[0.1, 0.5])], (0.0, 1.0), 8),
                mask_image(path, &mask, 1, 2, 2),
            ];
            for result in results {
                let err = result.unwrap_err();
                assert!(matches!(err, ChartError::Write { .. }), "{err}");
                let msg = err.to_string();
                assert!(
                    msg.contains(&path.display().to_string()),
                    "message does not name the path: {msg}"
                );
                assert!(msg.starts_with("cannot write PNG to "), "{msg}");
            }
        }
        assert!(!missing.exists());
    }
}
