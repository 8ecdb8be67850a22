//! Bad input gets an error that names the problem, and a rejected call loses nothing.
use dfdx::prelude::*;
use dfdx_flows::checkpoint::{load_weights, CheckpointError};
use dfdx_flows::prelude::*;
use dfdx_flows::testing::perturb_params;

type Tiny = Chain<(
    Dequantization<1, 4, 4>,
    Squeeze<1, 4, 4>,
    ChannelCoupling<4, 2, 2, 4, false, f64, Cpu>,
    Split<4, 2, 2>,
)>;

fn model(dev: &Cpu) -> ImageFlow<Tiny> {
    let mut model = ImageFlow::<Tiny>::build(dev);
    perturb_params(&mut model, 0.2).unwrap();
    model
}

fn images(dev: &Cpu, values: Vec<f64>) -> Tensor<Img<1, 4, 4>, f64, Cpu> {
    let n = values.len() / 16;
    dev.tensor_from_vec(values, Img::<1, 4, 4>::with_batch(n))
}

#[test]
fn pixels_outside_0_255_or_not_integers_are_rejected() {
    let dev = Cpu::seed_from_u64(1);
    let model = model(&dev);
    for (bad, index) in [(256.0, 3), (-1.0, 0), (0.5, 7), (f64::NAN, 20)] {
        let mut values = vec![128.0; 32];
        values[index] = bad;
        let err = model
            .bpd(images(&dev, values), &mut FlowCtx::default())
            .unwrap_err();
        match &err {
            FlowError::Pixel {
                index: i,
                levels: 256,
                ..
            } => assert_eq!(*i, index),
            other => panic!("expected a pixel error, got {other:?}"),
        }
        assert!(err.to_string().contains("0..=255"), "{err}");
    }
    // Images scaled to [0, 1], the most common mistake.
    let scaled = (0..32).map(|i| i as f64 / 31.0).collect();
    let err = model
        .log_likelihood(images(&dev, scaled), &mut FlowCtx::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("not images scaled to [0, 1]"),
        "{err}"
    );
    // Integer pixels pass.
    assert!(model
        .bpd(images(&dev, vec![255.0; 32]), &mut FlowCtx::default())
        .is_ok());
}

#[test]
fn noise_of_the_wrong_length_or_range_is_rejected_and_kept() {
    let dev = Cpu::seed_from_u64(2);
    let model = model(&dev);
    let mut ctx = FlowCtx::with_noise(vec![0.5; 31]);
    let err = model
        .bpd(images(&dev, vec![1.0; 32]), &mut ctx)
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlowError::NoiseLength {
                expected: 32,
                got: 31
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("31 values"), "{err}");
    assert_eq!(
        ctx.dequant_noise.as_ref().map(Vec::len),
        Some(31),
        "noise lost"
    );

    let mut noise = vec![0.5; 32];
    noise[9] = 1.0;
    let err = model
        .bpd(images(&dev, vec![1.0; 32]), &mut FlowCtx::with_noise(noise))
        .unwrap_err();
    assert!(
        matches!(err, FlowError::NoiseValue { index: 9, .. }),
        "{err:?}"
    );
}

#[test]
fn latents_of_the_wrong_length_are_rejected_and_kept() {
    let dev = Cpu::seed_from_u64(3);
    let model = model(&dev);
    let mut ctx = FlowCtx {
        latents: vec![vec![0.0; 7]],
        ..FlowCtx::default()
    };
    let err = model.sample(&dev, 2, None, &mut ctx).unwrap_err();
    match &err {
        FlowError::LatentLength { expected, got, .. } => assert_eq!((*expected, *got), (16, 7)),
        other => panic!("expected a latent error, got {other:?}"),
    }
    assert!(err.to_string().contains("split layer 1 of 1"), "{err}");
    assert_eq!(ctx.latents, vec![vec![0.0; 7]], "latents lost");

    // The split layer on its own says the same, and keeps the latent too.
    let split = Split::<4, 2, 2>;
    let z: Tensor<(usize, Const<2>, Const<2>, Const<2>), f64, Cpu> =
        dev.zeros_like(&(2, Const, Const, Const));
    let err = Flow::<f64, Cpu>::try_inverse(&split, z, &mut ctx).unwrap_err();
    assert!(err.to_string().contains("Split 4x2x2 -> 2x2x2"), "{err}");
    assert_eq!(ctx.latents.len(), 1);
}

#[test]
fn a_temperature_that_is_not_a_finite_non_negative_number_is_rejected() {
    let dev = Cpu::seed_from_u64(4);
    let model = model(&dev);
    for t in [f64::NAN, f64::INFINITY, -0.5] {
        let mut ctx = FlowCtx {
            temperature: t,
            ..FlowCtx::default()
        };
        let err = model.sample(&dev, 2, None, &mut ctx).unwrap_err();
        assert!(matches!(err, FlowError::Temperature(_)), "{t}: {err:?}");
    }
    let mut ctx = FlowCtx {
        temperature: 0.0,
        ..FlowCtx::default()
    };
    assert!(model.sample(&dev, 2, None, &mut ctx).is_ok());
}

#[test]
fn empty_or_mis_shaped_safetensors_are_rejected() {
    let dev = Cpu::seed_from_u64(5);
    let mut model = model(&dev);
    let dir = std::env::temp_dir().join(format!("dfdx-flows-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let err = load_weights(&empty, &mut model).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt(..)), "{err:?}");

    // The weights of a model with another hidden width.
    type Wider = Chain<(
        Dequantization<1, 4, 4>,
        Squeeze<1, 4, 4>,
        ChannelCoupling<4, 2, 2, 8, false, f64, Cpu>,
        Split<4, 2, 2>,
    )>;
    let wider = ImageFlow::<Wider>::build(&dev);
    let path = dir.join("wider.safetensors");
    wider.save_safetensors(&path).unwrap();
    let before = model.flows.0 .2.network.conv_in.weight.as_vec();
    let err = load_weights(&path, &mut model).unwrap_err();
    assert!(err.to_string().contains("has shape"), "{err}");
    assert_eq!(
        model.flows.0 .2.network.conv_in.weight.as_vec(),
        before,
        "a rejected file changed the model"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interpolation_needs_pairs_and_two_steps() {
    let dev = Cpu::seed_from_u64(6);
    let model = model(&dev);
    let three = images(&dev, vec![10.0; 48]);
    let err = dfdx_flows::sampling::interpolate(&model, three, 4, None, true).unwrap_err();
    assert!(matches!(err, FlowError::Argument(_)), "{err:?}");
    let two = images(&dev, vec![10.0; 32]);
    let err = dfdx_flows::sampling::interpolate(&model, two.clone(), 1, None, true).unwrap_err();
    assert!(err.to_string().contains("at least 2 steps"), "{err}");
    let rows =
        dfdx_flows::sampling::interpolate(&model, two, 3, Some(vec![0.5; 32]), true).unwrap();
    assert_eq!(rows.shape().0, 3);
}
