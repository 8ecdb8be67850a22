//! The invertible 1×1 convolution (Glow, issue 19): exactness, its log-determinant and
//! gradients, and its start from a random rotation.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, perturb_params};

type Mix = InvConv1x1<4, 3, 3, f64, Cpu>;

fn distance_to_identity(a: &[f64], n: usize) -> f64 {
    a.iter()
        .enumerate()
        .map(|(ij, v)| (v - if ij / n == ij % n { 1.0 } else { 0.0 }).abs())
        .fold(0.0, f64::max)
}

fn times_transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|ij| (0..n).map(|k| a[ij / n * n + k] * a[ij % n * n + k]).sum())
        .collect()
}

#[test]
fn invconv_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(1);
    let mut layer = dev.build_module::<Mix, f64>();
    // Away from a rotation: a log-determinant that is not 0, factors of all sizes.
    perturb_params(&mut layer, 0.4).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let report = check_flow(&layer, &x).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 4, "{report:?}");
    let (_, ldj) = layer
        .try_forward(x, dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    assert!(
        ldj.as_vec()[0].abs() > 1e-3,
        "a perturbed layer changes volume"
    );
}

#[test]
fn invconv_starts_from_a_random_rotation() {
    let dev = Cpu::seed_from_u64(2);
    let a = dev.build_module::<Mix, f64>();
    let b = dev.build_module::<Mix, f64>();
    let (wa, wb) = (a.weight_matrix(), b.weight_matrix());
    assert!(distance_to_identity(&times_transpose(&wa, 4), 4) < 1e-12);
    assert!(distance_to_identity(&wa, 4) > 0.1, "not the identity");
    assert!(wa != wb, "each layer draws its own rotation");
    // A rotation keeps volumes: log-determinant 0.
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(3));
    let (_, ldj) = a
        .try_forward(x, dev.zeros_like(&(3,)), &mut FlowCtx::default())
        .unwrap();
    assert!(
        ldj.as_vec().iter().all(|v| v.abs() < 1e-12),
        "{:?}",
        ldj.as_vec()
    );
}

/// In f32 the inverse (from the factors, computed in f64) undoes the forward pass to float
/// precision, also in a chain with ActNorm.
#[test]
fn invconv_and_actnorm_chain_round_trips_in_f32() {
    type Step = Chain<(ActNorm<4, 3, 3, f32, Cpu>, InvConv1x1<4, 3, 3, f32, Cpu>)>;
    let dev = Cpu::seed_from_u64(3);
    let mut step = dev.build_module::<Step, f32>();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(5));
    step.try_initialize(x.clone(), &mut FlowCtx::default())
        .unwrap();
    let (z, _) = step
        .try_forward(x.clone(), dev.zeros_like(&(5,)), &mut FlowCtx::default())
        .unwrap();
    let back = step.try_inverse(z, &mut FlowCtx::default()).unwrap();
    let err = back
        .as_vec()
        .iter()
        .zip(x.as_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "{err}");
}
