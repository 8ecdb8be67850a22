//! The picture commands of the command line (`interpolate`, `latents`, `dequant-hist`,
//! `charts`) on tiny models with perturbed (untrained) weights and a fake MNIST: the PNGs they
//! write, the round trip at the ends of an interpolation, and one clear error for bad
//! arguments. No network: the fake MNIST is written to a temporary directory.
use dfdx::prelude::*;
use dfdx_flows::cli::{self, CliError, CliModel, EvalResults};
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

type Cb<const INVERT: bool, D> = CheckerboardCoupling<1, 28, 28, 4, INVERT, f32, D>;

/// Uniform dequantization and two small checkerboard couplings (no split).
type TinySimple<D> = Chain<(Dequantization<1, 28, 28>, Cb<false, D>, Cb<true, D>)>;

/// Variational dequantization with two small conditional couplings.
type TinyVarDeq<D> = VariationalDequantization<
    1,
    28,
    28,
    (
        CondCheckerboardCoupling<1, 28, 28, 4, false, f32, D>,
        CondCheckerboardCoupling<1, 28, 28, 4, true, f32, D>,
    ),
>;

/// The multi-scale model's shape, narrow: latent 8×7×7, one split of 2×14×14.
type TinyMulti<D> = Chain<(
    TinyVarDeq<D>,
    Cb<false, D>,
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 4, false, f32, D>,
    Split<4, 14, 14>,
    Squeeze<2, 14, 14>,
    ChannelCoupling<8, 7, 7, 4, false, f32, D>,
)>;

/// Uniform dequantization, two small couplings and a learned prior for each of 10 classes.
type TinyClass<D> = Chain<(
    Dequantization<1, 28, 28>,
    Cb<false, D>,
    Cb<true, D>,
    ClassPrior<10, 1, 28, 28, f32, D>,
)>;

struct Simple;
impl CliModel for Simple {
    type Flow<D: FlowDevice<f32>> = TinySimple<D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<TinySimple<D>>, D::Err> {
        ImageFlow::try_build(dev)
    }
}

struct Multi;
impl CliModel for Multi {
    type Flow<D: FlowDevice<f32>> = TinyMulti<D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<TinyMulti<D>>, D::Err> {
        ImageFlow::try_build(dev)
    }
}

/// Test image `i` of the fake MNIST: a ring of varied grey levels on black, placed and sized
/// by `i`. (Images from 16 on are black.)
fn test_image(i: usize) -> Vec<u8> {
    if i >= 16 {
        return vec![0; 784];
    }
    let (cy, cx) = (13.0 + (i % 3) as f64, 12.0 + (i % 5) as f64);
    let radius = 5.0 + (i % 4) as f64;
    (0..784)
        .map(|p| {
            let (y, x) = ((p / 28) as f64, (p % 28) as f64);
            let r = ((y - cy).powi(2) + (x - cx).powi(2)).sqrt();
            if (r - radius).abs() < 2.0 {
                ((p * 37 + i * 53) % 200 + 55) as u8
            } else {
                0
            }
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: usize, image: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + n * 784);
    for w in [0x0803u32, n as u32, 28, 28] {
        v.extend(w.to_be_bytes());
    }
    for i in 0..n {
        v.extend(image(i));
    }
    v
}

fn idx_labels(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + n);
    for w in [0x0801u32, n as u32] {
        v.extend(w.to_be_bytes());
    }
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

/// A fake MNIST (the reader wants the real counts: 60,000 and 10,000 images; gzipped here to a
/// few hundred kB), written once per test run under Cargo's temporary directory for tests.
fn fake_mnist() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pictures-fake-mnist");
        std::fs::create_dir_all(&dir).unwrap();
        let files = [
            (
                "train-images-idx3-ubyte.gz",
                idx_images(60_000, |_| vec![0; 784]),
            ),
            ("train-labels-idx1-ubyte.gz", idx_labels(60_000)),
            ("t10k-images-idx3-ubyte.gz", idx_images(10_000, test_image)),
            ("t10k-labels-idx1-ubyte.gz", idx_labels(10_000)),
        ];
        for (name, bytes) in files {
            std::fs::write(dir.join(name), gzip(&bytes)).unwrap();
        }
        dir
    })
}

