//! Every flow layer: exact inverse in f64 and log-determinant against a brute-force Jacobian.
use crate::common::*;
use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;

type Dev = Cpu;

fn dev(seed: u64) -> Dev {
    Cpu::seed_from_u64(seed)
}

/// Runs a flow's density direction without a tape: (z, ldj) as plain vectors.
fn forward<F: Flow<f64, Dev>>(
    flow: &F,
    dev: &Dev,
    x: &[f64],
    batch: usize,
    ctx: &mut FlowCtx<f64>,
) -> (Vec<f64>, Vec<f64>) {
    let x = dev.tensor_from_vec(x.to_vec(), F::In::with_batch(batch));
    let ldj = dev.zeros_like(&(batch,));
    let (z, ldj) = flow.try_forward(x, ldj, ctx).unwrap();
    (z.as_vec(), ldj.as_vec())
}

fn inverse<F: Flow<f64, Dev>>(
    flow: &F,
    dev: &Dev,
    z: &[f64],
    batch: usize,
    ctx: &mut FlowCtx<f64>,
) -> Vec<f64> {
    let z = dev.tensor_from_vec(z.to_vec(), F::Out::with_batch(batch));
    flow.try_inverse(z, ctx).unwrap().as_vec()
}

fn random_input(dev: &Dev, n: usize, scale: f64) -> Vec<f64> {
    let t: Tensor<(usize,), f64, Dev> = dev.sample_normal_like(&(n,));
    t.as_vec().into_iter().map(|v| v * scale).collect()
}

/// Checks `inverse(forward(x)) == x` (≤ 1e-9) and `ldj` against the brute-force log-det for
/// each image of a batch of 2.
fn check_bijection<F: Flow<f64, Dev>>(flow: &F, dev: &Dev) {
    let numel = <F::In as ImgShape>::NUMEL;
    assert_eq!(numel, <F::Out as ImgShape>::NUMEL);
    let x = random_input(dev, 2 * numel, 1.0);
    let (z, ldj) = forward(flow, dev, &x, 2, &mut FlowCtx::default());
    assert!(
        max_abs_diff(&z, &x) > 1e-3,
        "layer must not be the identity for this test"
    );
    let back = inverse(flow, dev, &z, 2, &mut FlowCtx::default());
    let err = max_abs_diff(&back, &x);
    assert!(err <= 1e-9, "inverse(forward(x)) differs from x by {err:e}");
    for b in 0..2 {
        let image = &x[b * numel..(b + 1) * numel];
        let f = |v: &[f64]| forward(flow, dev, v, 1, &mut FlowCtx::default()).0;
        let brute = brute_force_log_det(&f, image);
        assert_rel_close(ldj[b], brute, 1e-6, "log-determinant");
    }
}

#[test]
fn checkerboard_coupling_inverts_and_has_the_right_log_det() {
    let dev = dev(1);
    let mut layer = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Dev>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    check_bijection(&layer, &dev);
    let mut inverted = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, true, f64, Dev>, f64>();
    perturb_params(&mut inverted, 0.3).unwrap();
    check_bijection(&inverted, &dev);
}

#[test]
fn channel_coupling_inverts_and_has_the_right_log_det() {
    let dev = dev(2);
    let mut layer = dev.build_module::<ChannelCoupling<4, 2, 2, 4, true, f64, Dev>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    check_bijection(&layer, &dev);
    let mut other = dev.build_module::<ChannelCoupling<4, 2, 2, 4, false, f64, Dev>, f64>();
    perturb_params(&mut other, 0.3).unwrap();
    check_bijection(&other, &dev);
}

#[test]
fn fresh_coupling_is_the_identity() {
    let dev = dev(3);
    let layer = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Dev>, f64>();
    let x = random_input(&dev, 32, 1.0);
    let (z, ldj) = forward(&layer, &dev, &x, 2, &mut FlowCtx::default());
    assert_eq!(z, x);
    assert_eq!(ldj, vec![0.0, 0.0]);
}

