//! The affine coupling transform ([`AffineCouplingOps`]) on the CPU: one pass per image, in
//! parallel, forward and backward, instead of the dozen single-threaded dfdx ops of the
//! composition (which were most of the serial time of a training step).
use super::host::{add_into, host_copy, take_grad};
use super::simd::Kernel;
use crate::dtype::FlowDtype;
use crate::layers::coupling_op::{affine_coupling_composed, AffineCouplingOps};
use crate::shape::Double;
use dfdx::prelude::*;
use rayon::prelude::*;

/// Per-channel constants of the transform: `e^f` for each channel's scaling factor `f`.
fn channel_scales<E: Kernel>(scaling_factor: &[E]) -> Vec<E> {
    scaling_factor.iter().map(|f| f.exp()).collect()
}

simd_kernel! {
    /// Forward (or, with `reverse`, inverse) transform of one image: `zo` from `z`, the raw
    /// scale and shift `h` (2·C·hw), the mask (1 = kept) and the per-channel `e^f`; returns
    /// `Σ s`.
    fn affine_image<E: Kernel>(
        zo: &mut [E],
        z: &[E],
        h: &[E],
        keep: &[E],
        scales: &[E],
        reverse: bool,
    ) -> E {
        let n = z.len();
        let hw = n / scales.len();
        let (h_s, h_t) = h.split_at(n);
        let mut log_det = [E::zero(); 16];
        for (ch, &e) in scales.iter().enumerate() {
            let at = ch * hw..(ch + 1) * hw;
            let inv_e = E::one() / e;
            let rows = zo[at.clone()]
                .iter_mut()
                .zip(&z[at.clone()])
                .zip(&h_s[at.clone()])
                .zip(&h_t[at.clone()])
                .zip(&keep[at]);
            for (i, ((((o, &z), &hs), &ht), &k)) in rows.enumerate() {
                let u = E::one() - k;
                let s = (hs * inv_e).ktanh() * e * u;
                let t = ht * u;
                *o = if reverse {
                    z * (-s).kexp() - t
                } else {
                    (z + t) * s.kexp()
                };
                // 16 partial sums: one running sum would serialize the loop.
                log_det[i % 16] = log_det[i % 16] + s;
            }
        }
        log_det.iter().fold(E::zero(), |a, &v| a + v)
    }
}

simd_kernel! {
    /// Backward pass of the forward transform for one image (its input `z`): writes the
    /// gradients of `z` and of `h` (raw scale, raw shift) and adds the scaling factors'
    /// gradients to `g_f`.
    #[allow(clippy::too_many_arguments)]
    fn affine_backward_image<E: Kernel>(
        g_z: &mut [E],
        g_h: &mut [E],
        g_f: &mut [E],
        go: &[E],
        g_log_det: E,
        z: &[E],
        h: &[E],
        keep: &[E],
        scales: &[E],
    ) {
        let n = z.len();
        let hw = n / scales.len();
        let (h_s, h_t) = h.split_at(n);
        let (g_hs, g_ht) = g_h.split_at_mut(n);
        for (ch, (&e, g_f)) in scales.iter().zip(g_f.iter_mut()).enumerate() {
            let at = ch * hw..(ch + 1) * hw;
            let inv_e = E::one() / e;
            let mut sum_f = [E::zero(); 16];
            let rows = g_z[at.clone()]
                .iter_mut()
                .zip(&mut g_hs[at.clone()])
                .zip(&mut g_ht[at.clone()])
                .zip(&go[at.clone()])
                .zip(&z[at.clone()])
                .zip(h_s[at.clone()].iter().zip(&h_t[at.clone()]))
                .zip(&keep[at]);
            for (i, ((((((gz, ghs), ght), &go), &z), (&hs, &ht)), &k)) in rows.enumerate() {
                // zo = (z + t) · e^s, s = tanh(hs / e) · e · u, t = ht · u (u = 1 − mask).
                let u = E::one() - k;
                let th = (hs * inv_e).ktanh();
                let d_tanh = E::one() - th * th;
                let es = (th * e * u).kexp();
                *gz = go * es;
                *ght = *gz * u;
                // ∂zo/∂s = zo, recomputed rather than kept.
                let g_s = go * (z + ht * u) * es + g_log_det;
                *ghs = g_s * u * d_tanh;
                // ∂s/∂f = u · (e · tanh − hs · (1 − tanh²)).
                sum_f[i % 16] = sum_f[i % 16] + g_s * u * (e * th - hs * d_tanh);
            }
            *g_f = *g_f + sum_f.iter().fold(E::zero(), |a, &v| a + v);
        }
    }
}

/// The CPU op: one tape entry for the transform, parallel over the images. Gradients for the
/// forward direction only: the caller runs the inverse with a tape (which the flows never do:
/// they invert without gradients) as the composition.
#[allow(clippy::type_complexity)]
pub(crate) fn affine_coupling_cpu<
    C: ConstDim + Double,
    H: Dim,
    W: Dim,
    E: FlowDtype + Kernel,
    T: Tape<E, Cpu>,
