//! The tutorial's three models and `ImageFlow`: parameter counts, tensor names, exact
//! invertibility, likelihood bookkeeping, sampling and learning.
use crate::common;

use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use dfdx_flows::params::tensor_entries;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;

type Dev = Cpu;

#[test]
fn parameter_counts_match_the_tutorial() {
    let dev: Cpu = Default::default();
    assert_eq!(
        simple_flow::<f32, _>(&dev).unwrap().num_trainable_params(),
        556_312
    );
    assert_eq!(
        vardeq_flow::<f32, _>(&dev).unwrap().num_trainable_params(),
        628_388
    );
    assert_eq!(
        multiscale_flow::<f32, _>(&dev)
            .unwrap()
            .num_trainable_params(),
        1_711_818
    );
}

#[test]
fn tensor_names_follow_the_pytorch_state_dict() {
    let dev: Cpu = Default::default();
    let entries = tensor_entries(&multiscale_flow::<f32, _>(&dev).unwrap());
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .clone()
    };
    assert_eq!(
        find("flows.0.flows.0.network.nn.1.net.3.weight").shape,
        [32, 32, 1, 1]
    );
    assert_eq!(
        find("flows.0.flows.3.network.nn.0.weight").shape,
        [16, 2, 3, 3]
    );
    assert_eq!(find("flows.0.flows.0.mask").shape, [1, 1, 28, 28]);
    assert!(!find("flows.0.flows.0.mask").trainable);
    assert_eq!(find("flows.1.network.nn.2.gamma").shape, [1, 32, 1, 1]);
    assert_eq!(find("flows.1.scaling_factor").shape, [1]);
    assert_eq!(find("flows.4.mask").shape, [1, 4, 1, 1]);
    assert_eq!(find("flows.5.network.nn.8.weight").shape, [8, 96, 3, 3]);
    assert_eq!(find("flows.11.network.nn.8.bias").shape, [16]);
    assert!(
        !entries.iter().any(|e| e.name.contains("nn.7.")),
        "ConcatELU has no tensors"
    );
    assert!(entries.iter().all(|e| e.name.starts_with("flows.")));
    let trainable: usize = entries
        .iter()
        .filter(|e| e.trainable)
        .map(|e| e.shape.iter().product::<usize>())
        .sum();
    assert_eq!(trainable, 1_711_818);
}

#[test]
fn fresh_conditioners_end_in_a_zero_convolution() {
    let dev: Cpu = Default::default();
    let model = simple_flow::<f32, _>(&dev).unwrap();
    let net = &model.flows.0 .1.network;
    assert!(net.conv_out.weight.as_vec().iter().all(|v| *v == 0.0));
    assert!(net.conv_out.bias.as_vec().iter().all(|v| *v == 0.0));
    assert!(net.conv_in.weight.as_vec().iter().any(|v| *v != 0.0));
    let bound = 1.0 / (9.0f32).sqrt(); // fan_in = 1 · 3 · 3
    assert!(net.conv_in.weight.as_vec().iter().all(|v| v.abs() <= bound));
}

/// A batch of two MNIST-sized images with every pixel level represented.
fn images(dev: &Dev) -> Tensor<Img<1, 28, 28>, f64, Dev> {
    let values: Vec<f64> = (0..2 * 784)
        .map(|i| ((i * 97 + i / 7) % 256) as f64)
        .collect();
    dev.tensor_from_vec(values, Img::<1, 28, 28>::with_batch(2))
}

/// Encodes and decodes the images (split-off latents recorded) and checks that every pixel
/// comes back. The tutorial's variational dequantization maps its noise through
/// `(σ(z) − α/2)/(1 − α)`, which can leave `[0, 1)` by up to `α/2`; a pixel whose dequantized
/// value left `[x, x + 1)` that way cannot come back, so each mismatch must be one of those,
/// and they must be rare. `dequantized` is the output of the model's first layer.
fn assert_round_trip<F: Flow<f64, Dev, In = Img<1, 28, 28>>>(
    model: &ImageFlow<F>,
    dev: &Dev,
    dequantized: &dyn Fn(Tensor<Img<1, 28, 28>, f64, Dev>, FlowCtx<f64>) -> Vec<f64>,
) -> usize {
    let x = images(dev);
    let noise: Vec<f64> = dev.sample_uniform_like(&(2 * 784,)).as_vec();
    let mut ctx = FlowCtx {
        record_latents: true,
        ..FlowCtx::with_noise(noise.clone())
    };
    let (z, _) = model.encode(x.clone(), &mut ctx).unwrap();
    let back = model.sample(dev, 2, Some(z), &mut ctx).unwrap().as_vec();
    let levels = dequantized(x.clone(), FlowCtx::with_noise(noise));
    let alpha = 1e-5;
    let mut spilled = 0;
    for (i, (b, x)) in back.iter().zip(x.as_vec()).enumerate() {
        let p = 1.0 / (1.0 + (-levels[i]).exp());
        let u = (p - 0.5 * alpha) / (1.0 - alpha) * 256.0 - x;
        if *b != x {
            assert!(
                !(0.0..1.0).contains(&u),
                "pixel {i}: {x} came back as {b} (noise {u})"
            );
            spilled += 1;
        }
    }
    assert!(spilled <= 8, "{spilled} of 1568 pixels did not come back");
    spilled
}