#[test]
fn coupling_keeps_the_masked_half() {
    let dev = dev(4);
    let mut layer = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Dev>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = random_input(&dev, 16, 1.0);
    let (z, _) = forward(&layer, &dev, &x, 1, &mut FlowCtx::default());
    let mask = Checkerboard::<false>::values::<1, 4, 4>();
    for i in 0..16 {
        if mask[i] == 1.0 {
            assert_eq!(z[i], x[i], "kept pixel {i} changed");
        } else {
            assert_ne!(z[i], x[i], "transformed pixel {i} unchanged");
        }
    }
}

#[test]
fn conditional_coupling_inverts_and_has_the_right_log_det() {
    let dev = dev(5);
    let mut layer =
        dev.build_module::<CondCheckerboardCoupling<1, 4, 4, 4, false, f64, Dev>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let cond = dev.tensor_from_vec(random_input(&dev, 16, 1.0), Img::<1, 4, 4>::with_batch(1));
    let run = |v: &[f64]| {
        let z = dev.tensor_from_vec(v.to_vec(), Img::<1, 4, 4>::with_batch(1));
        let (z, ldj) = layer
            .try_forward_cond(z, dev.zeros_like(&(1,)), &cond)
            .unwrap();
        (z.as_vec(), ldj.as_vec()[0])
    };
    let x = random_input(&dev, 16, 1.0);
    let (z, ldj) = run(&x);
    let back = layer
        .try_inverse_cond(dev.tensor_from_vec(z, Img::<1, 4, 4>::with_batch(1)), &cond)
        .unwrap()
        .as_vec();
    assert!(max_abs_diff(&back, &x) <= 1e-9);
    assert_rel_close(
        ldj,
        brute_force_log_det(&|v| run(v).0, &x),
        1e-6,
        "conditional log-det",
    );
    // The condition matters.
    let other = dev.tensor_from_vec(random_input(&dev, 16, 1.0), Img::<1, 4, 4>::with_batch(1));
    let z_other = layer
        .try_forward_cond(
            dev.tensor_from_vec(x.clone(), Img::<1, 4, 4>::with_batch(1)),
            dev.zeros_like(&(1,)),
            &other,
        )
        .unwrap()
        .0
        .as_vec();
    assert!(max_abs_diff(&z_other, &run(&x).0) > 1e-6);
}

#[test]
fn dequantization_log_det_matches_brute_force() {
    let dev = dev(6);
    let layer = Dequantization::<1, 4, 4>::default();
    let noise: Vec<f64> = (0..16).map(|i| (i as f64 + 0.5) / 16.0).collect();
    let x: Vec<f64> = (0..16).map(|i| (i * 17 % 256) as f64).collect();
    // The layer maps x + u; pixels must be integers, so the Jacobian is taken in the noise u
    // (∂z/∂u = ∂z/∂x for the continuous x + u).
    let f = |u: &[f64]| forward(&layer, &dev, &x, 1, &mut FlowCtx::with_noise(u.to_vec())).0;
    let (_, ldj) = forward(&layer, &dev, &x, 1, &mut FlowCtx::with_noise(noise.clone()));
    assert_rel_close(
        ldj[0],
        brute_force_log_det(&f, &noise),
        1e-6,
        "dequantization log-det",
    );
}

/// Every value 0..=255, in one 1×16×16 image.
fn all_levels() -> Vec<f64> {
    (0..256).map(|v| v as f64).collect()
}

#[test]
fn dequantization_round_trips_every_value_exactly_in_f64() {
    let dev = dev(7);
    let layer = Dequantization::<1, 16, 16>::default();
    let x = all_levels();
    // Random noise, and the extremes of [0, 1).
    for round in 0..20 {
        let noise = match round {
            0 => vec![0.0; 256],
            1 => vec![1.0 - 1e-8; 256],
            _ => random_input(&dev, 256, 1.0)
                .iter()
                .map(|v| v.abs().fract())
                .collect(),
        };
        let (z, _) = forward(&layer, &dev, &x, 1, &mut FlowCtx::with_noise(noise));
        let back = inverse(&layer, &dev, &z, 1, &mut FlowCtx::default());
        assert_eq!(back, x, "round {round}");
    }
}

