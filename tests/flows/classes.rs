//! Class-conditional flows (issue 22): the class-conditional layers' exactness, log-determinant
//! and gradients (class tables included), labels and their errors, and a tiny conditional flow
//! trained on two synthetic classes that must tell them apart, score the right class higher
//! and sample each class recognisably.
use dfdx::prelude::*;
use dfdx_flows::classes::{LabelError, Labels};
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow_with, perturb_params, CheckOptions};

fn labels<const K: usize>(values: &[usize]) -> Labels<K> {
    Labels::new(values.to_vec()).unwrap()
}

fn options_with<const K: usize>(values: &[usize]) -> CheckOptions {
    CheckOptions {
        classes: Some(labels::<K>(values).into()),
        ..CheckOptions::default()
    }
}

#[test]
fn class_prior_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(1);
    let mut layer = dev.build_module::<ClassPrior<3, 2, 3, 3, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<2, 3, 3>::with_batch(3));
    let report = check_flow_with(&layer, &x, &options_with::<3>(&[2, 0, 2])).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 2 * 4, "{report:?}");
}

/// Image by image, the class prior is the learned prior with its class's row.
#[test]
fn class_prior_is_the_learned_prior_of_each_images_class() {
    let dev = Cpu::seed_from_u64(2);
    let mut layer = dev.build_module::<ClassPrior<3, 2, 3, 3, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.5).unwrap();
    let x = dev.sample_normal_like(&Img::<2, 3, 3>::with_batch(3));
    let classes = [1, 2, 0];
    let mut ctx = FlowCtx::default().with_labels(labels::<3>(&classes));
    let (z, ldj) = layer
        .try_forward(x.clone(), dev.zeros_like(&(3,)), &mut ctx)
        .unwrap();
    let (xs, zs, ldjs) = (x.as_vec(), z.as_vec(), ldj.as_vec());
    let (means, logs) = (layer.mean.as_vec(), layer.logs.as_vec());
    for (image, &class) in classes.iter().enumerate() {
        let mut prior = dev.build_module::<LearnedPrior<2, 3, 3, f64, Cpu>, f64>();
        prior.mean = dev.tensor_from_vec(means[class * 2..class * 2 + 2].to_vec(), (Const::<2>,));
        prior.logs = dev.tensor_from_vec(logs[class * 2..class * 2 + 2].to_vec(), (Const::<2>,));
        let one = dev.tensor_from_vec(
            xs[image * 18..(image + 1) * 18].to_vec(),
            Img::<2, 3, 3>::with_batch(1),
        );
        let (want, want_ldj) = prior
            .try_forward(one, dev.zeros_like(&(1,)), &mut FlowCtx::default())
            .unwrap();
        for (a, b) in zs[image * 18..(image + 1) * 18].iter().zip(want.as_vec()) {
            assert!((a - b).abs() < 1e-14, "image {image}: {a} vs {b}");
        }
        assert!((ldjs[image] - want_ldj.as_vec()[0]).abs() < 1e-12);
    }
}

#[test]
fn class_split_prior_inverts_and_its_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(3);
    let mut layer = dev.build_module::<ClassSplitPrior<3, 4, 3, 3, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let opts = CheckOptions {
        // C → C/2 values: no square Jacobian; the density is the split prior's (below).
        log_det_check: false,
        ..options_with::<3>(&[1, 2])
    };
    let report = check_flow_with(&layer, &x, &opts).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    // conv.weight, conv.bias, conv.logscale, class_bias.
    assert!(report.gradients_checked >= 4 * 4, "{report:?}");
}

