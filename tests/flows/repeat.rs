//! `Repeat<Step, K>` (issue 19): K steps with their own parameters, exact in both directions,
//! initialised step after step.
use dfdx::prelude::*;
use dfdx_flows::params::tensor_entries;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, perturb_params};

type Step = Chain<(
    ActNorm<4, 2, 2, f64, Cpu>,
    InvConv1x1<4, 2, 2, f64, Cpu>,
    ChannelCoupling<4, 2, 2, 4, false, f64, Cpu>,
)>;

#[test]
fn repeat_inverts_and_has_the_right_log_det_and_gradients() {
    let dev = Cpu::seed_from_u64(1);
    let mut level = dev.build_module::<Repeat<Step, 3>, f64>();
    perturb_params(&mut level, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 2, 2>::with_batch(2));
    let report = check_flow(&level, &x).unwrap();
    assert!(report.round_trip < 1e-9, "{report:?}");
    assert!(report.log_det < 1e-6, "{report:?}");
    assert!(report.gradients_checked >= 3 * 4, "{report:?}");
}

#[test]
fn each_step_has_its_own_parameters_and_names() {
    let dev = Cpu::seed_from_u64(2);
    let level = dev.build_module::<Repeat<Step, 3>, f64>();
    let names: Vec<String> = tensor_entries(&level).into_iter().map(|e| e.name).collect();
    for i in 0..3 {
        assert!(names.contains(&format!("{i}.1.lu")), "{names:?}");
        assert!(names.contains(&format!("{i}.0.initialized")), "{names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("3.")));
    let step = dev.build_module::<Step, f64>();
    assert_eq!(
        level.num_trainable_params(),
        3 * step.num_trainable_params()
    );
    let (a, b) = (
        level.steps[0].0 .1.lu.as_vec(),
        level.steps[1].0 .1.lu.as_vec(),
    );
    assert_ne!(a, b, "each step draws its own rotation");
    let mut rows = Vec::new();
    level.describe(&mut rows);
    assert_eq!(rows.len(), 9);
}

/// Initialisation runs step after step: the ActNorm of step 2 sees what step 1 outputs, so
/// each ActNorm's output has zero mean and unit variance per channel on the batch.
#[test]
fn repeat_initialises_each_step_on_the_output_of_the_one_before() {
    type NormStep = Chain<(ActNorm<2, 3, 3, f64, Cpu>, InvConv1x1<2, 3, 3, f64, Cpu>)>;
    let dev = Cpu::seed_from_u64(3);
    let mut level = dev.build_module::<Repeat<NormStep, 2>, f64>();
    assert!(level.needs_initialization());
    let values: Vec<f64> = (0..4 * 18)
        .map(|i| ((i * 7) % 11) as f64 * 0.3 + 2.0)
        .collect();
    let x = dev.tensor_from_vec(values, Img::<2, 3, 3>::with_batch(4));
    level
        .try_initialize(x.clone(), &mut FlowCtx::default())
        .unwrap();
    assert!(!level.needs_initialization());
    // The second ActNorm's input: the first step's output.
    let ldj = dev.zeros_like(&(4,));
    let (mid, _) = level.steps[0]
        .try_forward(x, ldj.clone(), &mut FlowCtx::default())
        .unwrap();
    let (normed, _) = level.steps[1]
        .0
         .0
        .try_forward(mid, ldj, &mut FlowCtx::default())
        .unwrap();
    let v = normed.as_vec();
    for c in 0..2 {
        let xs: Vec<f64> = v
            .chunks_exact(18)
            .flat_map(|img| img[c * 9..(c + 1) * 9].to_vec())
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12,
            "{mean} {var}"
        );
    }
}

#[test]
fn repeat_fits_in_a_chain_between_squeezes() {
    type Flow2 = Chain<(
        Dequantization<1, 4, 4>,
        Squeeze<1, 4, 4>,
        Repeat<
            Chain<(
                ActNorm<4, 2, 2, f32, Cpu>,
                InvConv1x1<4, 2, 2, f32, Cpu>,
                ChannelCoupling<4, 2, 2, 8, false, f32, Cpu>,
            )>,
            2,
        >,
    )>;
    let dev = Cpu::seed_from_u64(4);
    let model = ImageFlow::<Flow2>::build(&dev);
    let x = dev.tensor_from_vec(
        (0..3 * 16).map(|i| ((i * 29) % 256) as f32).collect(),
        Img::<1, 4, 4>::with_batch(3),
    );
    let bpd = model.bpd(x, &mut FlowCtx::default()).unwrap().array();
    assert!(bpd.is_finite() && bpd > 0.0);
}