/// A directory holding `model.safetensors`: a fresh model with every trainable tensor
/// perturbed, so that no coupling is the identity.
fn saved<M: CliModel>() -> tempfile::TempDir {
    let dev = Cpu::seed_from_u64(7);
    let mut model = M::build(&dev).unwrap();
    perturb_params(&mut model, 0.1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model
        .save_safetensors(dir.path().join("model.safetensors"))
        .unwrap();
    dir
}

struct Class;
impl CliModel<10> for Class {
    type Flow<D: FlowDevice<f32>> = TinyClass<D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<TinyClass<D>, 10>, D::Err> {
        ImageFlow::try_build_conditional(dev)
    }
}

/// [`saved`] for the class-conditional [`Class`].
fn saved_class() -> tempfile::TempDir {
    let dev = Cpu::seed_from_u64(7);
    let mut model = Class::build(&dev).unwrap();
    perturb_params(&mut model, 0.1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model
        .save_safetensors(dir.path().join("model.safetensors"))
        .unwrap();
    dir
}

fn args(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    std::iter::once(OsString::from("test"))
        .chain(list.iter().map(|a| a.as_ref().to_os_string()))
        .collect()
}

fn run_simple(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<(), CliError> {
    cli::run_from::<Simple, _, _>("simple", args(list))
}

fn run_multi(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<(), CliError> {
    cli::run_from::<Multi, _, _>("multiscale", args(list))
}

fn run_class(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<(), CliError> {
    cli::run_conditional_from::<Class, 10, _, _>("class-tiny", args(list))
}

/// The message of a failure, checked to be one line.
fn error_line(result: Result<(), CliError>) -> String {
    match result {
        Err(CliError::Failed(msg)) => {
            assert!(!msg.trim_end().contains('\n'), "not one line: {msg}");
            msg
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn open_gray(path: &Path) -> image::GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

fn assert_not_constant(img: &image::GrayImage, what: &str) {
    let first = img.as_raw()[0];
    assert!(
        img.as_raw().iter().any(|&p| p != first),
        "{what}: every pixel is {first}"
    );
}

/// Image (`row`, `col`) of a grid written with the default style (padding 2, scale 4).
fn cell(grid: &image::GrayImage, row: usize, col: usize) -> Vec<u8> {
    let (pad, scale) = (2, 4);
    let (y0, x0) = (pad + row * (28 + pad), pad + col * (28 + pad));
    (0..784)
        .map(|p| {
            let (y, x) = (y0 + p / 28, x0 + p % 28);
            grid.get_pixel((x * scale) as u32, (y * scale) as u32).0[0]
        })
        .collect()
}

fn grid_size(rows: usize, cols: usize) -> (u32, u32) {
    (((cols * 30 + 2) * 4) as u32, ((rows * 30 + 2) * 4) as u32)
}

fn max_level_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

/// `--pretrained` reads the weights shipped in pretrained/multiscale (no training, no
/// `--checkpoint`), and refuses to be given with `--checkpoint`.
#[test]
fn pretrained_weights_sample_from_the_command_line() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("pretrained.png");
    // The full-size multi-scale flow (the shipped weights'), not this file's tiny one.
    let run_full = |list: &[&dyn AsRef<std::ffi::OsStr>]| {
        cli::run_from::<cli::Multiscale, _, _>("multiscale", args(list))
    };
    run_full(&[&"sample", &"--pretrained", &"--n", &"4", &"--out", &out]).unwrap();
    assert_not_constant(&open_gray(&out), "samples of the shipped weights");
    let both = run_full(&[
        &"sample",
        &"--pretrained",
        &"--checkpoint",
        &out_dir.path(),
        &"--out",
        &out,
    ]);
    assert!(both.is_err(), "{both:?}");
}

#[test]
fn interpolations_start_and_end_at_the_test_images() {
    let data = fake_mnist();
    let out_dir = tempfile::tempdir().unwrap();
    let multi = saved::<Multi>();
    let out = out_dir.path().join("interp.png");
    run_multi(&[
        &"interpolate",
        &"--checkpoint",
        &multi.path(),
        &"--pairs",
        &"2",
        &"--steps",
        &"5",
        &"--data",
        &data,
        &"--out",
        &out,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let grid = open_gray(&out);
    assert_eq!(grid.dimensions(), grid_size(2, 5));
    assert_not_constant(&grid, "interpolation");
    for row in 0..2 {
        let (first, last) = (test_image(2 * row), test_image(2 * row + 1));
        assert!(
            max_level_diff(&cell(&grid, row, 0), &first) <= 1,
            "row {row}"
        );
        assert!(
            max_level_diff(&cell(&grid, row, 4), &last) <= 1,
            "row {row}"
        );
        let middle = cell(&grid, row, 2);
        assert!(
            middle != first && middle != last,
            "row {row}: no interpolation"
        );
    }

    // The tutorial's variant (split latents drawn at random) and the simple model.
    let out = out_dir.path().join("interp-sampled.png");
    run_multi(&[
        &"interpolate",
        &"--checkpoint",
        &multi.path(),
        &"--pairs",
        &"1",
        &"--data",
        &data,
        &"--sample-splits",
        &"--out",
        &out,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let grid = open_gray(&out);
    assert_eq!(grid.dimensions(), grid_size(1, 8));
    assert_not_constant(&grid, "interpolation with sampled splits");

    let simple = saved::<Simple>();
    let out = out_dir.path().join("interp-simple.png");
    run_simple(&[
        &"interpolate",
        &"--checkpoint",
        &simple.path().join("model.safetensors"),
        &"--pairs",
        &"1",
        &"--steps",
        &"3",
        &"--data",
        &data,
        &"--out",
        &out,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let grid = open_gray(&out);
    assert_eq!(grid.dimensions(), grid_size(1, 3));
    assert!(max_level_diff(&cell(&grid, 0, 0), &test_image(0)) <= 1);
    assert!(max_level_diff(&cell(&grid, 0, 2), &test_image(1)) <= 1);
}

#[test]
fn latents_share_the_final_latent_per_row() {
    let out_dir = tempfile::tempdir().unwrap();
    let multi = saved::<Multi>();
    let out = out_dir.path().join("shared.png");
    run_multi(&[
        &"latents",
        &"--checkpoint",
        &multi.path(),
        &"--rows",
        &"2",
        &"--out",
        &out,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let grid = open_gray(&out);
    assert_eq!(grid.dimensions(), grid_size(2, 8));
    assert_not_constant(&grid, "latents");
    for row in 0..2 {
        let images: Vec<Vec<u8>> = (0..8).map(|c| cell(&grid, row, c)).collect();
        assert!(
            images.iter().any(|im| *im != images[0]),
            "row {row}: the split-off latents change nothing"
        );
    }
    assert_ne!(cell(&grid, 0, 0), cell(&grid, 1, 0));

    // A model without split layers has nothing to vary.
    let simple = saved::<Simple>();
    let msg = error_line(run_simple(&[
        &"latents",
        &"--checkpoint",
        &simple.path(),
        &"--out",
        &out,
    ]));
    assert!(msg.contains("no split layers"), "{msg}");
}

#[test]
fn dequantization_histograms_of_both_kinds() {
    let data = fake_mnist();
    let out_dir = tempfile::tempdir().unwrap();
    let simple = saved::<Simple>();
    let multi = saved::<Multi>();
    let uniform = out_dir.path().join("uniform.png");
    let variational = out_dir.path().join("variational.png");
    let unit = out_dir.path().join("unit.png");
    run_simple(&[
        &"dequant-hist",
        &"--checkpoint",
        &simple.path(),
        &"--images",
        &"4",
        &"--draws",
        &"2",
        &"--data",
        &data,
        &"--out",
        &uniform,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    run_multi(&[
        &"dequant-hist",
        &"--checkpoint",
        &multi.path(),
        &"--images",
        &"4",
        &"--draws",
        &"2",
        &"--data",
        &data,
        &"--out",
        &variational,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    run_multi(&[
        &"dequant-hist",
        &"--checkpoint",
        &multi.path(),
        &"--images",
        &"4",
        &"--draws",
        &"1",
        &"--space",
        &"unit",
        &"--data",
        &data,
        &"--out",
        &unit,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    for path in [&uniform, &variational, &unit] {
        let img = open_gray(path);
        assert_eq!(img.dimensions(), (800, 500), "{}", path.display());
        assert_not_constant(&img, &path.display().to_string());
    }
    assert_ne!(
        std::fs::read(&uniform).unwrap(),
        std::fs::read(&variational).unwrap()
    );
}

#[test]
fn charts_of_the_tutorial_and_training_curves() {
    let run = tempfile::tempdir().unwrap();
    let mut metrics = String::new();
    for (epoch, (train, val)) in [(1.40, 1.30), (1.25, 1.21), (1.18, 1.16)]
        .into_iter()
        .enumerate()
    {
        metrics += &format!(
            "{{\"epoch\":{},\"lr\":0.001,\"train_bpd\":{train},\"val_bpd\":{val},\"seconds\":1.0,\"images_per_sec\":100.0,\"skipped_steps\":0}}\n",
            epoch + 1
        );
    }
    std::fs::write(run.path().join("metrics.jsonl"), metrics).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("charts");
    run_simple(&[&"charts", &"--out-dir", &dir, &"--checkpoint", &run.path()])
        .unwrap_or_else(|e| panic!("{e:?}"));
    for (file, size) in [
        ("dequantization_uniform.png", Some((800, 500))),
        ("dequantization_prior.png", Some((800, 500))),
        ("scaling_factor.png", Some((1200, 420))),
        ("training_curves.png", Some((800, 500))),
        ("masks.png", None),
    ] {
        let img = open_gray(&dir.join(file));
        if let Some(size) = size {
            assert_eq!(img.dimensions(), size, "{file}");
        }
        assert_not_constant(&img, file);
    }
    // The checkerboard is above the channel mask: both black and white.
    let masks = open_gray(&dir.join("masks.png"));
    assert!(masks.as_raw().contains(&0) && masks.as_raw().contains(&255));

    // Without --checkpoint: no training curves; a run directory without metrics: an error.
    let bare = out.path().join("bare");
    run_simple(&[&"charts", &"--out-dir", &bare]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(bare.join("masks.png").is_file());
    assert!(!bare.join("training_curves.png").exists());
    let msg = error_line(run_simple(&[
        &"charts",
        &"--out-dir",
        &bare,
        &"--checkpoint",
        &out.path(),
    ]));
    assert!(msg.contains("metrics.jsonl"), "{msg}");
}

#[test]
fn bad_arguments_give_one_clear_line() {
    let data = fake_mnist();
    let simple = saved::<Simple>();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("x.png");
    let nowhere = PathBuf::from("/nonexistent-dir-for-pictures-test/x.png");
    let missing = out_dir.path().join("no-run");
    let blocker = out_dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();

    let cases: Vec<(Result<(), CliError>, &str)> = vec![
        (
            run_simple(&[&"interpolate", &"--checkpoint", &missing, &"--out", &out]),
            "no checkpoint found",
        ),
        // Asking for a GPU that this build (or, with `cuda`, this machine) cannot give.
        (
            run_simple(&[
                &"sample",
                &"--device",
                &"cuda",
                &"--checkpoint",
                &simple.path(),
            ]),
            if cfg!(feature = "cuda") {
                "CUDA is not available"
            } else {
                "--features cuda"
            },
        ),
        (
            run_multi(&[
                &"interpolate",
                &"--checkpoint",
                &simple.path(),
                &"--data",
                &data,
                &"--out",
                &out,
            ]),
            "tensor",
        ),
        (
            run_multi(&[&"latents", &"--checkpoint", &simple.path(), &"--out", &out]),
            "tensor",
        ),
        (
            run_simple(&[
                &"interpolate",
                &"--checkpoint",
                &simple.path(),
                &"--steps",
                &"0",
                &"--out",
                &out,
            ]),
            "--steps",
        ),
        (
            run_simple(&[
                &"interpolate",
                &"--checkpoint",
                &simple.path(),
                &"--pairs",
                &"0",
                &"--out",
                &out,
            ]),
            "--pairs",
        ),
        (
            run_multi(&[
                &"latents",
                &"--checkpoint",
                &simple.path(),
                &"--rows",
                &"0",
                &"--out",
                &out,
            ]),
            "--rows",
        ),
        (
            run_simple(&[
                &"dequant-hist",
                &"--checkpoint",
                &simple.path(),
                &"--images",
                &"0",
                &"--out",
                &out,
            ]),
            "--images",
        ),
        (
            run_simple(&[
                &"interpolate",
                &"--checkpoint",
                &simple.path(),
                &"--data",
                &data,
                &"--out",
                &nowhere,
            ]),
            "does not exist",
        ),
        (
            run_simple(&[
                &"dequant-hist",
                &"--checkpoint",
                &simple.path(),
                &"--data",
                &data,
                &"--out",
                &out_dir.path(),
            ]),
            "is a directory",
        ),
        (
            run_simple(&[
                &"interpolate",
                &"--checkpoint",
                &simple.path(),
                &"--pairs",
                &"6000",
                &"--data",
                &data,
                &"--out",
                &out,
            ]),
            "test images",
        ),
        (
            run_simple(&[&"charts", &"--out-dir", &blocker.join("charts")]),
            "cannot create",
        ),
    ];
    let jpg = out_dir.path().join("x.jpg");
    let more: Vec<(Result<(), CliError>, &str)> = vec![
        (
            run_simple(&[&"sample", &"--checkpoint", &simple.path(), &"--out", &jpg]),
            "PNG",
        ),
        (
            run_simple(&[
                &"sample",
                &"--checkpoint",
                &simple.path(),
                &"--out",
                &nowhere,
            ]),
            "does not exist",
        ),
        (
            run_simple(&[
                &"eval",
                &"--checkpoint",
                &simple.path(),
                &"--max-images",
                &"0",
            ]),
            "--max-images",
        ),
    ];
    // `--pretrained` for a model that ships no weights names the models that do.
    let pretrained = vec![(
        run_simple(&[&"sample", &"--pretrained", &"--out", &out]),
        "no pretrained weights for `simple`",
    )];
    let temperatures = ["nan", "inf", "-1"].map(|t| {
        let run = run_simple(&[
            &"sample",
            &"--checkpoint",
            &simple.path(),
            &"--temperature",
            &t,
            &"--out",
            &out,
        ]);
        (run, "--temperature")
    });
    let cases: Vec<_> = cases
        .into_iter()
        .chain(more)
        .chain(pretrained)
        .chain(temperatures)
        .collect();
    for (i, (result, expected)) in cases.into_iter().enumerate() {
        let msg = error_line(result);
        assert!(
            msg.contains(expected),
            "case {i}: {msg:?} lacks {expected:?}"
        );
    }
    assert!(!out.exists(), "a failed command wrote its output");
    assert!(!jpg.exists(), "a failed command wrote its output");
}

/// `train` into a run directory: a second `train` without `--resume` leaves the run alone,
/// commands name the model a checkpoint holds, `eval` writes into the run directory, and a
/// corrupt pointer file is reported as such, not as a missing checkpoint.
#[test]
fn runs_are_kept_and_checkpoints_name_their_model() {
    let data = fake_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let train = |run: &Path, lr: &str| {
        run_simple(&[
            &"train",
            &"--data",
            &data,
            &"--out",
            &run,
            &"--epochs",
            &"1",
            &"--batch-size",
            &"2",
            &"--max-train",
            &"2",
            &"--max-val",
            &"2",
            &"--lr",
            &lr,
        ])
    };
    train(&run, "1e-3").unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let msg = error_line(train(&run, "1e-3"));
    assert!(msg.contains("already holds a training run"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        metrics
    );
    for lr in ["-1", "nan", "0"] {
        let other = tmp.path().join(format!("lr{lr}"));
        let msg = error_line(train(&other, lr));
        assert!(
            msg.contains("--lr must be a positive number"),
            "{lr}: {msg}"
        );
        assert!(!other.exists());
    }

    let eval_args = [
        &"eval" as &dyn AsRef<std::ffi::OsStr>,
        &"--checkpoint",
        &run,
        &"--data",
        &data,
        &"--max-images",
        &"1",
        &"--import-samples",
        &"1",
    ];
    let msg = error_line(run_multi(&eval_args));
    assert!(
        msg.contains("holds the `simple` model, not `multiscale`"),
        "{msg}"
    );
    run_simple(&eval_args).unwrap();
    let results: EvalResults =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        (results.model.as_str(), results.max_images, results.epochs),
        ("simple", Some(1), Some(1))
    );
    assert!(results.inference_seconds_per_64 > 0.0, "{results:?}");
    // Results replace results, never another file of the run.
    let metrics_path = run.join("metrics.jsonl");
    let mut onto_metrics = eval_args.to_vec();
    onto_metrics.extend([&"--out" as &dyn AsRef<std::ffi::OsStr>, &metrics_path]);
    let msg = error_line(run_simple(&onto_metrics));
    assert!(msg.contains("is not a results file"), "{msg}");
    assert_eq!(std::fs::read_to_string(&metrics_path).unwrap(), metrics);
    // Resuming a run that does not exist writes nothing.
    let nowhere = tmp.path().join("never-trained");
    let msg = error_line(run_simple(&[
        &"train",
        &"--resume",
        &"--data",
        &data,
        &"--out",
        &nowhere,
        &"--max-train",
        &"2",
        &"--batch-size",
        &"2",
    ]));
    assert!(msg.contains("no checkpoint"), "{msg}");
    assert!(!nowhere.exists());

    for pointer in ["best.json", "last.json"] {
        std::fs::write(run.join("checkpoints").join(pointer), b"garbage").unwrap();
    }
    let msg = error_line(run_simple(&[
        &"sample",
        &"--checkpoint",
        &run,
        &"--out",
        &tmp.path().join("s.png"),
    ]));
    assert!(msg.contains("truncated or corrupt"), "{msg}");
}

#[test]
fn results_table_is_the_tutorials() {
    let results = [
        EvalResults {
            model: "simple".into(),
            val_bpd: 1.0804,
            test_bpd: 1.0776,
            import_samples: 8,
            inference_seconds_per_64: 0.0204,
            sampling_seconds_per_64: 0.018,
            parameters: 556_312,
            max_images: None,
            epochs: Some(200),
            marginal_test_bpd: None,
            test_accuracy: None,
            sample_class_rate: None,
            sample_temperature: None,
            nearest_mean_test_accuracy: None,
        },
        EvalResults {
            model: "multiscale".into(),
            val_bpd: 1.022,
            test_bpd: 1.0201,
            import_samples: 8,
            inference_seconds_per_64: 0.023,
            sampling_seconds_per_64: 0.015,
            parameters: 1_711_818,
            max_images: Some(64),
            epochs: None,
            marginal_test_bpd: None,
            test_accuracy: None,
            sample_class_rate: None,
            sample_temperature: None,
            nearest_mean_test_accuracy: None,
        },
    ];
    let md = cli::results_table(&results, true);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| Model | Validation Bpd | Test Bpd | Inference time | Sampling time | Num Parameters |"
    );
    assert_eq!(
        lines[2],
        "| simple | 1.080 bpd | 1.078 bpd | 20 ms | 18 ms | 556,312 |"
    );
    assert_eq!(lines.len(), 4);
    // A table of a partial evaluation says so.
    assert!(
        lines[3].starts_with("| multiscale (first 64 images) |"),
        "{md}"
    );
    let text = cli::results_table(&results, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("Model"));
    assert!(lines[3].starts_with("multiscale") && lines[3].ends_with("1,711,818"));
    let width = lines[0].len();
    assert!(lines.iter().all(|l| l.len() == width), "{text}");
}

/// `sample` end to end: the PNG is the library's samples from the same seed, laid out as a grid
/// of the right size; the same seed gives the same file, another seed another picture.
#[test]
fn sample_writes_the_seeded_samples_as_a_png_grid() {
    let weights = saved::<Simple>();
    let tmp = tempfile::tempdir().unwrap();
    let png = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        run_simple(&[
            &"sample",
            &"--checkpoint",
            &weights.path(),
            &"--n",
            &"10",
            &"--seed",
            &seed,
            &"--out",
            &out,
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        out
    };
    let (a, b, c) = (png("a.png", "5"), png("b.png", "5"), png("c.png", "6"));
    let grid = open_gray(&a);
    // 10 images, 8 per row: 2 rows.
    assert_eq!(grid.dimensions(), grid_size(2, 8));
    assert_not_constant(&grid, "samples");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());

    // Each cell is the library's sample from the device seeded the same way.
    let dev = Cpu::seed_from_u64(5);
    let mut model = Simple::build(&dev).unwrap();
    dfdx_flows::checkpoint::load_weights(&weights.path().join("model.safetensors"), &mut model)
        .unwrap();
    let samples = model
        .sample(&dev, 10, None, &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    assert!(samples
        .iter()
        .all(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0));
    for i in 0..10 {
        let expected: Vec<u8> = samples[i * 784..(i + 1) * 784]
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(cell(&grid, i / 8, i % 8), expected, "sample {i}");
    }
    // The padding is the grid's grey.
    assert_eq!(grid.get_pixel(0, 0).0[0], 128);
}

/// A class-conditional model's commands: `sample --class C` draws the library's samples of
/// class C, `sample` without it one row per class, `eval` adds the marginal bpd, the accuracy
/// and the nearest-class-mean rate of its samples, and the commands that cannot take classes
/// yet, or a class the model does not know, are one clear line.
#[test]
fn class_conditional_commands_sample_each_class_and_evaluate() {
    let weights = saved_class();
    let weights_dir = weights.path().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let sample = |class: Option<&str>, name: &str| -> Result<PathBuf, CliError> {
        let out = tmp.path().join(name);
        let mut list: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"sample",
            &"--checkpoint",
            &weights_dir,
            &"--n",
            &"8",
            &"--seed",
            &"5",
            &"--out",
            &out,
        ];
        if let Some(class) = &class {
            list.extend([&"--class" as &dyn AsRef<std::ffi::OsStr>, class]);
        }
        run_class(&list).map(|()| out)
    };
    let sevens = open_gray(&sample(Some("7"), "sevens.png").unwrap());
    assert_eq!(sevens.dimensions(), grid_size(1, 8));
    let dev = Cpu::seed_from_u64(5);
    let mut model = Class::build(&dev).unwrap();
    dfdx_flows::checkpoint::load_weights(&weights.path().join("model.safetensors"), &mut model)
        .unwrap();
    let mut ctx = FlowCtx {
        classes: Some(
            dfdx_flows::classes::Labels::<10>::new(vec![7; 8])
                .unwrap()
                .into(),
        ),
        ..FlowCtx::default()
    };
    ctx.classes = Some(
        dfdx_flows::classes::Labels::<10>::new(vec![7; 8])
            .unwrap()
            .into(),
    );
    let expected = model.sample(&dev, 8, None, &mut ctx).unwrap().as_vec();
    for i in 0..8 {
        let cell_expected: Vec<u8> = expected[i * 784..(i + 1) * 784]
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(cell(&sevens, 0, i), cell_expected, "sample {i} of class 7");
    }
    // Same seed, another class: other images (the class prior's rows differ).
    let threes = open_gray(&sample(Some("3"), "threes.png").unwrap());
    assert_ne!(cell(&threes, 0, 0), cell(&sevens, 0, 0));

    let rows = open_gray(&sample(None, "rows.png").unwrap());
    assert_eq!(rows.dimensions(), grid_size(10, 8));
    assert_not_constant(&rows, "a row per class");

    let msg = error_line(sample(Some("10"), "none.png").map(|_| ()));
    assert!(
        msg.contains("--class 10") && msg.contains("0 to 9"),
        "{msg}"
    );
    assert!(!tmp.path().join("none.png").exists());
    let msg = error_line(run_class(&[
        &"interpolate",
        &"--checkpoint",
        &weights.path(),
        &"--data",
        &fake_mnist(),
    ]));
    assert!(msg.contains("class-conditional"), "{msg}");

    let results = tmp.path().join("results.json");
    run_class(&[
        &"eval",
        &"--checkpoint",
        &weights.path(),
        &"--data",
        &fake_mnist(),
        &"--max-images",
        &"20",
        &"--import-samples",
        &"1",
        &"--class-samples",
        &"3",
        &"--temperature",
        &"0.7",
        &"--out",
        &results,
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let r: EvalResults = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    assert!(r.val_bpd.is_finite() && r.test_bpd.is_finite(), "{r:?}");
    let marginal = r.marginal_test_bpd.expect("a marginal bpd");
    assert!(marginal.is_finite() && marginal > 0.0, "{r:?}");
    let accuracy = r.test_accuracy.expect("an accuracy");
    assert!((0.0..=1.0).contains(&accuracy), "{r:?}");
    // The fake training images are all black: every class mean is the same, every image ties
    // and goes to class 0, so the rates are the share of class 0: 3 of 30 samples, 2 of the
    // first 20 test images (labels i % 10).
    assert_eq!(r.sample_class_rate, Some(0.1), "{r:?}");
    assert_eq!(r.nearest_mean_test_accuracy, Some(0.1), "{r:?}");
    assert_eq!(r.sample_temperature, Some(0.7), "{r:?}");
}