>(
    z: Tensor<(usize, C, H, W), E, Cpu, T>,
    h: Tensor<(usize, C::Output, H, W), E, Cpu, T>,
    scaling_factor: &Tensor<(C,), E, Cpu>,
    mask: &Tensor<(usize, C, H, W), E, Cpu>,
    reverse: bool,
) -> Result<
    (
        Tensor<(usize, C, H, W), E, Cpu, T>,
        Tensor<(usize,), E, Cpu, T>,
    ),
    CpuError,
> {
    assert!(
        !(reverse && T::OWNS_TAPE),
        "affine coupling: the CPU op has no gradient of the inverse"
    );
    let shape = *z.shape();
    let h_shape = *h.shape();
    let (batch, n) = (shape.0, shape.num_elements() / shape.0.max(1));
    // Gradient buffers follow storage order: make the inputs contiguous (no-ops if they are).
    let (z, tape_z) = z.try_reshape_like(&shape)?.split_tape();
    let (h, tape_h) = h.try_reshape_like(&h_shape)?.split_tape();
    let mut tape = tape_z.merge(tape_h);
    let dev = z.device().clone();
    let (zv, hv) = (host_copy(&z), host_copy(&h));
    let scales = channel_scales(&host_copy(scaling_factor));
    // The mask is the same for every image: take image 0 of the (broadcast) expanded mask.
    let keep = if batch == 0 {
        Vec::new()
    } else {
        host_copy(&mask.clone().try_slice((0..1, .., .., ..))?)
    };
    let mut out = vec![E::zero(); zv.len()];
    let mut log_det = vec![E::zero(); batch];
    if n > 0 {
        out.par_chunks_mut(n)
            .zip(zv.par_chunks(n))
            .zip(hv.par_chunks(2 * n))
            .zip(log_det.par_iter_mut())
            .for_each(|(((o, z), h), ld)| *ld = affine_image(o, z, h, &keep, &scales, reverse));
    }
    let out = dev.try_tensor_from_vec(out, shape)?;
    let log_det = dev.try_tensor_from_vec(log_det, (batch,))?;
    if T::OWNS_TAPE {
        let (out_ref, ld_ref, z_ref, h_ref) = (out.ghost(), log_det.ghost(), z.ghost(), h.ghost());
        let f_ref = scaling_factor.clone();
        tape.add_backward_op(move |grads| {
            let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
            let g_ld = take_grad(grads.get_or_alloc_mut(&ld_ref)?);
            let c = scales.len();
            let mut g_z = vec![E::zero(); zv.len()];
            let mut g_h = vec![E::zero(); hv.len()];
            // Per-image partial gradients of the scaling factors, summed in image order (results
            // do not depend on scheduling).
            let mut g_f_parts = vec![E::zero(); batch * c];
            if n > 0 {
                g_z.par_chunks_mut(n)
                    .zip(g_h.par_chunks_mut(2 * n))
                    .zip(g_f_parts.par_chunks_mut(c))
                    .zip(go.par_chunks(n))
                    .zip(zv.par_chunks(n).zip(hv.par_chunks(2 * n)))
                    .zip(g_ld.par_iter())
                    .for_each(|(((((g_z, g_h), g_f), go), (z, h)), &g_ld)| {
                        affine_backward_image(g_z, g_h, g_f, go, g_ld, z, h, &keep, &scales)
                    });
            }
            drop(go);
            let mut g_f = vec![E::zero(); c];
            for part in g_f_parts.chunks_exact(c) {
                add_into(&mut g_f, part);
            }
            add_into(grads.get_or_alloc_mut(&z_ref)?, &g_z);
            add_into(grads.get_or_alloc_mut(&h_ref)?, &g_h);
            add_into(grads.get_or_alloc_mut(&f_ref)?, &g_f);
            Ok(())
        });
    }
    Ok((out.put_tape(tape), log_det.put_tape(T::default())))
}

