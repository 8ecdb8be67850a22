//! ActNorm (Glow, issue 19): exactness, its data-dependent initialisation, the guard against a
//! constant channel, and an initialisation that survives checkpoints and resuming.
use dfdx::prelude::*;
use dfdx_flows::checkpoint;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, perturb_params};
use dfdx_flows::train::{train, RunDir, TrainConfig};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

type Norm = ActNorm<3, 4, 4, f64, Cpu>;

/// Images whose channels have different means and spreads (channel c: mean 2c − 1, spread c + 1).
fn spread_batch(dev: &Cpu, n: usize) -> Tensor<Img<3, 4, 4>, f64, Cpu> {
    let noise: Tensor<Img<3, 4, 4>, f64, Cpu> =
        dev.sample_normal_like(&Img::<3, 4, 4>::with_batch(n));
    let noise = noise.as_vec();
    let values = noise
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / 16) % 3;
            (2 * c) as f64 - 1.0 + v * (c + 1) as f64
        })
        .collect();
    dev.tensor_from_vec(values, Img::<3, 4, 4>::with_batch(n))
}

fn channel_moments(values: &[f64], c: usize) -> (f64, f64) {
    let xs: Vec<f64> = values
        .chunks_exact(48)
        .flat_map(|image| image[c * 16..(c + 1) * 16].to_vec())
        .collect();
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    (mean, var)
}

#[test]
fn actnorm_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(1);
    let mut layer = dev.build_module::<Norm, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    assert!(layer.loc.as_vec().iter().all(|v| *v != 0.0));
    let report = check_flow(&layer, &spread_batch(&dev, 2)).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 6, "{report:?}");
}