#[test]
fn dequantization_in_f32_round_trips_random_noise() {
    // f32 loses precision in the logit for noise right at the edges of [0, 1); with noise drawn
    // uniformly the round trip is exact in practice (the tutorial's own f32 version is not).
    let dev = dev(8);
    let layer = Dequantization::<1, 16, 16>::default();
    let x: Vec<f32> = (0..256).map(|v| v as f32).collect();
    let mut mismatches = 0;
    for _ in 0..200 {
        let images = dev.tensor_from_vec(x.clone(), Img::<1, 16, 16>::with_batch(1));
        let (z, _) = layer
            .try_forward(images, dev.zeros_like(&(1,)), &mut FlowCtx::default())
            .unwrap();
        let back = layer
            .try_inverse(z, &mut FlowCtx::default())
            .unwrap()
            .as_vec();
        mismatches += back.iter().zip(&x).filter(|(a, b)| a != b).count();
    }
    assert_eq!(
        mismatches, 0,
        "f32 round trip: {mismatches} of 51200 values off"
    );
}

type TinyVarDeq = VariationalDequantization<
    1,
    4,
    4,
    (
        CondCheckerboardCoupling<1, 4, 4, 4, false, f64, Dev>,
        CondCheckerboardCoupling<1, 4, 4, 4, true, f64, Dev>,
    ),
>;

#[test]
fn variational_dequantization_log_det_matches_brute_force_in_the_noise() {
    // For a fixed image the layer maps the noise u to z through logit, the conditional
    // couplings, sigmoid, (x + ·)/256 and logit; its ldj is log |det ∂z/∂u|.
    let dev = dev(9);
    let mut layer = dev.build_module::<TinyVarDeq, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x: Vec<f64> = (0..16).map(|i| (i * 37 % 256) as f64).collect();
    let noise: Vec<f64> = (0..16)
        .map(|i| 0.05 + 0.9 * ((i * 7 % 16) as f64) / 16.0)
        .collect();
    let f = |u: &[f64]| forward(&layer, &dev, &x, 1, &mut FlowCtx::with_noise(u.to_vec())).0;
    let (z, ldj) = forward(&layer, &dev, &x, 1, &mut FlowCtx::with_noise(noise.clone()));
    assert_rel_close(
        ldj[0],
        brute_force_log_det(&f, &noise),
        1e-6,
        "variational dequantization log-det",
    );
    // Its inverse floors back to the image.
    assert_eq!(inverse(&layer, &dev, &z, 1, &mut FlowCtx::default()), x);
}

#[test]
fn variational_dequantization_noise_depends_on_the_image() {
    let dev = dev(10);
    let mut layer = dev.build_module::<TinyVarDeq, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let noise = vec![0.5; 16];
    let (za, _) = forward(
        &layer,
        &dev,
        &[10.0; 16],
        1,
        &mut FlowCtx::with_noise(noise.clone()),
    );
    let (zb, _) = forward(
        &layer,
        &dev,
        &[200.0; 16],
        1,
        &mut FlowCtx::with_noise(noise.clone()),
    );
    let uniform = Dequantization::<1, 4, 4>::default();
    let (ua, _) = forward(
        &uniform,
        &dev,
        &[10.0; 16],
        1,
        &mut FlowCtx::with_noise(noise.clone()),
    );
    let (ub, _) = forward(
        &uniform,
        &dev,
        &[200.0; 16],
        1,
        &mut FlowCtx::with_noise(noise),
    );
    // With uniform dequantization, equal noise on equal pixels gives equal latents; the learned
    // noise breaks that symmetry per pixel through the conditioning.
    assert!(
        ua.iter().all(|v| (v - ua[0]).abs() < 1e-12)
            && ub.iter().all(|v| (v - ub[0]).abs() < 1e-12)
    );
    assert!(za.iter().any(|v| (v - za[0]).abs() > 1e-6));
    assert!(zb.iter().any(|v| (v - zb[0]).abs() > 1e-6));
}

