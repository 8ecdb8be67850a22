//! The trainer's learning-rate warmup and gradient-norm clipping (issue 19: off by default,
//! for models such as Glow that diverge in their first steps without them).
use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::train::{train_with, RunDir, StepReport, TrainConfig, TrainObserver};
use std::sync::atomic::AtomicBool;

type Tiny = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 4, false, f32, Cpu>,
    CheckerboardCoupling<1, 8, 8, 4, true, f32, Cpu>,
)>;

fn data(n: usize, offset: usize) -> Vec<u8> {
    (0..n * 64)
        .map(|i| (((i + offset) * 37) % 251) as u8)
        .collect()
}

#[derive(Default)]
struct Steps(Vec<StepReport>);

impl TrainObserver for Steps {
    fn step(&mut self, step: &StepReport) {
        self.0.push(step.clone());
    }
}

/// Trains a fresh tiny model (64 images, 4 steps per epoch) and returns the steps and the
/// model's validation bpd with fixed noise afterwards.
fn run(config: TrainConfig) -> (Vec<StepReport>, f32) {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Cpu::seed_from_u64(0);
    let mut model = ImageFlow::new(dev.build_module::<Tiny, f32>());
    let mut steps = Steps::default();
    let config = TrainConfig {
        batch_size: 16,
        samples: 4,
        ..config
    };
    train_with(
        &mut model,
        "tiny",
        &dev,
        &data(64, 0),
        &data(16, 7),
        &config,
        &RunDir(tmp.path().join("run")),
        false,
        &AtomicBool::new(false),
        &mut steps,
    )
    .unwrap();
    let x = dev.tensor_from_vec(
        data(8, 3).iter().map(|p| *p as f32).collect(),
        Img::<1, 8, 8>::with_batch(8),
    );
    let bpd = model
        .bpd(x, &mut FlowCtx::with_noise(vec![0.5; 8 * 64]))
        .unwrap()
        .array();
    (steps.0, bpd)
}

#[test]
fn warmup_raises_the_learning_rate_linearly_over_its_steps() {
    let lr = 1e-2;
    let (steps, _) = run(TrainConfig {
        epochs: 2,
        lr,
        warmup_steps: 6,
        ..TrainConfig::default()
    });
    let got: Vec<f64> = steps.iter().map(|s| s.lr / lr).collect();
    // Epoch 1: 1/6 .. 4/6; epoch 2 (StepLR 0.99): 5/6 and 6/6 of 0.99, then 0.99.
    let want = [
        1.0 / 6.0,
        2.0 / 6.0,
        3.0 / 6.0,
        4.0 / 6.0,
        0.99 * 5.0 / 6.0,
        0.99,
        0.99,
        0.99,
    ];
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "step {i}: {g} vs {w}");
    }
    // Without warmup every step of an epoch has the epoch's rate.
    let (plain, _) = run(TrainConfig {
        epochs: 1,
        lr,
        ..TrainConfig::default()
    });
    assert!(plain.iter().all(|s| s.lr == lr));
}

/// With a limit far below the gradients' norm, Adam's steps shrink to almost nothing (its
/// denominator guard ε = 1e-8 then dominates): the trainer applies the limit. A limit far above
/// them changes nothing.
#[test]
fn gradient_clipping_is_applied_by_the_trainer() {
    let config = |max_grad_norm| TrainConfig {
        epochs: 1,
        lr: 1e-2,
        max_grad_norm,
        ..TrainConfig::default()
    };
    let (_, untrained) = {
        let dev = Cpu::seed_from_u64(0);
        let model = ImageFlow::new(dev.build_module::<Tiny, f32>());
        let x = dev.tensor_from_vec(
            data(8, 3).iter().map(|p| *p as f32).collect(),
            Img::<1, 8, 8>::with_batch(8),
        );
        let bpd = model
            .bpd(x, &mut FlowCtx::with_noise(vec![0.5; 8 * 64]))
            .unwrap()
            .array();
        ((), bpd)
    };
    let (_, free) = run(config(None));
    let (_, loose) = run(config(Some(1e9)));
    let (_, tight) = run(config(Some(1e-14)));
    assert_eq!(loose, free);
    assert!(
        (free - untrained).abs() > 1e-3,
        "training moved the bpd: {untrained} -> {free}"
    );
    assert!(
        (tight - untrained).abs() < 1e-4,
        "clipped to 1e-14, the model barely moves: {untrained} -> {tight}"
    );
}
