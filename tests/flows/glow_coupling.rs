//! Glow's affine coupling and its network (issue 19): exactness, log-determinant, gradients,
//! a fresh layer's known output, and the network's ActNorms initialised with the coupling.
use dfdx::prelude::*;
use dfdx_flows::params::tensor_entries;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, perturb_params};

type Coupling = GlowCoupling<4, 3, 3, 8, f64, Cpu>;

#[test]
fn glow_coupling_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(1);
    let mut layer = dev.build_module::<Coupling, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let report = check_flow(&layer, &x).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    // conv_in (2), norm_in (2), conv_mid (2), norm_mid (2), conv_out (3) trainable tensors.
    assert!(report.gradients_checked >= 11 * 4 - 8, "{report:?}");
}

/// With the last convolution at zero, `t = 0` and `s = sigmoid(2)`: the first half passes,
/// the second is scaled by sigmoid(2), and the log-determinant is its log times C/2·H·W.
#[test]
fn a_fresh_glow_coupling_scales_the_second_half_by_sigmoid_of_two() {
    let dev = Cpu::seed_from_u64(2);
    let layer = dev.build_module::<Coupling, f64>();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let (y, ldj) = layer
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    let s = 1.0 / (1.0 + (-2.0f64).exp());
    let (xs, ys) = (x.as_vec(), y.as_vec());
    for (i, (a, b)) in xs.iter().zip(&ys).enumerate() {
        let want = if (i % 36) < 18 { *a } else { a * s };
        assert!((b - want).abs() < 1e-14, "{i}: {b} vs {want}");
    }
    for l in ldj.as_vec() {
        assert!((l - 18.0 * s.ln()).abs() < 1e-12);
    }
}

#[test]
fn glow_coupling_initialises_its_network_once() {
    let dev = Cpu::seed_from_u64(3);
    let mut layer = dev.build_module::<Coupling, f64>();
    assert!(layer.needs_initialization());
    let names: Vec<String> = tensor_entries(&layer).into_iter().map(|e| e.name).collect();
    assert!(
        names.contains(&"net.norm_in.initialized".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"net.conv_out.logscale".to_string()),
        "{names:?}"
    );
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(4));
    layer
        .try_initialize(x.clone() * 3.0 + 1.0, &mut FlowCtx::default())
        .unwrap();
    assert!(!layer.needs_initialization());
    let loc = layer.net.norm_mid.loc.as_vec();
    assert!(loc.iter().any(|v| *v != 0.0));
    layer.try_initialize(x, &mut FlowCtx::default()).unwrap();
    assert_eq!(layer.net.norm_mid.loc.as_vec(), loc, "initialised once");
}

/// A Glow step (ActNorm, 1×1 convolution, coupling) repeated, in a model with dequantization
/// and a learned-prior split, trains for a few steps in f32 and lowers the bpd.
#[test]
fn a_small_glow_trains_in_f32() {
    type Step4 = Chain<(
        ActNorm<4, 2, 2, f32, Cpu>,
        InvConv1x1<4, 2, 2, f32, Cpu>,
        GlowCoupling<4, 2, 2, 8, f32, Cpu>,
    )>;
    type Small = Chain<(
        Dequantization<1, 4, 4>,
        Squeeze<1, 4, 4>,
        Repeat<Step4, 2>,
        SplitPrior<4, 2, 2, f32, Cpu>,
    )>;
    let dev = Cpu::seed_from_u64(4);
    let mut model = ImageFlow::<Small>::build(&dev);
    let images: Vec<f32> = (0..16 * 16).map(|i| ((i * 37) % 256) as f32).collect();
    let x = dev.tensor_from_vec(images, Img::<1, 4, 4>::with_batch(16));
    let noise = || FlowCtx::with_noise(vec![0.5f32; 16 * 16]);
    model.initialize(x.clone(), &mut noise()).unwrap();
    assert!(!model.flows.needs_initialization());
    let before = model.bpd(x.clone(), &mut noise()).unwrap().array();
    let mut adam = dfdx_flows::optim::Adam::new(1e-2);
    let mut grads = model.alloc_grads();
    for _ in 0..10 {
        let loss = model.bpd(x.clone().traced(grads), &mut noise()).unwrap();
        grads = loss.backward();
        adam.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    let after = model.bpd(x, &mut noise()).unwrap().array();
    assert!(after < before - 0.1, "{before} -> {after}");
}

type Additive = AdditiveCoupling<4, 3, 3, 8, f64, Cpu>;

#[test]
fn additive_coupling_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let mut layer = dev.build_module::<Additive, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let report = check_flow(&layer, &x).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 11 * 4 - 8, "{report:?}");
}

/// The first half passes unchanged, the second is shifted by the network of the first, and the
/// log-determinant stays 0 whatever the parameters.
#[test]
fn additive_coupling_shifts_the_second_half_and_keeps_the_volume() {
    let dev = Cpu::seed_from_u64(6);
    let mut layer = dev.build_module::<Additive, f64>();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let fresh = layer
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    assert_eq!(
        fresh.0.as_vec(),
        x.as_vec(),
        "a fresh layer is the identity"
    );
    perturb_params(&mut layer, 0.5).unwrap();
    let (y, ldj) = layer
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    assert_eq!(ldj.as_vec(), vec![0.0; 2]);
    let (xs, ys) = (x.as_vec(), y.as_vec());
    let first = |v: &[f64]| -> Vec<f64> { v.chunks(18).step_by(2).flatten().copied().collect() };
    assert_eq!(first(&xs), first(&ys), "the conditioning half passes");
    let a = dev.tensor_from_vec(first(&xs), Img::<2, 3, 3>::with_batch(2));
    let shift = layer.net.try_apply(a).unwrap();
    let want: Vec<f64> = xs
        .chunks(18)
        .skip(1)
        .step_by(2)
        .flatten()
        .zip(shift.as_vec())
        .map(|(b, t)| b + t)
        .collect();
    let got: Vec<f64> = ys
        .chunks(18)
        .skip(1)
        .step_by(2)
        .flatten()
        .copied()
        .collect();
    assert!(want.iter().any(|v| v.abs() > 0.0));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}