/// With the class table at zero the class split prior is the split prior; a row of the table
/// shifts the predicted mean and log-scale of its class only.
#[test]
fn class_split_prior_adds_its_class_row_to_the_split_priors_parameters() {
    let dev = Cpu::seed_from_u64(4);
    let mut layer = dev.build_module::<ClassSplitPrior<3, 4, 3, 3, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let mut plain = dev.build_module::<SplitPrior<4, 3, 3, f64, Cpu>, f64>();
    plain.conv = layer.conv.clone();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let kept = dev.sample_normal_like(&(2, Const::<2>, Const::<3>, Const::<3>));
    let ctx = FlowCtx::<f64>::default().with_labels(labels::<3>(&[2, 0]));
    let (mean, logs) = layer.mean_and_logs(kept.clone(), &ctx).unwrap();
    let (mean0, logs0) = plain.mean_and_logs(kept).unwrap();
    let bias = layer.class_bias.as_vec();
    for (image, class) in [(0usize, 2usize), (1, 0)] {
        for c in 0..2 {
            for p in 0..9 {
                let i = image * 18 + c * 9 + p;
                let (m, m0) = (mean.as_vec()[i], mean0.as_vec()[i]);
                let (l, l0) = (logs.as_vec()[i], logs0.as_vec()[i]);
                assert!((m - m0 - bias[class * 4 + c]).abs() < 1e-12);
                assert!((l - l0 - bias[class * 4 + 2 + c]).abs() < 1e-12);
            }
        }
    }
    layer.class_bias = dev.zeros();
    let mut a = FlowCtx::default().with_labels(labels::<3>(&[2, 1]));
    let (za, la) = layer
        .try_forward(x.clone(), dev.zeros_like(&(2,)), &mut a)
        .unwrap();
    let (zb, lb) = plain
        .try_forward(x, dev.zeros_like(&(2,)), &mut FlowCtx::default())
        .unwrap();
    assert_eq!(za.as_vec(), zb.as_vec());
    for (p, q) in la.as_vec().iter().zip(lb.as_vec()) {
        assert!((p - q).abs() < 1e-12);
    }
}

#[test]
fn class_glow_coupling_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let mut layer = dev.build_module::<ClassGlowCoupling<3, 4, 3, 3, 8, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(2));
    let report = check_flow_with(&layer, &x, &options_with::<3>(&[0, 2])).unwrap();
    assert!(report.round_trip < 1e-12, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    // The network's 11 tensors (ActNorms' flags are not trained) and the class table.
    assert!(report.gradients_checked >= 12 * 4 - 8, "{report:?}");
}

/// The class embedding changes the output only through its class's row.
#[test]
fn class_glow_coupling_depends_on_the_class() {
    let dev = Cpu::seed_from_u64(6);
    let mut layer = dev.build_module::<ClassGlowCoupling<3, 4, 3, 3, 8, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 3, 3>::with_batch(1));
    let run = |class: usize, layer: &ClassGlowCoupling<3, 4, 3, 3, 8, f64, Cpu>| {
        let mut ctx = FlowCtx::default().with_labels(labels::<3>(&[class]));
        let (z, _) = layer
            .try_forward(x.clone(), dev.zeros_like(&(1,)), &mut ctx)
            .unwrap();
        z.as_vec()
    };
    assert_ne!(run(0, &layer), run(1, &layer));
    // Rows 0 and 2 equal: classes 0 and 2 give the same output.
    let mut table = layer.class_bias.as_vec();
    let row0: Vec<f64> = table[..8].to_vec();
    table[16..24].copy_from_slice(&row0);
    layer.class_bias = dev.tensor_from_vec(table, (Const::<3>, Const::<8>));
    assert_eq!(run(0, &layer), run(2, &layer));
}

#[test]
fn labels_are_checked_where_they_are_made() {
    assert_eq!(
        Labels::<10>::new(vec![3, 10]),
        Err(LabelError::OutOfRange {
            index: 1,
            label: 10,
            classes: 10
        })
    );
    assert!(Labels::<10>::from_bytes(&[0, 9, 4]).is_ok());
    let dev = Cpu::default();
    let good: Tensor<(usize, Const<3>), f32, Cpu> =
        dev.tensor_from_vec(vec![0., 1., 0., 0., 0., 1.], (2, Const::<3>));
    assert_eq!(Labels::from_one_hot(&good).unwrap().as_slice(), &[1, 2]);
    let two_ones: Tensor<(usize, Const<3>), f32, Cpu> =
        dev.tensor_from_vec(vec![0., 1., 0., 1., 0., 1.], (2, Const::<3>));
    let err = Labels::from_one_hot(&two_ones).unwrap_err();
    assert_eq!(err, LabelError::NotOneHot { row: 1 });
    assert!(err.to_string().contains("row 1"), "{err}");
    let half: Tensor<(usize, Const<3>), f32, Cpu> =
        dev.tensor_from_vec(vec![0.5, 0.5, 0.], (1, Const::<3>));
    assert!(Labels::from_one_hot(&half).is_err());
}

/// A tiny class-conditional flow on 1×4×4 images, both conditioning paths.
type Tiny = Chain<(
    Dequantization<1, 4, 4>,
    Squeeze<1, 4, 4>,
    Repeat<ClassGlowStep<2, 4, 2, 2, 8, f64, Cpu>, 2>,
    ClassSplitPrior<2, 4, 2, 2, f64, Cpu>,
    ClassPrior<2, 2, 2, 2, f64, Cpu>,
)>;

