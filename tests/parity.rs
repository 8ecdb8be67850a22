//! Numerical parity with the tutorial's own PyTorch code (`benches/reference/`).
//!
//! The fixtures in `tests/fixtures/parity/` were made by `benches/reference/export_fixtures.py`
//! (torch 2.15.0): reduced-width variants of the three models with random non-zero weights,
//! saved under their PyTorch `state_dict` names, 8 MNIST test images with fixed dequantization
//! noise, and PyTorch's log p(x) for them in float32 and float64. Loading those weights here
//! with no renaming and getting the same numbers shows that the layers, masks, names and
//! likelihood bookkeeping are the tutorial's.
use ::safetensors::tensor::{Dtype as StDtype, SafeTensors};
use dfdx::prelude::*;
use dfdx_flows::checkpoint::load_weights;
use dfdx_flows::params::{named_gradients, tensor_entries};
use dfdx_flows::prelude::*;
use std::path::{Path, PathBuf};

type Dev = Cpu;
type Cb<const HIDDEN: usize, const INVERT: bool, E> = CbOn<HIDDEN, INVERT, E, Dev>;
type CbOn<const HIDDEN: usize, const INVERT: bool, E, D> =
    CheckerboardCoupling<1, 28, 28, HIDDEN, INVERT, E, D>;
type InnerVarDeq<E> = VariationalDequantization<
    1,
    28,
    28,
    (
        CondCheckerboardCoupling<1, 28, 28, 4, false, E, Dev>,
        CondCheckerboardCoupling<1, 28, 28, 4, true, E, Dev>,
        CondCheckerboardCoupling<1, 28, 28, 4, false, E, Dev>,
        CondCheckerboardCoupling<1, 28, 28, 4, true, E, Dev>,
    ),
>;

/// `create_simple_flow(use_vardeq=False, c_hidden=8)`.
type SmallSimple<E> = SmallSimpleOn<E, Dev>;
type SmallSimpleOn<E, D> = Chain<(
    Dequantization<1, 28, 28>,
    CbOn<8, false, E, D>,
    CbOn<8, true, E, D>,
    CbOn<8, false, E, D>,
    CbOn<8, true, E, D>,
    CbOn<8, false, E, D>,
    CbOn<8, true, E, D>,
    CbOn<8, false, E, D>,
    CbOn<8, true, E, D>,
)>;

/// `create_simple_flow(use_vardeq=True, c_hidden=8, vardeq_c_hidden=4)`.
type SmallVarDeq<E> = Chain<(
    InnerVarDeq<E>,
    Cb<8, false, E>,
    Cb<8, true, E>,
    Cb<8, false, E>,
    Cb<8, true, E>,
    Cb<8, false, E>,
    Cb<8, true, E>,
    Cb<8, false, E>,
    Cb<8, true, E>,
)>;

/// `create_multiscale_flow(c_hidden=(8, 12, 16), vardeq_c_hidden=4)`.
type SmallMultiscale<E> = Chain<(
    InnerVarDeq<E>,
    Cb<8, false, E>,
    Cb<8, true, E>,
    Squeeze<1, 28, 28>,
    ChannelCoupling<4, 14, 14, 12, false, E, Dev>,
    ChannelCoupling<4, 14, 14, 12, true, E, Dev>,
    Split<4, 14, 14>,
    Squeeze<2, 14, 14>,
    ChannelCoupling<8, 7, 7, 16, false, E, Dev>,
    ChannelCoupling<8, 7, 7, 16, true, E, Dev>,
    ChannelCoupling<8, 7, 7, 16, false, E, Dev>,
    ChannelCoupling<8, 7, 7, 16, true, E, Dev>,
)>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// Reads tensor `name` of a fixture file as f64 values (f32 or f64 in the file).
fn read(file: &str, name: &str) -> Vec<f64> {
    read_path(&fixture(file), name)
}

fn read_path(path: &Path, name: &str) -> Vec<f64> {
    let file = path.display();
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let view = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("{file}: {name}: {e:?}"));
    let data = view.data();
    match view.dtype() {
        StDtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        StDtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{file}: {name}: unexpected dtype {other:?}"),
    }
}