#[test]
fn actnorm_initialises_to_zero_mean_and_unit_variance_once() {
    let dev = Cpu::seed_from_u64(2);
    let mut layer = dev.build_module::<Norm, f64>();
    assert!(layer.needs_initialization() && !layer.is_initialized());
    let x = spread_batch(&dev, 8);
    let y = layer
        .try_initialize(x.clone(), &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    assert!(layer.is_initialized() && !layer.needs_initialization());
    for c in 0..3 {
        let (mean, var) = channel_moments(&y, c);
        assert!(mean.abs() < 1e-12, "channel {c}: mean {mean}");
        assert!((var - 1.0).abs() < 1e-12, "channel {c}: variance {var}");
    }
    // What it returned is the forward pass of the initialised layer.
    let ldj = dev.zeros_like(&(8,));
    let (z, _) = layer.try_forward(x, ldj, &mut FlowCtx::default()).unwrap();
    assert_eq!(z.as_vec(), y);
    // A second batch does not initialise it again.
    let (loc, logs) = (layer.loc.as_vec(), layer.logs.as_vec());
    layer
        .try_initialize(spread_batch(&dev, 8), &mut FlowCtx::default())
        .unwrap();
    assert_eq!((layer.loc.as_vec(), layer.logs.as_vec()), (loc, logs));
}

/// A constant channel (an all-black border, say) has standard deviation 0: dividing by it would
/// give an infinite scale (FrEIA #121). It keeps the scale 1 and is only centred.
#[test]
fn actnorm_keeps_scale_one_on_a_constant_channel() {
    let dev = Cpu::seed_from_u64(3);
    let mut layer = dev.build_module::<Norm, f64>();
    let mut values = spread_batch(&dev, 4).as_vec();
    for image in values.chunks_exact_mut(48) {
        image[16..32].fill(5.0);
    }
    let x = dev.tensor_from_vec(values, Img::<3, 4, 4>::with_batch(4));
    let y = layer
        .try_initialize(x, &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    assert_eq!(layer.logs.as_vec()[1], 0.0);
    assert_eq!(layer.loc.as_vec()[1], -5.0);
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(channel_moments(&y, 1), (0.0, 0.0));
    let (_, var0) = channel_moments(&y, 0);
    assert!((var0 - 1.0).abs() < 1e-12);
}

#[test]
fn actnorm_rejects_batches_it_cannot_learn_from_and_stays_as_it_was() {
    let dev = Cpu::seed_from_u64(4);
    let mut layer = dev.build_module::<Norm, f64>();
    let empty = dev.zeros_like(&Img::<3, 4, 4>::with_batch(0));
    let err = layer.init_from_batch(&empty).unwrap_err();
    assert!(err.to_string().contains("at least one image"), "{err}");
    let mut values = spread_batch(&dev, 2).as_vec();
    values[40] = f64::NAN;
    let x = dev.tensor_from_vec(values, Img::<3, 4, 4>::with_batch(2));
    let err = layer
        .try_initialize(x, &mut FlowCtx::default())
        .unwrap_err();
    assert!(err.to_string().contains("not finite (index 40)"), "{err}");
    assert!(layer.needs_initialization());
    assert!(layer.loc.as_vec().iter().all(|v| *v == 0.0));
}

/// A model is never initialised twice (nflows #4): not by the trainer's first step, not after
/// loading a checkpoint, not when resuming. The tutorial's models have nothing to initialise,
/// and `initialize` leaves them untouched.
type Tiny = Chain<(
    Dequantization<1, 8, 8>,
    ActNorm<1, 8, 8, f32, Cpu>,
    CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
    ActNorm<1, 8, 8, f32, Cpu>,
)>;

fn pixels(n: usize, offset: usize) -> Vec<u8> {
    (0..n * 64)
        .map(|i| (((i + offset) * 37) % 251) as u8)
        .collect()
}

#[test]
fn actnorm_is_initialised_by_the_trainer_once_and_kept_in_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Cpu::seed_from_u64(5);
    let mut model = ImageFlow::new(dev.build_module::<Tiny, f32>());
    assert!(model.flows.needs_initialization());
    let config = TrainConfig {
        epochs: 1,
        batch_size: 16,
        samples: 4,
        ..TrainConfig::default()
    };
    let run = RunDir(tmp.path().join("run"));
    let never = Arc::new(AtomicBool::new(false));
    let (train_px, val_px) = (pixels(32, 0), pixels(16, 5));
    train(
        &mut model,
        "tiny",
        &dev,
        &train_px,
        &val_px,
        &config,
        &run,
        false,
        never.clone(),
    )
    .unwrap();
    assert!(!model.flows.needs_initialization());
    let first = &model.flows.0 .1;
    assert!(first.logs.as_vec()[0] != 0.0 && model.flows.0 .3.logs.as_vec()[0] != 0.0);

    // Loaded into a fresh model: initialised, with the trained values.
    let mut loaded = ImageFlow::new(dev.build_module::<Tiny, f32>());
    let (adam, meta) = checkpoint::load(&run.checkpoints(), "last", "tiny", &mut loaded).unwrap();
    assert!(!loaded.flows.needs_initialization());
    assert_eq!(loaded.flows.0 .1.loc.as_vec(), first.loc.as_vec());
    assert_eq!(
        loaded.flows.0 .3.logs.as_vec(),
        model.flows.0 .3.logs.as_vec()
    );
    // `initialize` on another batch leaves a loaded model alone.
    let x = dev.tensor_from_vec(
        pixels(4, 99).iter().map(|p| *p as f32).collect(),
        Img::<1, 8, 8>::with_batch(4),
    );
    loaded.initialize(x, &mut FlowCtx::default()).unwrap();
    assert_eq!(loaded.flows.0 .1.loc.as_vec(), first.loc.as_vec());
    // A fresh model and an empty batch: an error, not a panic, and nothing initialised.
    let mut fresh = ImageFlow::new(dev.build_module::<Tiny, f32>());
    let empty = dev.zeros_like(&Img::<1, 8, 8>::with_batch(0));
    let err = fresh
        .initialize(empty, &mut FlowCtx::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("initialisation from data needs"),
        "{err}"
    );
    assert!(fresh.flows.needs_initialization());

    // Resuming for a second epoch continues from the saved values, not re-initialised ones:
    // with a shift no initialisation would give (-7) written into the checkpoint, two steps of
    // Adam at 1e-3 leave it near -7.
    loaded.flows.0 .1.loc.copy_from(&[-7.0]);
    checkpoint::save(&run.checkpoints(), &["last"], &loaded, &adam, &meta).unwrap();
    let mut resumed = ImageFlow::new(dev.build_module::<Tiny, f32>());
    let two = TrainConfig {
        epochs: 2,
        ..config.clone()
    };
    train(
        &mut resumed,
        "tiny",
        &dev,
        &train_px,
        &val_px,
        &two,
        &run,
        true,
        never,
    )
    .unwrap();
    let after = resumed.flows.0 .1.loc.as_vec()[0];
    assert!(
        (after + 7.0).abs() < 0.1,
        "epoch 2 moved loc from -7 to {after}: re-initialised?"
    );
}

#[test]
fn models_without_actnorm_have_nothing_to_initialise() {
    let dev = Cpu::seed_from_u64(6);
    let mut model = multiscale_flow::<f32, Cpu>(&dev).unwrap();
    assert!(!model.flows.needs_initialization());
    let bpd = |model: &ImageFlow<MultiscaleFlow<f32, Cpu>>| {
        let x = dev.zeros_like(&Img::<1, 28, 28>::with_batch(2));
        let mut ctx = FlowCtx::with_noise(vec![0.5; 2 * 784]);
        model.bpd(x, &mut ctx).unwrap().array()
    };
    let before = bpd(&model);
    let x = dev.ones_like(&Img::<1, 28, 28>::with_batch(2));
    model.initialize(x, &mut FlowCtx::default()).unwrap();
    assert_eq!(bpd(&model), before);
}
