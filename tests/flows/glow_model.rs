//! `GlowFlow` for MNIST (issue 19): its size by formula, initialisation on a first batch, and
//! exact invertibility of the whole model in f64.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;

/// Trainable parameters of one Glow step on C channels with a network of `h` channels.
fn step_params(c: usize, h: usize) -> usize {
    let actnorm = 2 * c;
    let invconv = c * c;
    let conv_in = (c / 2) * h * 9 + h;
    let conv_mid = h * h + h;
    let conv_out = h * c * 9 + 2 * c; // weight, bias, logscale
    actnorm + invconv + conv_in + 2 * h + conv_mid + 2 * h + conv_out
}

#[test]
fn glow_has_the_size_of_its_layers() {
    let dev: Cpu = Default::default();
    let model = glow_flow::<f32, _>(&dev).unwrap();
    let (k, h) = (GLOW_STEPS, GLOW_HIDDEN);
    let split_prior = 2 * 4 * 9 + 4 + 4;
    let top_prior = 2 * 8;
    let want = k * step_params(4, h) + split_prior + k * step_params(8, h) + top_prior;
    assert_eq!(model.num_trainable_params(), want);
    assert!(model.flows.needs_initialization());
}

fn digits(dev: &Cpu, n: usize) -> Tensor<Img<1, 28, 28>, f64, Cpu> {
    let values: Vec<f64> = (0..n * 784)
        .map(|i| {
            if (i % 28) / 7 == (i / 28 % 28) / 7 {
                ((i * 31) % 256) as f64
            } else {
                0.0
            }
        })
        .collect();
    dev.tensor_from_vec(values, Img::<1, 28, 28>::with_batch(n))
}

/// Initialised on a batch and perturbed, the whole model maps images to latents and back to
/// the same pixels (uniform dequantization: the noise never leaves its pixel's interval).
#[test]
fn glow_initialises_and_inverts_exactly_in_f64() {
    let dev = Cpu::seed_from_u64(5);
    let mut model = glow_flow::<f64, _>(&dev).unwrap();
    let x = digits(&dev, 3);
    model
        .initialize(x.clone(), &mut FlowCtx::with_noise(vec![0.5; 3 * 784]))
        .unwrap();
    assert!(!model.flows.needs_initialization());
    perturb_params(&mut model, 0.05).unwrap();
    let noise: Vec<f64> = dev.sample_uniform_like(&(3 * 784,)).as_vec();
    let mut ctx = FlowCtx {
        record_latents: true,
        ..FlowCtx::with_noise(noise)
    };
    let (z, ldj) = model.encode(x.clone(), &mut ctx).unwrap();
    assert!(ldj.as_vec().iter().all(|v| v.is_finite()));
    assert_eq!(ctx.latents.len(), 1, "one split");
    let back = model.sample(&dev, 3, Some(z), &mut ctx).unwrap();
    assert_eq!(back.as_vec(), x.as_vec());
    let bpd = model
        .bpd(x, &mut FlowCtx::with_noise(vec![0.5; 3 * 784]))
        .unwrap()
        .array();
    assert!(bpd.is_finite() && bpd > 0.0, "{bpd}");
}