#[test]
fn simple_flow_inverts_exactly() {
    let dev = Cpu::seed_from_u64(1);
    let mut model = simple_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    let first = model.flows.0 .0;
    let deq = |x, mut ctx| {
        first
            .try_forward(x, dev.zeros_like(&(2,)), &mut ctx)
            .unwrap()
            .0
            .as_vec()
    };
    assert_eq!(
        assert_round_trip(&model, &dev, &deq),
        0,
        "uniform noise never leaves [0, 1)"
    );
}

#[test]
fn vardeq_flow_inverts_exactly() {
    let dev = Cpu::seed_from_u64(2);
    let mut model = vardeq_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    let first = model.flows.0 .0.clone();
    let deq = |x, mut ctx| {
        first
            .try_forward(x, dev.zeros_like(&(2,)), &mut ctx)
            .unwrap()
            .0
            .as_vec()
    };
    assert_round_trip(&model, &dev, &deq);
}

#[test]
fn multiscale_flow_inverts_exactly_and_its_latent_is_8x7x7() {
    let dev = Cpu::seed_from_u64(3);
    let mut model = multiscale_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    let first = model.flows.0 .0.clone();
    let deq = |x, mut ctx| {
        first
            .try_forward(x, dev.zeros_like(&(2,)), &mut ctx)
            .unwrap()
            .0
            .as_vec()
    };
    assert_round_trip(&model, &dev, &deq);
    let (z, _) = model.encode(images(&dev), &mut FlowCtx::default()).unwrap();
    assert_eq!(z.shape().concrete(), [2, 8, 7, 7]);
}

#[test]
fn multiscale_latents_in_the_inner_flow_invert_exactly() {
    // Below the dequantization the flow is a bijection on reals (with the split-off latents):
    // inverse(forward(x)) = x to round-off.
    let dev = Cpu::seed_from_u64(4);
    let mut model = multiscale_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    let inner = Chain((
        model.flows.0 .1.clone(),
        model.flows.0 .2.clone(),
        model.flows.0 .3,
        model.flows.0 .4.clone(),
        model.flows.0 .5.clone(),
        model.flows.0 .6,
        model.flows.0 .7,
        model.flows.0 .8.clone(),
        model.flows.0 .9.clone(),
        model.flows.0 .10.clone(),
        model.flows.0 .11.clone(),
    ));
    let x: Tensor<Img<1, 28, 28>, f64, Dev> =
        dev.sample_normal_like(&Img::<1, 28, 28>::with_batch(2));
    let mut ctx = FlowCtx::recording();
    let (z, _) = inner
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut ctx)
        .unwrap();
    let back = inner.try_inverse(z, &mut ctx).unwrap();
    let err = common::max_abs_diff(&back.as_vec(), &x.as_vec());
    assert!(err <= 1e-9, "round trip error {err:e}");
}