/// The flow `F` (f32) with the reference's weights of `kind` loaded, and the same in f64.
fn load<F>(kind: &str) -> (ImageFlow<F>, ImageFlow<F::To<f64, Dev>>)
where
    F: Flow<f32, Dev, In = Img<1, 28, 28>>,
    F::To<f64, Dev>: Flow<f64, Dev, In = Img<1, 28, 28>>,
{
    let dev: Dev = Default::default();
    let mut flow = ImageFlow::<F>::build(&dev);
    let path = fixture(&format!("{kind}_weights.safetensors"));
    // The masks we build must be the tutorial's: compare them before loading overwrites them.
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.safetensors");
    flow.save_safetensors(&ours).unwrap();
    let masks: Vec<String> = tensor_entries(&flow)
        .into_iter()
        .filter(|e| e.name.ends_with(".mask"))
        .map(|e| e.name)
        .collect();
    // Glow has no masks; the tutorial's models do, and must have the tutorial's.
    assert!(!masks.is_empty() || kind == "glow");
    for name in &masks {
        assert_eq!(
            read_path(&ours, name),
            read_path(&path, name),
            "{kind}: mask {name} differs"
        );
    }
    load_weights(&path, &mut flow).unwrap_or_else(|e| panic!("{e}"));
    let flow64 = ImageFlow::new(flow.flows.to_dtype::<f64>());
    (flow, flow64)
}

fn images_and_noise(kind: &str) -> (Vec<f64>, Vec<f64>) {
    let file = format!("{kind}_inputs.safetensors");
    (read(&file, "images"), read(&file, "noise"))
}

fn check_log_px<F>(kind: &str)
where
    F: Flow<f32, Dev, In = Img<1, 28, 28>>,
    F::To<f64, Dev>: Flow<f64, Dev, In = Img<1, 28, 28>>,
{
    let dev: Dev = Default::default();
    let (flow, flow64) = load::<F>(kind);
    let (images, noise) = images_and_noise(kind);
    let file = format!("{kind}_inputs.safetensors");
    let (ref32, ref64) = (read(&file, "log_px_f32"), read(&file, "log_px_f64"));
    let n = ref64.len();
    assert_eq!(images.len(), n * 784);

    // f32, as PyTorch's float32 model: ≤ 1e-4 relative.
    let x = dev.tensor_from_vec(
        images.iter().map(|&v| v as f32).collect(),
        Img::<1, 28, 28>::with_batch(n),
    );
    let mut ctx = FlowCtx::with_noise(noise.iter().map(|&v| v as f32).collect());
    let ours32 = flow.log_likelihood(x, &mut ctx).unwrap().as_vec();
    for i in 0..n {
        let (a, b) = (ours32[i] as f64, ref32[i]);
        assert!(
            ((a - b) / b).abs() <= 1e-4,
            "{kind} f32 image {i}: ours {a}, PyTorch {b}"
        );
        assert!(((a - ref64[i]) / ref64[i]).abs() <= 1e-4);
    }

    // f64, as PyTorch's float64 model: the same computation, agreement to rounding.
    let x = dev.tensor_from_vec(images.clone(), Img::<1, 28, 28>::with_batch(n));
    let mut ctx = FlowCtx::with_noise(noise.clone());
    let ours64 = flow64.log_likelihood(x, &mut ctx).unwrap().as_vec();
    for i in 0..n {
        let (a, b) = (ours64[i], ref64[i]);
        assert!(
            ((a - b) / b).abs() <= 1e-10,
            "{kind} f64 image {i}: ours {a}, PyTorch {b}"
        );
    }
    let bpd = read(&file, "bpd_f64");
    for i in 0..n {
        let ours = -ours64[i] * std::f64::consts::LOG2_E / 784.0;
        assert!((ours - bpd[i]).abs() <= 1e-9, "{kind} bpd {i}");
    }
}

/// Glow (issue 19), reduced: `GlowFlow` with 2 steps per level and networks of 8 channels,
/// against `benches/reference/glow_flows.py` (`export_glow_fixtures.py`): ActNorm initialised
/// there from the 8 images, then every parameter moved off its start.
#[test]
fn glow_log_px_matches_pytorch() {
    check_log_px::<GlowFlow<f32, Dev, 2, 8>>("glow");
}

#[test]
fn simple_flow_log_px_matches_pytorch() {
    check_log_px::<SmallSimple<f32>>("simple");
}

#[test]
fn vardeq_flow_log_px_matches_pytorch() {
    check_log_px::<SmallVarDeq<f32>>("vardeq");
}

#[test]
fn multiscale_flow_log_px_matches_pytorch() {
    check_log_px::<SmallMultiscale<f32>>("multiscale");
}