#[test]
fn class_conditional_layers_without_fitting_labels_are_errors_that_change_nothing() {
    let dev = Cpu::seed_from_u64(7);
    let model = ImageFlow::<Tiny, 2>::try_build_conditional(&dev).unwrap();
    let x = dev.tensor_from_vec(vec![7.0; 2 * 16], Img::<1, 4, 4>::with_batch(2));
    // No labels.
    let err = model
        .log_likelihood(x.clone(), &mut FlowCtx::default())
        .unwrap_err();
    assert!(matches!(err, FlowError::Labels(_)), "{err}");
    assert!(
        err.to_string()
            .contains("ClassGlowCoupling(2 classes, hidden 8) is class-conditional"),
        "{err}"
    );
    // Labels for another number of classes, put into the context by hand.
    let mut ctx = FlowCtx::default().with_labels(labels::<3>(&[0, 2]));
    let err = model.log_likelihood(x.clone(), &mut ctx).unwrap_err();
    assert!(
        err.to_string()
            .contains("is conditioned on 2 classes, but the labels are for 3"),
        "{err}"
    );
    // Not one label per image: rejected before anything runs, the context as it was.
    let mut ctx = FlowCtx::with_noise(vec![0.5; 32]);
    let err = model
        .log_likelihood_given(x.clone(), &labels::<2>(&[1]), &mut ctx)
        .unwrap_err();
    assert!(
        err.to_string().contains("1 labels for a batch of 2"),
        "{err}"
    );
    assert!(ctx.classes.is_none() && ctx.dequant_noise.is_some());
    // A one-hot row that is not one-hot.
    let bad: Tensor<(usize, Const<2>), f64, Cpu> =
        dev.tensor_from_vec(vec![1., 0., 1., 1.], (2, Const::<2>));
    let err = model
        .log_likelihood_one_hot(x.clone(), &bad, &mut FlowCtx::default())
        .unwrap_err();
    assert!(matches!(err, FlowError::Labels(_)), "{err}");
    // A model conditioned on 3 classes whose layers are for 2.
    let mislabelled = ImageFlow::<Tiny, 3>::new_conditional(model.flows.clone());
    let err = mislabelled
        .log_likelihood_given(x, &labels::<3>(&[0, 2]), &mut FlowCtx::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is conditioned on 2 classes, but the labels are for 3"),
        "{err}"
    );
}

#[test]
fn marginal_log_likelihood_sums_the_classes_with_one_noise() {
    let dev = Cpu::seed_from_u64(8);
    let mut model = ImageFlow::<Tiny, 2>::try_build_conditional(&dev).unwrap();
    perturb_params(&mut model, 0.3).unwrap();
    let pixels: Vec<f64> = (0..3 * 16).map(|i| ((i * 37) % 256) as f64).collect();
    let x = dev.tensor_from_vec(pixels, Img::<1, 4, 4>::with_batch(3));
    let noise: Vec<f64> = (0..3 * 16).map(|i| ((i * 13) % 17) as f64 / 17.0).collect();
    let rows = model
        .class_log_likelihoods(&x, &mut FlowCtx::with_noise(noise.clone()))
        .unwrap();
    let marginal = model
        .marginal_log_likelihood(&x, &mut FlowCtx::with_noise(noise.clone()))
        .unwrap();
    for class in 0..2 {
        let given = model
            .log_likelihood_given(
                x.clone(),
                &Labels::repeat(class, 3).unwrap(),
                &mut FlowCtx::with_noise(noise.clone()),
            )
            .unwrap()
            .as_vec();
        for (row, g) in rows.iter().zip(&given) {
            assert!((row[class] - g).abs() < 1e-10);
        }
    }
    for (&[a, b], m) in rows.iter().zip(&marginal) {
        // log((e^a + e^b) / 2) without underflow: the log-likelihoods are hundreds of nats.
        let top = a.max(b);
        let want = top + (((a - top).exp() + (b - top).exp()) / 2.0).ln();
        assert!((m - want).abs() < 1e-9 * want.abs().max(1.0));
        assert!(a != b, "the classes must differ");
    }
}

/// Two synthetic classes of 4×4 images: class 0 with bright even columns and dark odd ones,
/// class 1 the other way round, with noise. After the squeeze the columns are channels, so
/// the class is a per-channel mean: what the class tables (one row of channel values per
/// class, as in Glow) can carry in a flow this small.
fn two_class_batch(rng_seed: u64, n: usize) -> (Vec<f64>, Vec<usize>) {
    let mut state = rng_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 1000.0
    };
    let mut pixels = Vec::with_capacity(n * 16);
    let mut classes = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 2;
        classes.push(class);
        for p in 0..16 {
            let even_column = p % 2 == 0;
            let bright = even_column == (class == 0);
            let base = if bright { 190.0 } else { 40.0 };
            pixels.push((base + 50.0 * next()).round());
        }
    }
    (pixels, classes)
}