#[test]
fn bpd_is_the_scaled_negative_log_likelihood() {
    let dev = Cpu::seed_from_u64(5);
    let mut model = simple_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    let noise: Vec<f64> = (0..2 * 784)
        .map(|i| ((i * 31) % 1000) as f64 / 1000.0)
        .collect();
    let ll = model
        .log_likelihood(images(&dev), &mut FlowCtx::with_noise(noise.clone()))
        .unwrap()
        .as_vec();
    let bpd = model
        .bpd(images(&dev), &mut FlowCtx::with_noise(noise.clone()))
        .unwrap()
        .array();
    let expected = -(ll[0] + ll[1]) / 2.0 * std::f64::consts::LOG2_E / 784.0;
    assert!((bpd - expected).abs() < 1e-12);
    // Deterministic with the caller's noise, different with other noise.
    let again = model
        .log_likelihood(images(&dev), &mut FlowCtx::with_noise(noise))
        .unwrap()
        .as_vec();
    assert_eq!(ll, again);
    let drawn = model
        .log_likelihood(images(&dev), &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    assert_ne!(ll, drawn);
}

#[test]
fn log_likelihood_is_change_of_variables_on_the_inner_flow() {
    // log p(x) = log N(z) + ldj, checked against an independent computation of log N(z).
    let dev = Cpu::seed_from_u64(6);
    let model = vardeq_flow::<f64, _>(&dev).unwrap();
    let noise = vec![0.25; 2 * 784];
    let (z, ldj) = model
        .encode(images(&dev), &mut FlowCtx::with_noise(noise.clone()))
        .unwrap();
    let ll = model
        .log_likelihood(images(&dev), &mut FlowCtx::with_noise(noise))
        .unwrap()
        .as_vec();
    let z = z.as_vec();
    for b in 0..2 {
        let log_pz: f64 = z[b * 784..(b + 1) * 784]
            .iter()
            .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum();
        assert!((ll[b] - (log_pz + ldj.as_vec()[b])).abs() < 1e-9);
    }
}

#[test]
fn importance_sampling_with_one_sample_is_the_plain_estimate() {
    let mut model = simple_flow::<f64, _>(&Cpu::default()).unwrap();
    model.import_samples = 1;
    let dev = Cpu::seed_from_u64(7);
    let x = images(&dev);
    let is = model.importance_bpd(&x).unwrap();
    let dev = Cpu::seed_from_u64(7);
    let ll = model
        .log_likelihood(x.to_device(&dev), &mut FlowCtx::default())
        .unwrap()
        .as_vec();
    for b in 0..2 {
        let plain = -ll[b] * std::f64::consts::LOG2_E / 784.0;
        assert!((is[b] - plain).abs() < 1e-9, "{} vs {plain}", is[b]);
    }
}

/// With K = 8 the estimate is `−(logsumexp_k log p(x + u_k) − ln 8)·log₂e / 784` of the same
/// eight draws, computed here by hand; and it is never above the mean of those single-draw
/// bpds (Jensen: the log of a mean is at least the mean of the logs).
#[test]
fn importance_sampling_with_eight_samples_is_the_log_mean_exp_of_the_draws() {
    let dev = Cpu::seed_from_u64(3);
    let mut model = simple_flow::<f64, _>(&dev).unwrap();
    perturb_params(&mut model, 0.05).unwrap();
    model.import_samples = 8;
    let x = images(&dev);
    let dev = Cpu::seed_from_u64(7);
    let is8 = model.importance_bpd(&x.to_device(&dev)).unwrap();
    // The same draws: the same device seed, eight single-draw passes in the same order.
    let dev = Cpu::seed_from_u64(7);
    let draws: Vec<Vec<f64>> = (0..8)
        .map(|_| {
            model
                .log_likelihood(x.to_device(&dev), &mut FlowCtx::default())
                .unwrap()
                .as_vec()
        })
        .collect();
    let to_bpd = |ll: f64| -ll * std::f64::consts::LOG2_E / 784.0;
    for b in 0..2 {
        let lls: Vec<f64> = draws.iter().map(|d| d[b]).collect();
        assert!(lls.iter().any(|&v| v != lls[0]), "the draws must differ");
        let max = lls.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_mean_exp = max + (lls.iter().map(|v| (v - max).exp()).sum::<f64>() / 8.0).ln();
        let by_hand = to_bpd(log_mean_exp);
        assert!((is8[b] - by_hand).abs() < 1e-9, "{} vs {by_hand}", is8[b]);
        let mean_single = lls.iter().map(|&v| to_bpd(v)).sum::<f64>() / 8.0;
        assert!(is8[b] <= mean_single, "{} above {mean_single}", is8[b]);
    }
}

#[test]
fn samples_are_valid_images() {
    let dev = Cpu::seed_from_u64(8);
    let mut model = multiscale_flow::<f32, _>(&dev).unwrap();
    perturb_params(&mut model, 0.02).unwrap();
    let samples = model
        .sample(&dev, 3, None, &mut FlowCtx::default())
        .unwrap();
    assert_eq!(samples.shape().concrete(), [3, 1, 28, 28]);
    let values = samples.as_vec();
    assert!(values
        .iter()
        .all(|v| *v >= 0.0 && *v <= 255.0 && v.fract() == 0.0));
    assert!(values.iter().any(|v| *v != values[0]));
    // Temperature 0 with z_init = 0 is deterministic.
    let mut cold = FlowCtx {
        temperature: 0.0,
        ..FlowCtx::default()
    };
    let a = model.sample(&dev, 2, None, &mut cold).unwrap().as_vec();
    let b = model.sample(&dev, 2, None, &mut cold).unwrap().as_vec();
    assert_eq!(a, b);
}

#[test]
fn describe_lists_every_layer_with_shapes() {
    let dev: Cpu = Default::default();
    let model = multiscale_flow::<f32, _>(&dev).unwrap();
    let rows = model.describe();
    let top: Vec<_> = rows.iter().filter(|r| !r.name.starts_with("  ")).collect();
    assert_eq!(top.len(), 12);
    assert_eq!(top[3].name, "Squeeze");
    assert_eq!(
        (top[3].input.as_str(), top[3].output.as_str()),
        ("1x28x28", "4x14x14")
    );
    assert_eq!(
        (top[6].input.as_str(), top[6].output.as_str()),
        ("4x14x14", "2x14x14")
    );
    assert_eq!(top[11].output, "8x7x7");
    assert_eq!(top.iter().map(|r| r.params).sum::<usize>(), 1_711_818);
}

type Tiny<E> = Chain<(
    Dequantization<1, 8, 8>,
    CheckerboardCoupling<1, 8, 8, 8, false, E, Dev>,
    CheckerboardCoupling<1, 8, 8, 8, true, E, Dev>,
    CheckerboardCoupling<1, 8, 8, 8, false, E, Dev>,
    CheckerboardCoupling<1, 8, 8, 8, true, E, Dev>,
)>;

/// 64 images of 8×8: a bright bar (row or column) on a dark background.
fn bars(dev: &Dev) -> Tensor<Img<1, 8, 8>, f32, Dev> {
    let mut values = Vec::with_capacity(64 * 64);
    for k in 0..64usize {
        for y in 0..8 {
            for x in 0..8 {
                let on = if k % 2 == 0 {
                    x == (k / 2) % 8
                } else {
                    y == (k / 2) % 8
                };
                values.push(if on {
                    200.0 + (k % 5) as f32 * 10.0
                } else {
                    (k % 3) as f32
                });
            }
        }
    }
    dev.tensor_from_vec(values, Img::<1, 8, 8>::with_batch(64))
}

/// Trains the tiny flow with Adam (lr 1e-3) on the bars, batch 32; returns the data set's bpd
/// (with fixed noise) before and after.
fn train(steps: usize, seed: u64) -> (f32, f32) {
    let dev = Cpu::seed_from_u64(seed);
    let mut model = ImageFlow::new(dev.build_module::<Tiny<f32>, f32>());
    let data = bars(&dev);
    let eval_noise = vec![0.5f32; 64 * 64];
    let eval = |m: &ImageFlow<Tiny<f32>>| {
        m.bpd(data.clone(), &mut FlowCtx::with_noise(eval_noise.clone()))
            .unwrap()
            .array()
    };
    let before = eval(&model);
    let mut opt = Adam::new(
        &model,
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    );
    let mut grads = model.alloc_grads();
    let all = data.as_vec();
    for step in 0..steps {
        let start = (step % 2) * 32;
        let batch = dev.tensor_from_vec(
            all[start * 64..(start + 32) * 64].to_vec(),
            Img::<1, 8, 8>::with_batch(32),
        );
        let loss = model
            .bpd(batch.traced(grads), &mut FlowCtx::default())
            .unwrap();
        grads = loss.backward();
        opt.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    (before, eval(&model))
}

#[test]
fn two_hundred_adam_steps_lower_the_bpd() {
    let (before, after) = train(200, 42);
    eprintln!("bars data set: {before:.3} bpd before, {after:.3} bpd after 200 steps");
    // Measured: 20.82 → 2.73 bpd. Required: a drop of at least 10 bpd, to below 4 bpd.
    assert!(
        before - after >= 10.0 && after < 4.0,
        "bpd fell only from {before} to {after}"
    );
}

#[test]
fn training_is_deterministic_with_a_seed() {
    assert_eq!(train(5, 9), train(5, 9));
}

/// An empty batch is a valid (if useless) input: no division by the batch size anywhere.
#[test]
fn an_empty_batch_gives_empty_results() {
    let dev = Cpu::seed_from_u64(9);
    let simple = simple_flow::<f64, _>(&dev).unwrap();
    let vardeq = vardeq_flow::<f64, _>(&dev).unwrap();
    let multiscale = multiscale_flow::<f64, _>(&dev).unwrap();
    let empty = || dev.zeros_like(&Img::<1, 28, 28>::with_batch(0));
    let ctx = &mut FlowCtx::default();
    assert_eq!(simple.log_likelihood(empty(), ctx).unwrap().shape().0, 0);
    assert_eq!(vardeq.log_likelihood(empty(), ctx).unwrap().shape().0, 0);
    assert_eq!(
        multiscale.log_likelihood(empty(), ctx).unwrap().shape().0,
        0
    );
    let samples = multiscale.sample(&dev, 0, None, ctx).unwrap();
    assert_eq!(samples.shape().concrete(), [0, 1, 28, 28]);
    assert!(multiscale.importance_bpd(&empty()).unwrap().is_empty());
    // The mean over no images, as in PyTorch.
    assert!(multiscale.bpd(empty(), ctx).unwrap().array().is_nan());
}