#[test]
fn simple_flow_samples_from_z_init_match_pytorch() {
    let dev: Dev = Default::default();
    let (flow, flow64) = load::<SmallSimple<f32>>("simple");
    let z = read("simple_sample.safetensors", "z_init");
    let n = z.len() / 784;
    let reference = read("simple_sample.safetensors", "samples");

    let z32 = dev.tensor_from_vec(
        z.iter().map(|&v| v as f32).collect(),
        Img::<1, 28, 28>::with_batch(n),
    );
    let ours = flow
        .sample(&dev, n, Some(z32), &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    let differ: Vec<f64> = ours
        .iter()
        .zip(&reference)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .filter(|&d| d != 0.0)
        .collect();
    assert!(
        differ.iter().all(|&d| d <= 1.0),
        "f32 samples differ by more than one level: {differ:?}"
    );
    assert!(
        differ.len() as f64 <= 0.001 * reference.len() as f64,
        "f32: {} of {} pixels differ",
        differ.len(),
        reference.len()
    );

    let z64 = dev.tensor_from_vec(z, Img::<1, 28, 28>::with_batch(n));
    let ours64 = flow64
        .sample(&dev, n, Some(z64), &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    assert_eq!(
        ours64,
        read("simple_sample.safetensors", "samples_f64"),
        "f64 samples differ from PyTorch's float64 samples"
    );
}

#[derive(serde::Deserialize)]
struct FullModel {
    num_params: usize,
    state_dict: Vec<(String, Vec<usize>)>,
}

/// The full-size models have exactly the tensors of the PyTorch `state_dict`, same names and
/// shapes, so a `state_dict` exported to safetensors loads with no renaming.
#[test]
fn full_models_have_the_state_dict_names_and_shapes() {
    let dev: Dev = Default::default();
    let json = std::fs::read_to_string(fixture("full_tensors.json")).unwrap();
    #[derive(serde::Deserialize)]
    struct Fixture {
        models: std::collections::HashMap<String, FullModel>,
    }
    let models = serde_json::from_str::<Fixture>(&json).unwrap().models;
    let ours = |entries: Vec<dfdx_flows::params::TensorEntry>| {
        let mut v: Vec<(String, Vec<usize>)> =
            entries.into_iter().map(|e| (e.name, e.shape)).collect();
        v.sort();
        v
    };
    let theirs = |kind: &str| {
        let mut v = models[kind].state_dict.clone();
        v.sort();
        v
    };
    let simple = simple_flow::<f32, _>(&dev).unwrap();
    assert_eq!(ours(tensor_entries(&simple)), theirs("simple"));
    assert_eq!(simple.num_trainable_params(), models["simple"].num_params);
    let vardeq = vardeq_flow::<f32, _>(&dev).unwrap();
    assert_eq!(ours(tensor_entries(&vardeq)), theirs("vardeq"));
    assert_eq!(vardeq.num_trainable_params(), models["vardeq"].num_params);
    let multiscale = multiscale_flow::<f32, _>(&dev).unwrap();
    assert_eq!(ours(tensor_entries(&multiscale)), theirs("multiscale"));
    assert_eq!(
        multiscale.num_trainable_params(),
        models["multiscale"].num_params
    );
}

struct SmallSimpleModel;
impl dfdx_flows::cli::CliModel for SmallSimpleModel {
    type Flow<D: FlowDevice<f32>> = SmallSimpleOn<f32, D>;
    fn build<D: FlowDevice<f32>>(dev: &D) -> Result<ImageFlow<Self::Flow<D>>, D::Err> {
        ImageFlow::try_build(dev)
    }
}

/// `loglik` (the command line shared by the examples) on the fixture's weights and inputs gives
/// the library's numbers, which are PyTorch's.
#[test]
fn loglik_command_matches_the_library_and_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loglik.json");
    let weights = fixture("simple_weights.safetensors");
    let inputs = fixture("simple_inputs.safetensors");
    dfdx_flows::cli::run_from::<SmallSimpleModel, _, _>(
        "simple",
        [
            "simple".as_ref(),
            "loglik".as_ref(),
            "--weights".as_ref(),
            weights.as_os_str(),
            "--inputs".as_ref(),
            inputs.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let results: dfdx_flows::cli::LoglikResults =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    let dev: Dev = Default::default();
    let (flow, _) = load::<SmallSimple<f32>>("simple");
    let (images, noise) = images_and_noise("simple");
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let library =
        dfdx_flows::cli::log_likelihoods(&flow, &dev, &f32s(&images), &f32s(&noise)).unwrap();
    assert_eq!(results.log_px, library);
    let reference = read("simple_inputs.safetensors", "log_px_f32");
    for (ours, theirs) in results.log_px.iter().zip(&reference) {
        assert!(((ours - theirs) / theirs).abs() <= 1e-4);
    }
    for (b, l) in results.bpd.iter().zip(&results.log_px) {
        assert!((b + l * std::f64::consts::LOG2_E / 784.0).abs() < 1e-12);
    }

    // Bad inputs: one clear error, no panic.
    let err = dfdx_flows::cli::run_from::<SmallSimpleModel, _, _>(
        "simple",
        [
            "simple".as_ref(),
            "loglik".as_ref(),
            "--weights".as_ref(),
            weights.as_os_str(),
            "--inputs".as_ref(),
            weights.as_os_str(),
        ],
    )
    .unwrap_err();
    assert!(format!("{err:?}").contains("no tensor `images`"), "{err:?}");
    let err = dfdx_flows::cli::run_from::<SmallSimpleModel, _, _>(
        "simple",
        [
            "simple".as_ref(),
            "loglik".as_ref(),
            "--weights".as_ref(),
            fixture("multiscale_weights.safetensors").as_os_str(),
            "--inputs".as_ref(),
            inputs.as_os_str(),
        ],
    )
    .unwrap_err();
    assert!(format!("{err:?}").contains("tensor"), "{err:?}");
}

/// The mean bpd of `images` with fixed `noise` (the training loss) and its gradient with
/// respect to every parameter of `flow`.
fn bpd_gradients<E: FlowDtype, F: Flow<E, Dev, In = Img<1, 28, 28>>>(
    flow: &ImageFlow<F>,
    images: &[f64],
    noise: &[f64],
) -> (f64, Vec<(String, Vec<f64>)>)
where
    Dev: FlowDevice<E>,
{
    let dev: Dev = Default::default();
    let cast = |v: &[f64]| -> Vec<E> { v.iter().map(|&x| E::from_f64(x).unwrap()).collect() };
    let n = images.len() / 784;
    let x = dev.tensor_from_vec(cast(images), Img::<1, 28, 28>::with_batch(n));
    let grads = flow.alloc_grads();
    let mut ctx = FlowCtx::with_noise(cast(noise));
    let loss = flow.bpd(x.traced(grads), &mut ctx).unwrap();
    let value = loss.array().to_f64().unwrap();
    let grads = loss.backward();
    (value, named_gradients(flow, &grads).unwrap())
}

/// `‖ours − theirs‖ / ‖theirs‖`.
fn relative_difference(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    let diff: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = theirs.iter().map(|b| b * b).sum::<f64>().sqrt();
    diff / norm
}

/// Every parameter gradient of the mean bpd, in f64 and in f32, against PyTorch's float64
/// gradients of the same loss (same weights, images and noise): ≤ 1e-8 and ≤ 1e-3 relative per
/// tensor, by the norm of the difference. This checks every backward pass (the fused
/// conditioner network, the affine coupling op, the convolutions with Winograd, variational
/// dequantization, squeeze and split) against an independent implementation.
fn check_gradients<F>(kind: &str)
where
    F: Flow<f32, Dev, In = Img<1, 28, 28>>,
    F::To<f64, Dev>: Flow<f64, Dev, In = Img<1, 28, 28>>,
{
    let (flow, flow64) = load::<F>(kind);
    let (images, noise) = images_and_noise(kind);
    let file = format!("{kind}_grads.safetensors");
    let reference_loss = read(&file, "mean_bpd")[0];
    let bytes = std::fs::read(fixture(&file)).unwrap();
    let in_file = SafeTensors::deserialize(&bytes).unwrap().len() - 1;

    let (loss64, grads64) = bpd_gradients(&flow64, &images, &noise);
    assert!(
        ((loss64 - reference_loss) / reference_loss).abs() <= 1e-12,
        "{kind}: mean bpd {loss64} vs PyTorch {reference_loss}"
    );
    assert_eq!(grads64.len(), in_file, "{kind}: parameters with a gradient");
    let mut worst = (0.0, String::new());
    for (name, ours) in &grads64 {
        let rel = relative_difference(ours, &read(&file, name));
        assert!(
            rel <= 1e-8,
            "{kind} f64: gradient of {name} differs by {rel:e}"
        );
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    println!("{kind} f64: worst gradient {} at {:e}", worst.1, worst.0);

    let (loss32, grads32) = bpd_gradients(&flow, &images, &noise);
    assert!(((loss32 - reference_loss) / reference_loss).abs() <= 1e-5);
    assert_eq!(grads32.len(), in_file);
    let mut worst = (0.0, String::new());
    for (name, ours) in &grads32 {
        let rel = relative_difference(ours, &read(&file, name));
        assert!(
            rel <= 1e-3,
            "{kind} f32: gradient of {name} differs by {rel:e}"
        );
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    println!("{kind} f32: worst gradient {} at {:e}", worst.1, worst.0);
}

#[test]
fn simple_flow_gradients_match_pytorch() {
    check_gradients::<SmallSimple<f32>>("simple");
}

#[test]
fn vardeq_flow_gradients_match_pytorch() {
    check_gradients::<SmallVarDeq<f32>>("vardeq");
}

#[test]
fn multiscale_flow_gradients_match_pytorch() {
    check_gradients::<SmallMultiscale<f32>>("multiscale");
}
