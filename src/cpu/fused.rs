//! [`FusedOps`] for `Cpu`: each op one pass forward and one backward over host copies, parallel
//! over the images of the batch ([`elementwise`](super::elementwise) has the kernels).
use super::elementwise::*;
use super::host::{add_into, host_copy, take_grad};
use crate::nn::FusedOps;
use dfdx::prelude::*;

macro_rules! cpu_fused_impl {
    ($E:ty) => {
        impl FusedOps<$E> for Cpu {
            fn try_concat_elu<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<$E, Self>>(
                x: Tensor<(usize, C, H, W), $E, Self, T>,
                c2: C2,
            ) -> Result<Tensor<(usize, C2, H, W), $E, Self, T>, Self::Err> {
                let shape = *x.shape();
                let (c, hw) = (shape.1.size(), shape.2.size() * shape.3.size());
                assert_eq!(
                    c2.size(),
                    2 * c,
                    "concat_elu: output must have 2·C channels"
                );
                let (x, mut tape) = x.try_reshape_like(&shape)?.split_tape();
                let xv = host_copy(&x);
                let out = x.device().tensor_from_vec(
                    concat_elu_forward(&xv, c, hw),
                    (shape.0, c2, shape.2, shape.3),
                );
                if T::OWNS_TAPE {
                    let out_ref = out.clone();
                    tape.add_backward_op(move |grads| {
                        let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let gx = concat_elu_backward(&xv, &go, c, hw);
                        add_into(grads.get_or_alloc_mut(&x)?, &gx);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }

            fn try_layer_norm_channels<C: Dim, H: Dim, W: Dim, T: Tape<$E, Self>>(
                x: Tensor<(usize, C, H, W), $E, Self, T>,
                gamma: &Tensor<(Const<1>, C, Const<1>, Const<1>), $E, Self>,
                beta: &Tensor<(Const<1>, C, Const<1>, Const<1>), $E, Self>,
                eps: f64,
            ) -> Result<Tensor<(usize, C, H, W), $E, Self, T>, Self::Err> {
                let shape = *x.shape();
                let (c, hw) = (shape.1.size(), shape.2.size() * shape.3.size());
                let (x, mut tape) = x.try_reshape_like(&shape)?.split_tape();
                let (xv, gv, bv) = (host_copy(&x), host_copy(gamma), host_copy(beta));
                let (mean, rstd) = layer_norm_stats(&xv, c, hw, eps);
                let out = layer_norm_forward(&xv, &gv, &bv, &mean, &rstd, c, hw);
                let out = x.device().tensor_from_vec(out, shape);
                if T::OWNS_TAPE {
                    let (out_ref, gamma, beta) = (out.clone(), gamma.clone(), beta.clone());
                    tape.add_backward_op(move |grads| {
                        let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let (gx, g_gamma, g_beta) =
                            layer_norm_backward(&xv, &gv, &mean, &rstd, &go, c, hw);
                        add_into(grads.get_or_alloc_mut(&x)?, &gx);
                        add_into(grads.get_or_alloc_mut(&gamma)?, &g_gamma);
                        add_into(grads.get_or_alloc_mut(&beta)?, &g_beta);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }

            fn try_gated_residual<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<$E, Self>>(
                x: Tensor<(usize, C, H, W), $E, Self, T>,
                h: Tensor<(usize, C2, H, W), $E, Self, T>,
            ) -> Result<Tensor<(usize, C, H, W), $E, Self, T>, Self::Err> {
                let shape = *x.shape();
                let (c, hw) = (shape.1.size(), shape.2.size() * shape.3.size());
                assert_eq!(
                    h.shape().1.size(),
                    2 * c,
                    "gated residual: h must have 2·C channels"
                );
                let h_shape = *h.shape();
                let (x, tape_x) = x.try_reshape_like(&shape)?.split_tape();
                let (h, tape_h) = h.try_reshape_like(&h_shape)?.split_tape();
                let mut tape = tape_x.merge(tape_h);
                let hv = host_copy(&h);
                let out = gated_forward(&host_copy(&x), &hv, c, hw);
                let out = x.device().tensor_from_vec(out, shape);
                if T::OWNS_TAPE {
                    let out_ref = out.clone();
                    tape.add_backward_op(move |grads| {
                        let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let gh = gated_backward(&hv, &go, c, hw);
                        add_into(grads.get_or_alloc_mut(&x)?, &go);
                        add_into(grads.get_or_alloc_mut(&h)?, &gh);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }

            fn try_channel_affine<C: Dim, H: Dim, W: Dim, T: Tape<$E, Self>>(
                x: Tensor<(usize, C, H, W), $E, Self, T>,
                loc: &Tensor<(C,), $E, Self>,
                logs: &Tensor<(C,), $E, Self>,
                relu: bool,
            ) -> Result<Tensor<(usize, C, H, W), $E, Self, T>, Self::Err> {
                let shape = *x.shape();
                let hw = shape.2.size() * shape.3.size();
                let (x, mut tape) = x.try_reshape_like(&shape)?.split_tape();
                let scale: Vec<$E> = host_copy(logs).iter().map(|v| v.exp()).collect();
                let out = channel_affine_forward(&host_copy(&x), &host_copy(loc), &scale, hw, relu);
                let out = x.device().tensor_from_vec(out, shape);
                if T::OWNS_TAPE {
                    // The backward pass needs the output only: the input's storage is freed.
                    let (x, out_ref, loc, logs) =
                        (x.ghost(), out.clone(), loc.clone(), logs.clone());
                    tape.add_backward_op(move |grads| {
                        let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let (gx, g_loc, g_logs) =
                            channel_affine_backward(&host_copy(&out_ref), &go, &scale, hw, relu);
                        add_into(grads.get_or_alloc_mut(&x)?, &gx);
                        add_into(grads.get_or_alloc_mut(&loc)?, &g_loc);
                        add_into(grads.get_or_alloc_mut(&logs)?, &g_logs);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }
        }
    };
}

cpu_fused_impl!(f32);
cpu_fused_impl!(f64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::fused::{
        channel_affine_composed, concat_elu_composed, gated_residual_composed, layer_norm_composed,
    };

    type X = Tensor<(usize, Const<3>, Const<4>, Const<5>), f64, Cpu>;

    fn close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() < 1e-12 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn f32_kernels_match_the_composition() {
        let dev = Cpu::seed_from_u64(3);
        let x: Tensor<(usize, Const<3>, Const<4>, Const<5>), f32, Cpu> =
            dev.sample_normal_like(&(2, Const, Const, Const)) * 4.0;
        let fused = Cpu::try_concat_elu(x.clone(), Const::<6>).unwrap();
        let composed = concat_elu_composed(x, Const::<6>).unwrap();
        for (a, b) in fused.as_vec().iter().zip(composed.as_vec()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn concat_elu_matches_the_composition() {
        let dev = Cpu::seed_from_u64(1);
        let x: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let r: Tensor<(usize, Const<6>, Const<4>, Const<5>), f64, Cpu> =
            dev.sample_normal_like(&(2, Const, Const, Const));
        let fused = Cpu::try_concat_elu(x.leaky_trace(), Const::<6>).unwrap();
        let composed = concat_elu_composed(x.leaky_trace(), Const::<6>).unwrap();
        close(&fused.as_vec(), &composed.as_vec(), "value");
        let gf = (fused * r.clone()).sum().backward();
        let gc = (composed * r).sum().backward();
        close(&gf.get(&x).as_vec(), &gc.get(&x).as_vec(), "grad x");
    }

    /// The composition as the CUDA path feeds it: a non-contiguous input (convolution outputs
    /// are permuted views of a channels-last buffer) with exact zeros, where ELU's derivative
    /// is 1 from both sides.
    #[test]
    fn concat_elu_composition_takes_strided_inputs_and_zeros() {
        let dev = Cpu::seed_from_u64(4);
        let mut values = dev
            .sample_normal_like(&(2, Const::<4>, Const::<5>, Const::<3>))
            .as_vec();
        values.iter_mut().step_by(7).for_each(|v| *v = 0.0);
        let channels_last: Tensor<(usize, Const<4>, Const<5>, Const<3>), f64, Cpu> =
            dev.tensor_from_vec(values, (2, Const, Const, Const));
        let r: Tensor<(usize, Const<6>, Const<4>, Const<5>), f64, Cpu> =
            dev.sample_normal_like(&(2, Const, Const, Const));
        let strided = channels_last
            .leaky_trace()
            .permute::<(usize, Const<3>, Const<4>, Const<5>), _>();
        let contiguous: X = dev.tensor_from_vec(strided.as_vec(), (2, Const, Const, Const));
        let composed = concat_elu_composed(strided, Const::<6>).unwrap();
        let fused = Cpu::try_concat_elu(contiguous.leaky_trace(), Const::<6>).unwrap();
        close(&fused.as_vec(), &composed.as_vec(), "value");
        let gf = (fused * r.clone()).sum().backward();
        let gc = (composed * r).sum().backward();
        let grad_strided = dev
            .tensor_from_vec(
                gc.get(&channels_last).as_vec(),
                (2, Const::<4>, Const::<5>, Const::<3>),
            )
            .permute::<(usize, Const<3>, Const<4>, Const<5>), _>();
        close(
            &gf.get(&contiguous).as_vec(),
            &grad_strided.as_vec(),
            "grad x",
        );
    }

    #[test]
    fn layer_norm_matches_the_composition() {
        let dev = Cpu::seed_from_u64(2);
        let x: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let gamma: Tensor<Rank4<1, 3, 1, 1>, f64, Cpu> = dev.sample_normal();
        let beta: Tensor<Rank4<1, 3, 1, 1>, f64, Cpu> = dev.sample_normal();
        let r: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let fused = Cpu::try_layer_norm_channels(x.leaky_trace(), &gamma, &beta, 1e-5).unwrap();
        let composed = layer_norm_composed(x.leaky_trace(), &gamma, &beta, 1e-5).unwrap();
        close(&fused.as_vec(), &composed.as_vec(), "value");
        let gf = (fused * r.clone()).sum().backward();
        let gc = (composed * r).sum().backward();
        close(&gf.get(&x).as_vec(), &gc.get(&x).as_vec(), "grad x");
        close(
            &gf.get(&gamma).as_vec(),
            &gc.get(&gamma).as_vec(),
            "grad gamma",
        );
        close(
            &gf.get(&beta).as_vec(),
            &gc.get(&beta).as_vec(),
            "grad beta",
        );
    }

    #[test]
    fn gated_residual_matches_the_composition() {
        let dev = Cpu::seed_from_u64(3);
        let x: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let h: Tensor<(usize, Const<6>, Const<4>, Const<5>), f64, Cpu> =
            dev.sample_normal_like(&(2, Const, Const, Const));
        let r: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let fused = Cpu::try_gated_residual(x.leaky_trace(), h.leaky_trace()).unwrap();
        let composed = gated_residual_composed(x.leaky_trace(), h.leaky_trace()).unwrap();
        close(&fused.as_vec(), &composed.as_vec(), "value");
        let gf = (fused * r.clone()).sum().backward();
        let gc = (composed * r).sum().backward();
        close(&gf.get(&x).as_vec(), &gc.get(&x).as_vec(), "grad x");
        close(&gf.get(&h).as_vec(), &gc.get(&h).as_vec(), "grad h");
    }

    #[test]
    fn channel_affine_matches_the_composition_with_and_without_relu() {
        let dev = Cpu::seed_from_u64(5);
        let x: X = dev.sample_normal_like(&(2, Const, Const, Const));
        let loc: Tensor<(Const<3>,), f64, Cpu> = dev.sample_normal();
        let logs: Tensor<(Const<3>,), f64, Cpu> = dev.sample_normal();
        let r: X = dev.sample_normal_like(&(2, Const, Const, Const));
        for relu in [false, true] {
            let fused = Cpu::try_channel_affine(x.leaky_trace(), &loc, &logs, relu).unwrap();
            let composed = channel_affine_composed(x.leaky_trace(), &loc, &logs, relu).unwrap();
            close(&fused.as_vec(), &composed.as_vec(), "value");
            if relu {
                let values = fused.as_vec();
                assert!(values.contains(&0.0) && values.iter().any(|v| *v > 0.0));
            }
            let gf = (fused * r.clone()).sum().backward();
            let gc = (composed * r.clone()).sum().backward();
            close(&gf.get(&x).as_vec(), &gc.get(&x).as_vec(), "grad x");
            close(&gf.get(&loc).as_vec(), &gc.get(&loc).as_vec(), "grad loc");
            close(
                &gf.get(&logs).as_vec(),
                &gc.get(&logs).as_vec(),
                "grad logs",
            );
        }
    }
}
