//! Glow's learned priors (issue 19): the split with a learned prior (exact round trip, the
//! conditional log-density it adds, its gradients, a fresh layer that is the tutorial's split)
//! and the learned top prior (the same checks, and the density of a per-channel normal).
use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, check_flow_with, perturb_params, CheckOptions};

type Prior = SplitPrior<4, 3, 3, f64, Cpu>;

fn batch(dev: &Cpu, n: usize) -> Tensor<Img<4, 3, 3>, f64, Cpu> {
    dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(n))
}

#[test]
fn split_prior_round_trips_and_its_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(1);
    let mut layer = dev.build_module::<Prior, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let opts = CheckOptions {
        // C → C/2 values: no square Jacobian; the density is checked below.
        log_det_check: false,
        ..CheckOptions::default()
    };
    let report = check_flow_with(&layer, &batch(&dev, 2), &opts).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.gradients_checked >= 3 * 4, "{report:?}");
}

/// The log-density added is `Σ log N(z₂; mean, e^{2 logs})` with the mean and log-scale that
/// the kept half predicts, computed here on the host.
#[test]
fn split_prior_adds_the_conditional_log_density_of_the_split_half() {
    let dev = Cpu::seed_from_u64(2);
    let mut layer = dev.build_module::<Prior, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    let x = batch(&dev, 3);
    let values = x.as_vec();
    let (z, ldj) = layer
        .try_forward(x, dev.zeros_like(&(3,)), &mut FlowCtx::default())
        .unwrap();
    let (mean, logs) = layer.mean_and_logs(z.clone()).unwrap();
    let (mean, logs) = (mean.as_vec(), logs.as_vec());
    for (i, got) in ldj.as_vec().iter().enumerate() {
        let split = &values[i * 36 + 18..(i + 1) * 36];
        let want: f64 = (0..18)
            .map(|k| {
                let (m, s) = (mean[i * 18 + k], logs[i * 18 + k]);
                let e = (split[k] - m) * (-s).exp();
                -0.5 * e * e - s - 0.5 * (2.0 * std::f64::consts::PI).ln()
            })
            .sum();
        assert!((got - want).abs() < 1e-10, "image {i}: {got} vs {want}");
    }
    assert!(
        logs.iter().any(|s| s.abs() > 1e-3),
        "a perturbed prior is not standard"
    );
}

#[test]
fn a_fresh_split_prior_is_the_tutorials_split() {
    let dev = Cpu::seed_from_u64(3);
    let layer = dev.build_module::<Prior, f64>();
    let x = batch(&dev, 2);
    let (z1, l1) = layer
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    let (z2, l2) = Split::<4, 3, 3>
        .try_forward(x, dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    assert_eq!(z1.as_vec(), z2.as_vec());
    for (a, b) in l1.as_vec().iter().zip(l2.as_vec()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

#[test]
fn split_prior_samples_its_mean_at_temperature_zero_and_checks_latents() {
    let dev = Cpu::seed_from_u64(4);
    let mut layer = dev.build_module::<Prior, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    let kept = dev.sample_normal_like(&(2, Const::<2>, Const::<3>, Const::<3>));
    let mut cold = FlowCtx {
        temperature: 0.0,
        ..FlowCtx::default()
    };
    let x = layer.try_inverse(kept.clone(), &mut cold).unwrap().as_vec();
    let (mean, _) = layer.mean_and_logs(kept.clone()).unwrap();
    let mean = mean.as_vec();
    for i in 0..2 {
        assert_eq!(&x[i * 36 + 18..(i + 1) * 36], &mean[i * 18..(i + 1) * 18]);
    }
    let mut wrong = FlowCtx::<f64> {
        latents: vec![vec![0.0; 5]],
        ..FlowCtx::default()
    };
    let err = layer.try_inverse(kept, &mut wrong).unwrap_err();
    assert!(
        matches!(
            err,
            FlowError::LatentLength {
                expected: 36,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(wrong.latents.len(), 1, "a rejected latent stays");
}

type Top = LearnedPrior<4, 3, 3, f64, Cpu>;

#[test]
fn learned_prior_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let mut layer = dev.build_module::<Top, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    let report = check_flow(&layer, &batch(&dev, 2)).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 2 * 4, "{report:?}");
}

/// Its log-determinant plus the standard normal log-density of its output is the log-density of
/// the input under `N(mean, e^{2 logs})` per channel, computed here on the host; at temperature
/// 0 it samples the means.
#[test]
fn learned_prior_is_a_per_channel_normal_prior() {
    let dev = Cpu::seed_from_u64(6);
    let mut layer = dev.build_module::<Top, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    let (mean, logs) = (layer.mean.as_vec(), layer.logs.as_vec());
    assert!(logs.iter().all(|s| s.abs() > 1e-4), "{logs:?}");
    let x = batch(&dev, 2);
    let values = x.as_vec();
    let (eps, ldj) = layer
        .try_forward(x, dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let eps = eps.as_vec();
    for (i, l) in ldj.as_vec().iter().enumerate() {
        let image = i * 36..(i + 1) * 36;
        let got = l + eps[image.clone()]
            .iter()
            .map(|e| -0.5 * e * e - half_log_2pi)
            .sum::<f64>();
        let want: f64 = values[image]
            .iter()
            .enumerate()
            .map(|(k, z)| {
                let (m, s) = (mean[k / 9], logs[k / 9]);
                let e = (z - m) * (-s).exp();
                -0.5 * e * e - s - half_log_2pi
            })
            .sum();
        assert!((got - want).abs() < 1e-10, "image {i}: {got} vs {want}");
    }
    let cold = layer
        .try_inverse(
            dev.zeros_like(&Img::<4, 3, 3>::with_batch(1)),
            &mut FlowCtx::default(),
        )
        .unwrap()
        .as_vec();
    for (k, v) in cold.iter().enumerate() {
        assert_eq!(*v, mean[k / 9]);
    }
}