#[test]
fn squeeze_matches_the_tutorial_example() {
    let dev = dev(11);
    let x: Vec<f64> = (1..=16).map(|v| v as f64).collect();
    let (z, ldj) = forward(&Squeeze::<1, 4, 4>, &dev, &x, 1, &mut FlowCtx::default());
    // The tutorial prints z.permute(0, 2, 3, 1): [[[1, 2, 5, 6], [3, 4, 7, 8]],
    // [[9, 10, 13, 14], [11, 12, 15, 16]]]; here is the same tensor in NCHW order.
    let expected = [1, 3, 9, 11, 2, 4, 10, 12, 5, 7, 13, 15, 6, 8, 14, 16].map(|v| v as f64);
    assert_eq!(z, expected.to_vec());
    assert_eq!(ldj, vec![0.0]);
    assert_eq!(
        inverse(&Squeeze::<1, 4, 4>, &dev, &z, 1, &mut FlowCtx::default()),
        x
    );
}

#[test]
fn squeeze_inverts_with_more_channels_and_has_zero_log_det() {
    let dev = dev(12);
    let layer = Squeeze::<2, 4, 2>;
    let x = random_input(&dev, 2 * 16, 1.0);
    let (z, ldj) = forward(&layer, &dev, &x, 2, &mut FlowCtx::default());
    assert_eq!(ldj, vec![0.0, 0.0]);
    assert_eq!(inverse(&layer, &dev, &z, 2, &mut FlowCtx::default()), x);
    let f = |v: &[f64]| forward(&layer, &dev, v, 1, &mut FlowCtx::default()).0;
    assert_rel_close(
        0.0,
        brute_force_log_det(&f, &x[..16]),
        1e-9,
        "squeeze log-det",
    );
}

#[test]
fn split_scores_the_second_half_and_inverts_with_recorded_latents() {
    let dev = dev(13);
    let layer = Split::<4, 2, 2>;
    let x = random_input(&dev, 2 * 16, 1.0);
    let mut ctx = FlowCtx::recording();
    let (z, ldj) = forward(&layer, &dev, &x, 2, &mut ctx);
    for b in 0..2 {
        let image = &x[b * 16..(b + 1) * 16];
        assert_eq!(
            &z[b * 8..(b + 1) * 8],
            &image[..8],
            "the first half of the channels stays"
        );
        let log_prob: f64 = image[8..]
            .iter()
            .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum();
        assert_rel_close(ldj[b], log_prob, 1e-12, "split log-prior");
    }
    assert_eq!(ctx.latents.len(), 1);
    let back = inverse(&layer, &dev, &z, 2, &mut ctx);
    assert_eq!(back, x);
    assert!(
        ctx.latents.is_empty(),
        "the inverse consumes the recorded latent"
    );
    // Without recorded latents the second half is drawn.
    let drawn = inverse(&layer, &dev, &z, 2, &mut FlowCtx::default());
    assert_eq!(&drawn[..8], &x[..8]);
    assert_ne!(&drawn[8..16], &x[8..16]);
}

#[test]
fn masks_match_the_tutorial() {
    // create_checkerboard_mask(h, w): fmod(x + y, 2) with x the row, y the column.
    let cb = Checkerboard::<false>::values::<2, 8, 8>();
    assert_eq!(cb.len(), 64);
    for y in 0..8 {
        for x in 0..8 {
            assert_eq!(cb[y * 8 + x], ((y + x) % 2) as f64);
        }
    }
    let inv = Checkerboard::<true>::values::<2, 8, 8>();
    assert!(cb.iter().zip(&inv).all(|(a, b)| a + b == 1.0));
    // create_channel_mask(c_in): ones for the first c_in // 2 channels.
    assert_eq!(
        ChannelMask::<false>::values::<8, 7, 7>(),
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        ChannelMask::<true>::values::<8, 7, 7>(),
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(ChannelMask::<false>::values::<3, 1, 1>(), [1.0, 0.0, 0.0]);
    // The buffers of built layers hold them, with the tutorial's shapes.
    let dev = dev(14);
    let layer = dev.build_module::<CheckerboardCoupling<1, 8, 8, 4, true, f64, Dev>, f64>();
    assert_eq!(layer.mask.as_vec(), inv);
    let layer = dev.build_module::<ChannelCoupling<8, 7, 7, 4, false, f64, Dev>, f64>();
    assert_eq!(
        *layer.mask.shape(),
        (Const::<1>, Const::<8>, Const::<1>, Const::<1>)
    );
}