/// Even columns minus odd columns, per image.
fn even_minus_odd_columns(pixels: &[f64]) -> Vec<f64> {
    pixels
        .chunks(16)
        .map(|p| {
            p.iter()
                .enumerate()
                .map(|(i, v)| if i % 2 == 0 { *v } else { -*v })
                .sum()
        })
        .collect()
}

/// The evidence on a model small enough for `cargo test`: after training on two
/// classes, the right class scores higher than the wrong one, the flow classifies held-out
/// images, and samples of each class are classified as that class by a nearest-class-mean
/// check far more often than chance (1/2). A fresh model (class tables at zero) does not
/// distinguish the classes at all.
#[test]
fn a_trained_conditional_flow_prefers_the_right_class_and_samples_it() {
    let dev = Cpu::seed_from_u64(9);
    let mut model = ImageFlow::<Tiny, 2>::try_build_conditional(&dev).unwrap();
    let (test_pixels, test_classes) = two_class_batch(99, 64);
    let test = dev.tensor_from_vec(test_pixels.clone(), Img::<1, 4, 4>::with_batch(64));
    let fresh = model
        .class_log_likelihoods(&test, &mut FlowCtx::default())
        .unwrap();
    assert!(
        fresh.iter().all(|[a, b]| a == b),
        "fresh: the class is unused"
    );

    let batch = 32;
    let (first, first_classes) = two_class_batch(1, batch);
    model
        .initialize_given(
            dev.tensor_from_vec(first, Img::<1, 4, 4>::with_batch(batch)),
            &Labels::new(first_classes).unwrap(),
            &mut FlowCtx::default(),
        )
        .unwrap();
    let mut adam = dfdx_flows::optim::Adam::new(5e-3);
    let mut grads = model.alloc_grads();
    let mut first_bpd = None;
    let mut last_bpd = 0.0;
    for step in 0..150 {
        let (pixels, classes) = two_class_batch(1000 + step, batch);
        let x = dev.tensor_from_vec(pixels, Img::<1, 4, 4>::with_batch(batch));
        let bpd = model
            .bpd_given(
                x.traced(grads),
                &Labels::new(classes).unwrap(),
                &mut FlowCtx::default(),
            )
            .unwrap();
        last_bpd = bpd.array();
        first_bpd.get_or_insert(last_bpd);
        grads = bpd.backward();
        adam.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    let first_bpd = first_bpd.unwrap();
    assert!(last_bpd < first_bpd - 0.5, "bpd {first_bpd} -> {last_bpd}");

    // The right class scores higher, and classifies.
    let rows = model
        .class_log_likelihoods(&test, &mut FlowCtx::default())
        .unwrap();
    let right = rows
        .iter()
        .zip(&test_classes)
        .filter(|(row, &c)| row[c] > row[1 - c])
        .count();
    assert!(right >= 60, "right class higher for {right} of 64");
    let predicted = model.classify(&test, &mut FlowCtx::default()).unwrap();
    let correct = predicted
        .iter()
        .zip(&test_classes)
        .filter(|(p, c)| p == c)
        .count();
    assert!(correct >= 60, "classified {correct} of 64");

    // Samples of each class, judged by the nearest class mean of the training images' feature
    // (even minus odd columns' brightness).
    let (train_pixels, train_classes) = two_class_batch(5, 256);
    let feature = even_minus_odd_columns(&train_pixels);
    let mean_of = |class: usize| {
        let values: Vec<f64> = feature
            .iter()
            .zip(&train_classes)
            .filter(|(_, &c)| c == class)
            .map(|(f, _)| *f)
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let means = [mean_of(0), mean_of(1)];
    for class in 0..2 {
        let mut ctx = FlowCtx {
            temperature: 0.8,
            ..FlowCtx::default()
        };
        let samples = model
            .sample_given(&dev, &Labels::repeat(class, 64).unwrap(), None, &mut ctx)
            .unwrap();
        let nearest_is_class = even_minus_odd_columns(&samples.as_vec())
            .iter()
            .filter(|f| {
                let nearest = if (*f - means[0]).abs() < (*f - means[1]).abs() {
                    0
                } else {
                    1
                };
                nearest == class
            })
            .count();
        assert!(
            nearest_is_class >= 56,
            "class {class}: {nearest_is_class} of 64 samples nearest its class mean"
        );
    }
}

/// The class-conditional models' parameters: the unconditional model's plus the class tables.
#[test]
fn class_conditional_models_add_only_their_class_tables() {
    let dev: Cpu = Default::default();
    let ms = multiscale_flow::<f32, Cpu>(&dev).unwrap();
    let class_ms = class_multiscale_flow::<f32, Cpu>(&dev).unwrap();
    // Two class priors: (10 × 4) × 2 and (10 × 8) × 2.
    assert_eq!(
        class_ms.num_trainable_params(),
        ms.num_trainable_params() + 80 + 160
    );
    assert_eq!(class_ms.num_trainable_params(), 1_712_058);
    let glow = glow_flow::<f32, Cpu>(&dev).unwrap();
    let class_glow = class_glow_flow::<f32, Cpu>(&dev).unwrap();
    // The learned top prior (2 × 8) becomes a class prior (2 × 10 × 8); the split prior gets
    // a 10 × 4 table, each of the 16 couplings a 10 × 64 embedding.
    assert_eq!(
        class_glow.num_trainable_params(),
        glow.num_trainable_params() - 16 + 160 + 40 + 16 * 640
    );
    assert_eq!(class_glow.num_trainable_params(), 166_168);
}

/// The trainer feeds a class-conditional model each batch's labels: it asks for labels it does
/// not have (before writing anything), rejects a label the model has no class for, learns from
/// labelled images, and its validation bpd is `log p(x | y)`'s, again after reloading.
#[test]
fn the_trainer_learns_from_labels_and_asks_for_them() {
    use dfdx_flows::train::{evaluate_bpd, train, Images, RunDir, TrainConfig};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dev = Cpu::seed_from_u64(10);
    let (pixels, classes) = two_class_batch(3, 64);
    let pixels: Vec<u8> = pixels.iter().map(|&v| v as u8).collect();
    let labels: Vec<u8> = classes.iter().map(|&c| c as u8).collect();
    let config = TrainConfig {
        epochs: 3,
        batch_size: 8,
        lr: 5e-3,
        samples: 4,
        ..TrainConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |model: &mut ImageFlow<Tiny, 2>, train_set: Images, val_set: Images, dir: &str| {
        train(
            model,
            "tiny-classes",
            &dev,
            train_set,
            val_set,
            &config,
            &RunDir(tmp.path().join(dir)),
            false,
            Arc::new(AtomicBool::new(false)),
        )
    };
    let mut model = ImageFlow::<Tiny, 2>::try_build_conditional(&dev).unwrap();
    let err = run(&mut model, (&pixels).into(), (&pixels).into(), "none").unwrap_err();
    assert!(
        err.to_string()
            .contains("conditioned on 2 classes, but the training images have no labels"),
        "{err}"
    );
    assert!(!tmp.path().join("none").exists());
    let mut three = labels.clone();
    three[5] = 2;
    let err = run(
        &mut model,
        Images::labelled(&pixels, &three),
        Images::labelled(&pixels, &labels),
        "three",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("label 2 of training image 5 is not a class of this model"),
        "{err}"
    );
    let err = run(
        &mut model,
        Images::labelled(&pixels, &labels),
        Images::labelled(&pixels, &labels[..10]),
        "short",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("10 labels for 64 validation images"),
        "{err}"
    );

    let history = run(
        &mut model,
        Images::labelled(&pixels, &labels),
        Images::labelled(&pixels, &labels),
        "run",
    )
    .unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[2].val_bpd < history[0].val_bpd, "{history:?}");
    // The validation bpd is log p(x | y)'s with the labels given: swapping them costs, since
    // the trainer paired each image with its own label.
    let val = Images::labelled(&pixels, &labels);
    let bpd = evaluate_bpd(&model, &dev, val, 16, 7).unwrap();
    let swapped: Vec<u8> = labels.iter().map(|l| 1 - l).collect();
    let swapped_bpd =
        evaluate_bpd(&model, &dev, Images::labelled(&pixels, &swapped), 16, 7).unwrap();
    assert!(
        swapped_bpd > bpd,
        "right labels {bpd}, swapped {swapped_bpd}"
    );

    // Reloaded from its best checkpoint (the last: the bpd fell), the same bpd.
    let mut reloaded = ImageFlow::<Tiny, 2>::try_build_conditional(&dev).unwrap();
    let best =
        dfdx_flows::checkpoint::resolve(&tmp.path().join("run/checkpoints"), "best").unwrap();
    dfdx_flows::checkpoint::load_weights(&best.join("model.safetensors"), &mut reloaded).unwrap();
    let again = evaluate_bpd(&reloaded, &dev, val, 16, 7).unwrap();
    assert!((again - bpd).abs() < 1e-9, "{bpd} vs {again}");
}