/// The transform as one parallel pass on the CPU (`affine_coupling_cpu`).
impl<E: FlowDtype + Kernel> AffineCouplingOps<E> for Cpu
where
    Cpu: Device<E>,
{
    fn try_affine_coupling<C: ConstDim + Double, H: Dim, W: Dim, T: Tape<E, Self>>(
        z: Tensor<(usize, C, H, W), E, Self, T>,
        h: Tensor<(usize, C::Output, H, W), E, Self, T>,
        scaling_factor: &Tensor<(C,), E, Self>,
        mask: &Tensor<(usize, C, H, W), E, Self>,
        reverse: bool,
    ) -> Result<
        (
            Tensor<(usize, C, H, W), E, Self, T>,
            Tensor<(usize,), E, Self, T>,
        ),
        Self::Err,
    > {
        if reverse && T::OWNS_TAPE {
            // The flows invert without gradients; this is for completeness.
            return affine_coupling_composed(z, h, scaling_factor, mask, reverse);
        }
        affine_coupling_cpu(z, h, scaling_factor, mask, reverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::coupling_op::AffineCouplingOps;

    type Z = Tensor<(usize, Const<2>, Const<3>, Const<5>), f64, Cpu>;

    /// The CPU op against the composition of dfdx ops, in f64: outputs, log-determinants and
    /// the gradients of z, h and the scaling factors, forward and (without a tape) reverse, with
    /// a mask that keeps some values of each channel.
    #[test]
    fn fused_affine_coupling_matches_the_composition() {
        let dev = Cpu::seed_from_u64(7);
        let z: Z = dev.sample_normal_like(&(4, Const, Const, Const));
        let h: Tensor<(usize, Const<4>, Const<3>, Const<5>), f64, Cpu> =
            dev.sample_normal_like(&(4, Const, Const, Const)) * 2.0;
        let f: Tensor<(Const<2>,), f64, Cpu> = dev.sample_normal() * 0.5;
        let mask_values: Vec<f64> = (0..30).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
        let mask: Tensor<(Const<2>, Const<3>, Const<5>), f64, Cpu> =
            dev.tensor_from_vec(mask_values, (Const, Const, Const));
        let mask = mask.broadcast_like(&(4, Const::<2>, Const::<3>, Const::<5>));
        let weights: Z = dev.sample_normal_like(&(4, Const, Const, Const));
        let ld_weights: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(4,));

        let run = |fused: bool| {
            let grads = Gradients::leaky();
            let z_t = z.clone().traced(grads);
            let h_t = h.clone().retaped::<OwnedTape<f64, Cpu>>();
            let f_t = f.clone();
            let (zo, ld) = if fused {
                Cpu::try_affine_coupling(z_t, h_t, &f_t, &mask, false).unwrap()
            } else {
                affine_coupling_composed(z_t, h_t, &f_t, &mask, false).unwrap()
            };
            let values = (
                zo.retaped::<NoneTape>().as_vec(),
                ld.retaped::<NoneTape>().as_vec(),
            );
            let loss = (zo * weights.clone()).sum() + (ld * ld_weights.clone()).sum();
            let g = loss.backward();
            (
                values,
                g.get(&z).as_vec(),
                g.get(&h).as_vec(),
                g.get(&f).as_vec(),
            )
        };
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() < 1e-12 * (1.0 + q.abs()),
                    "{what}[{i}]: {p} vs {q}"
                );
            }
        };
        let (fused, composed) = (run(true), run(false));
        close(&fused.0 .0, &composed.0 .0, "z'");
        close(&fused.0 .1, &composed.0 .1, "log det");
        close(&fused.1, &composed.1, "grad z");
        close(&fused.2, &composed.2, "grad h");
        close(&fused.3, &composed.3, "grad scaling factor");
        assert!(
            fused.3.iter().all(|g| g.abs() > 1e-6),
            "the scaling factors get gradient"
        );

        // The inverse without a tape, and that it inverts.
        let (zo, _) = Cpu::try_affine_coupling(z.clone(), h.clone(), &f, &mask, false).unwrap();
        let (back, ld_back) =
            Cpu::try_affine_coupling(zo.clone(), h.clone(), &f, &mask, true).unwrap();
        let (back_c, ld_c) = affine_coupling_composed(zo, h.clone(), &f, &mask, true).unwrap();
        close(&back.as_vec(), &back_c.as_vec(), "inverse");
        close(&ld_back.as_vec(), &ld_c.as_vec(), "inverse log det");
        close(&back.as_vec(), &z.as_vec(), "inverse(forward(z))");
    }

    /// The f32 kernels (vectorized `exp` and `tanh`) against the f64 ones.
    #[test]
    fn f32_affine_coupling_is_close_to_f64() {
        let dev = Cpu::seed_from_u64(8);
        let z: Z = dev.sample_normal_like(&(3, Const, Const, Const));
        let h: Tensor<(usize, Const<4>, Const<3>, Const<5>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const, Const, Const)) * 3.0;
        let f: Tensor<(Const<2>,), f64, Cpu> = dev.sample_normal();
        let mask: Tensor<(usize, Const<2>, Const<3>, Const<5>), f64, Cpu> = dev
            .tensor_from_vec(
                (0..30).map(|i| (i % 2) as f64).collect(),
                (Const, Const, Const),
            )
            .broadcast_like(&(3, Const, Const, Const));
        let (zo, ld) = Cpu::try_affine_coupling(z.clone(), h.clone(), &f, &mask, false).unwrap();
        let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let dev32 = Cpu::default();
        let z32 = dev32.tensor_from_vec(to32(z.as_vec()), *z.shape());
        let h32 = dev32.tensor_from_vec(to32(h.as_vec()), *h.shape());
        let f32_ = dev32.tensor_from_vec(to32(f.as_vec()), *f.shape());
        let m32 = dev32.tensor_from_vec(to32(mask.as_vec()), *mask.shape());
        let (zo32, ld32) = Cpu::try_affine_coupling(z32, h32, &f32_, &m32, false).unwrap();
        for (a, b) in zo32.as_vec().iter().zip(zo.as_vec()) {
            assert!((*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in ld32.as_vec().iter().zip(ld.as_vec()) {
            assert!((*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
