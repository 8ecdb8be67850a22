//! A layer written outside the crate (`examples/custom_layer.rs`), and what
//! `dfdx_flows::testing::check_flow` catches in layers that are wrong.
#[path = "../../examples/custom_layer.rs"]
#[allow(dead_code)]
mod example;

use dfdx::prelude::*;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, check_flow_with, perturb_params, CheckOptions};

#[test]
fn the_example_layer_checks_trains_and_inverts() {
    let report = example::run(10).unwrap();
    assert!(report.check.round_trip <= 1e-9 && report.check.gradients_checked == 2);
    assert!(
        report.bpd_after < report.bpd_before,
        "training did not lower the bpd: {} -> {}",
        report.bpd_before,
        report.bpd_after
    );
    assert!(
        report.slope_change > 1e-4,
        "the layer's slopes did not move"
    );
    assert_eq!(report.round_trip, 0.0, "pixels did not come back exactly");
}

#[test]
fn check_flow_passes_the_library_layers() {
    let dev = Cpu::seed_from_u64(11);
    let mut checker = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Cpu>, f64>();
    perturb_params(&mut checker, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<1, 4, 4>::with_batch(2));
    let report = check_flow(&checker, &x).unwrap();
    assert!(report.gradients_checked > 20, "{report:?}");

    let mut channel = dev.build_module::<ChannelCoupling<4, 2, 2, 4, true, f64, Cpu>, f64>();
    perturb_params(&mut channel, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<4, 2, 2>::with_batch(2));
    check_flow(&channel, &x).unwrap();

    // A chain with a split: fewer outputs than inputs, so no Jacobian, but the round trip (with
    // the recorded latent) and the gradients.
    type WithSplit = Chain<(
        Squeeze<1, 4, 4>,
        ChannelCoupling<4, 2, 2, 4, false, f64, Cpu>,
        Split<4, 2, 2>,
    )>;
    let mut flow = dev.build_module::<WithSplit, f64>();
    perturb_params(&mut flow, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<1, 4, 4>::with_batch(2));
    let opts = CheckOptions {
        log_det_check: false,
        ..CheckOptions::default()
    };
    check_flow_with(&flow, &x, &opts).unwrap();
    let err = check_flow(&flow, &x).unwrap_err();
    assert!(err.contains("log_det_check: false"), "{err}");
}

/// A library coupling with a wrong log-determinant (off by one per image).
#[derive(Clone, Debug)]
struct WrongLogDet(CheckerboardCoupling<1, 4, 4, 4, false, f64, Cpu>);

/// A per-pixel scale `e^a` whose parameter meets the input without its tape (dfdx records
/// nothing for ops on a tape-less tensor): the forward pass is right, the gradient of `a` is 0.
#[derive(Clone, Debug)]
struct LostGradient {
    log_scale: Tensor<(Const<1>,), f64, Cpu>,
}

impl TensorCollection<f64, Cpu> for WrongLogDet {
    type To<E2: Dtype, D2: Device<E2>> = WrongLogDet;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), |_| {
            unreachable!("not converted in this test")
        })
    }
}

impl Flow<f64, Cpu> for WrongLogDet {
    type In = Img<1, 4, 4>;
    type Out = Img<1, 4, 4>;
    fn try_forward<T: Tape<f64, Cpu>>(
        &self,
        x: Tensor<Self::In, f64, Cpu, T>,
        ldj: Ldj<f64, Cpu, T>,
        ctx: &mut FlowCtx<f64>,
    ) -> Result<(Tensor<Self::Out, f64, Cpu, T>, Ldj<f64, Cpu, T>), FlowError<CpuError>> {
        let (z, ldj) = self.0.try_forward(x, ldj, ctx)?;
        Ok((z, ldj.try_add(1.0)?))
    }
    fn try_inverse(
        &self,
        z: Tensor<Self::Out, f64, Cpu>,
        ctx: &mut FlowCtx<f64>,
    ) -> Result<Tensor<Self::In, f64, Cpu>, FlowError<CpuError>> {
        self.0.try_inverse(z, ctx)
    }
    fn name(&self) -> String {
        "WrongLogDet".into()
    }
}

impl TensorCollection<f64, Cpu> for LostGradient {
    type To<E2: Dtype, D2: Device<E2>> = LostGradient;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "log_scale",
                |s| &s.log_scale,
                |s| &mut s.log_scale,
                TensorOptions::reset_to_zeros(),
            ),
            |_| unreachable!("not converted in this test"),
        )
    }
}

impl Flow<f64, Cpu> for LostGradient {
    type In = Img<1, 2, 2>;
    type Out = Img<1, 2, 2>;
    fn try_forward<T: Tape<f64, Cpu>>(
        &self,
        x: Tensor<Self::In, f64, Cpu, T>,
        ldj: Ldj<f64, Cpu, T>,
        _ctx: &mut FlowCtx<f64>,
    ) -> Result<(Tensor<Self::Out, f64, Cpu, T>, Ldj<f64, Cpu, T>), FlowError<CpuError>> {
        let shape = *x.shape();
        // The bug: no `retaped::<T>()` on the parameter before the broadcast.
        let scale = self.log_scale.clone().exp().broadcast_like(&shape);
        let per_image = self.log_scale.array()[0] * 4.0;
        let batch = shape.0;
        let layer_ldj: Tensor<(usize,), f64, Cpu> =
            x.device().tensor_from_vec(vec![per_image; batch], (batch,));
        let ldj = ldj.try_add(layer_ldj)?;
        Ok((x.try_mul(scale)?, ldj))
    }
    fn try_inverse(
        &self,
        z: Tensor<Self::Out, f64, Cpu>,
        _ctx: &mut FlowCtx<f64>,
    ) -> Result<Tensor<Self::In, f64, Cpu>, FlowError<CpuError>> {
        let scale = self.log_scale.clone().exp().broadcast_like(z.shape());
        Ok(z.try_div(scale)?)
    }
    fn name(&self) -> String {
        "LostGradient".into()
    }
}

#[test]
fn check_flow_catches_a_wrong_log_determinant() {
    let dev = Cpu::seed_from_u64(12);
    let mut inner = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Cpu>, f64>();
    perturb_params(&mut inner, 0.3).unwrap();
    let x = dev.sample_normal_like(&Img::<1, 4, 4>::with_batch(2));
    let err = check_flow(&WrongLogDet(inner), &x).unwrap_err();
    assert!(err.contains("log-determinant"), "{err}");
}

#[test]
fn check_flow_catches_a_lost_parameter_gradient() {
    let dev = Cpu::seed_from_u64(13);
    let layer = LostGradient {
        log_scale: dev.tensor([0.3]),
    };
    let x = dev.sample_normal_like(&Img::<1, 2, 2>::with_batch(2));
    let err = check_flow(&layer, &x).unwrap_err();
    assert!(err.contains("gradient of `log_scale`"), "{err}");
}
