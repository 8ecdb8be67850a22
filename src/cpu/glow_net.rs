//! Glow's coupling network (`layers::GlowNet`) as one autograd op on the CPU ([`GlowNetOps`]
//! for `Cpu`).
//!
//! The same scheme as the tutorial's fused network (`conditioner`): each image goes through the
//! layers back to back on one thread, its intermediates in a per-thread scratch buffer, and the
//! forward pass keeps per image only what the backward pass reads: the outputs of the two
//! ActNorm + ReLU layers (ActNorm's gradients follow from its output, see
//! `channel_affine_backward_image`). The class rows of a class-conditional coupling
//! (`hidden_bias`) are folded into the first ActNorm's shift per image: `(h + b + loc)·s`, so
//! the shift's gradient of an image is its row's gradient. Parameter gradients are summed per
//! chunk of images ([`backward_chunk`]) and the chunk sums in order, so results do not depend on
//! the thread count.
use super::conv::{conv_image_backward, conv_image_forward, ConvWeight};
use super::conv_dims::ConvDims;
use super::elementwise::{channel_affine_backward_image, channel_affine_image};
use super::host::{add_into, backward_chunk, host_copy, take_grad};
use super::simd::{as_uninit_mut, assume_init_mut, Carve, Kernel};
use crate::dtype::FlowDtype;
use crate::nn::glow_net_op::{glow_net_composed, GlowNetOps, GlowNetParams};
use crate::nn::NetDevice;
use dfdx::prelude::*;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Channel counts and image size of one network application.
#[derive(Clone, Copy, Debug)]
struct GlowDims {
    batch: usize,
    c_in: usize,
    hidden: usize,
    c_out: usize,
    height: usize,
    width: usize,
}

impl GlowDims {
    fn hw(&self) -> usize {
        self.height * self.width
    }
    fn conv(&self, c_in: usize, c_out: usize, kernel: usize) -> ConvDims {
        ConvDims {
            batch: self.batch,
            c_in,
            c_out,
            height: self.height,
            width: self.width,
            kernel,
        }
    }
    /// `conv_in`: 3×3, c_in → hidden.
    fn first(&self) -> ConvDims {
        self.conv(self.c_in, self.hidden, 3)
    }
    /// `conv_mid`: 1×1, hidden → hidden.
    fn mid(&self) -> ConvDims {
        self.conv(self.hidden, self.hidden, 1)
    }
    /// `conv_out`: 3×3, hidden → c_out.
    fn last(&self) -> ConvDims {
        self.conv(self.hidden, self.c_out, 3)
    }
    /// Scratch of the network's largest convolution, forward or backward.
    fn conv_scratch(&self, backward: bool) -> usize {
        ConvDims::largest_scratch(&[self.first(), self.mid(), self.last()], backward)
    }
    /// Values kept per image for the backward pass: the two ActNorm + ReLU outputs.
    fn kept_per_image(&self) -> usize {
        2 * self.hidden * self.hw()
    }
    fn forward_scratch(&self) -> usize {
        // Convolution scratch, the pre-ActNorm plane stack, the image's shift, and room for the
        // kept values when they are not kept.
        self.conv_scratch(false) + self.hidden * self.hw() + self.hidden + self.kept_per_image()
    }
    fn backward_scratch(&self) -> usize {
        // Convolution scratch, the scaled output gradient, two hidden gradients, a shift sum.
        self.conv_scratch(true) + self.c_out * self.hw() + 2 * self.hidden * self.hw() + self.hidden
    }
}

/// The network's parameters as the kernels read them (host copies, scales exponentiated).
struct GlowWeights<E> {
    w_in: ConvWeight<E>,
    b_in: Vec<E>,
    loc_in: Vec<E>,
    scale_in: Vec<E>,
    w_mid: ConvWeight<E>,
    b_mid: Vec<E>,
    loc_mid: Vec<E>,
    scale_mid: Vec<E>,
    w_out: ConvWeight<E>,
    b_out: Vec<E>,
    /// `e^{3·logscale}` of the zero-initialised convolution.
    scale_out: Vec<E>,
}

/// Gradients of the parameters, in the order of [`GlowGrads::all_mut`]; the convolutions'
/// weight gradients as [`conv_image_backward`] accumulates them.
struct GlowGrads<E> {
    w_in: Vec<E>,
    b_in: Vec<E>,
    loc_in: Vec<E>,
    logs_in: Vec<E>,
    w_mid: Vec<E>,
    b_mid: Vec<E>,
    loc_mid: Vec<E>,
    logs_mid: Vec<E>,
    w_out: Vec<E>,
    b_out: Vec<E>,
    logscale_out: Vec<E>,
}

impl<E: Kernel> GlowGrads<E> {
    fn zeros(d: &GlowDims) -> Self {
        let z = |n: usize| vec![E::zero(); n];
        GlowGrads {
            w_in: z(d.first().weight_grad_len()),
            b_in: z(d.hidden),
            loc_in: z(d.hidden),
            logs_in: z(d.hidden),
            w_mid: z(d.mid().weight_grad_len()),
            b_mid: z(d.hidden),
            loc_mid: z(d.hidden),
            logs_mid: z(d.hidden),
            w_out: z(d.last().weight_grad_len()),
            b_out: z(d.c_out),
            logscale_out: z(d.c_out),
        }
    }

    fn all_mut(&mut self) -> [&mut Vec<E>; 11] {
        [
            &mut self.w_in,
            &mut self.b_in,
            &mut self.loc_in,
            &mut self.logs_in,
            &mut self.w_mid,
            &mut self.b_mid,
            &mut self.loc_mid,
            &mut self.logs_mid,
            &mut self.w_out,
            &mut self.b_out,
            &mut self.logscale_out,
        ]
    }

    /// Adds `partials` in their order (the result does not depend on the thread count).
    fn add_all(&mut self, mut partials: Vec<Self>) {
        for part in &mut partials {
            for (dst, src) in self.all_mut().into_iter().zip(part.all_mut()) {
                add_into(dst, src);
            }
        }
    }
}

/// The network on one image: `x` (c_in planes) to `out` (c_out planes); `shift` is the first
/// ActNorm's shift for this image (its `loc` plus the image's `hidden_bias` row). Writes the
/// two ActNorm + ReLU outputs into `kept` (2·hidden planes).
fn forward_image<E: Kernel>(
    d: &GlowDims,
    p: &GlowWeights<E>,
    x: &[E],
    shift: &[E],
    kept: &mut [MaybeUninit<E>],
    out: &mut [E],
    scratch: &mut [E],
) {
    let (ch, hw) = (d.hidden, d.hw());
    assert_eq!(kept.len(), d.kept_per_image(), "fused Glow net: kept size");
    let mut sc = Carve::new(scratch);
    let cols = sc.take(d.conv_scratch(false));
    let h = sc.take(ch * hw);
    let (a_in, a_mid) = kept.split_at_mut(ch * hw);
    // SAFETY (each `as_uninit_mut` and `assume_init_mut`): the kernels write only initialised
    // values, and each writes its whole output (they assert the lengths).
    let h = conv_image_forward(&d.first(), x, &p.w_in, &p.b_in, cols, unsafe {
        as_uninit_mut(h)
    });
    channel_affine_image(a_in, h, shift, &p.scale_in, true);
    let a_in = unsafe { assume_init_mut(a_in) };
    let h = conv_image_forward(&d.mid(), a_in, &p.w_mid, &p.b_mid, cols, unsafe {
        as_uninit_mut(h)
    });
    channel_affine_image(a_mid, h, &p.loc_mid, &p.scale_mid, true);
    let a_mid = unsafe { assume_init_mut(a_mid) };
    let out = conv_image_forward(&d.last(), a_mid, &p.w_out, &p.b_out, cols, unsafe {
        as_uninit_mut(out)
    });
    for (plane, &s) in out.chunks_exact_mut(hw).zip(&p.scale_out) {
        plane.iter_mut().for_each(|v| *v = *v * s);
    }
}

/// What the backward pass reads.
struct Saved<E> {
    x: Vec<E>,
    /// Per image, the two ActNorm + ReLU outputs.
    kept: Vec<Vec<E>>,
    out: Vec<E>,
}

/// Forward pass, one image per task. `bias`: `hidden_bias`, batch × hidden, or empty.
fn glow_forward<E: Kernel>(
    d: &GlowDims,
    p: &GlowWeights<E>,
    x: Vec<E>,
    bias: &[E],
    keep: bool,
) -> (Vec<E>, Option<Saved<E>>) {
    let (hw, per_image) = (d.hw(), d.kept_per_image());
    let (n_in, n_out) = (d.c_in * hw, d.c_out * hw);
    assert!(
        x.len() == d.batch * n_in && (bias.is_empty() || bias.len() == d.batch * d.hidden),
        "fused Glow net: input size"
    );
    let mut out = vec![E::zero(); d.batch * n_out];
    if d.batch == 0 || hw == 0 {
        return (
            out,
            keep.then(|| Saved {
                x,
                kept: Vec::new(),
                out: Vec::new(),
            }),
        );
    }
    let kept: Vec<Vec<E>> = out
        .par_chunks_mut(n_out)
        .zip(x.par_chunks(n_in))
        .enumerate()
        .map(|(i, (o, xi))| {
            E::with_scratch(d.forward_scratch(), |scratch| {
                let mut sc = Carve::new(scratch);
                let shift = sc.take(d.hidden);
                shift.copy_from_slice(&p.loc_in);
                if !bias.is_empty() {
                    add_into(shift, &bias[i * d.hidden..(i + 1) * d.hidden]);
                }
                let rest = sc.take(d.forward_scratch() - d.hidden - per_image);
                if !keep {
                    // SAFETY: forward_image writes only initialised values.
                    let spare = unsafe { as_uninit_mut(sc.take(per_image)) };
                    forward_image(d, p, xi, shift, spare, o, rest);
                    return Vec::new();
                }
                let mut kept = Vec::with_capacity(per_image);
                forward_image(
                    d,
                    p,
                    xi,
                    shift,
                    &mut kept.spare_capacity_mut()[..per_image],
                    o,
                    rest,
                );
                // SAFETY: forward_image writes every kept value (it asserts their count).
                unsafe { kept.set_len(per_image) };
                kept
            })
        })
        .collect();
    let saved = keep.then(|| Saved {
        x,
        kept,
        out: out.clone(),
    });
    (out, saved)
}

/// Backward pass of one image: writes the input gradient into `gx` and this image's
/// `hidden_bias` gradient into `g_bias` (if not empty), and adds the parameter gradients to
/// `grads`.
#[allow(clippy::too_many_arguments)]
fn backward_image<E: Kernel>(
    d: &GlowDims,
    p: &GlowWeights<E>,
    x: &[E],
    kept: &[E],
    out: &[E],
    go: &[E],
    gx: &mut [E],
    g_bias: &mut [E],
    grads: &mut GlowGrads<E>,
    scratch: &mut [E],
) {
    let (ch, hw) = (d.hidden, d.hw());
    let mut sc = Carve::new(scratch);
    let cols = sc.take(d.conv_scratch(true));
    let g_conv = sc.take(d.c_out * hw);
    let (g_a, g_h) = (sc.take(ch * hw), sc.take(ch * hw));
    let g_shift = sc.take(ch);
    let (a_in, a_mid) = kept.split_at(ch * hw);
    // out = conv · s per channel: the convolution's gradient is go · s, logscale's 3 Σ go · out.
    let planes = g_conv
        .chunks_exact_mut(hw)
        .zip(go.chunks_exact(hw))
        .zip(out.chunks_exact(hw));
    for (c, ((g, go), o)) in planes.enumerate() {
        let s = p.scale_out[c];
        let mut sum = E::zero();
        for ((g, &go), &o) in g.iter_mut().zip(go).zip(o) {
            *g = go * s;
            sum = sum + go * o;
        }
        let three = E::one() + E::one() + E::one();
        grads.logscale_out[c] = grads.logscale_out[c] + three * sum;
    }
    conv_image_backward(
        &d.last(),
        a_mid,
        &p.w_out,
        g_conv,
        cols,
        g_a,
        &mut grads.w_out,
        &mut grads.b_out,
    );
    #[rustfmt::skip]
    channel_affine_backward_image(
        g_h, a_mid, g_a, &p.scale_mid, true, &mut grads.loc_mid, &mut grads.logs_mid,
    );
    conv_image_backward(
        &d.mid(),
        a_in,
        &p.w_mid,
        g_h,
        cols,
        g_a,
        &mut grads.w_mid,
        &mut grads.b_mid,
    );
    g_shift.fill(E::zero());
    #[rustfmt::skip]
    channel_affine_backward_image(
        g_h, a_in, g_a, &p.scale_in, true, g_shift, &mut grads.logs_in,
    );
    add_into(&mut grads.loc_in, g_shift);
    if !g_bias.is_empty() {
        g_bias.copy_from_slice(g_shift);
    }
    conv_image_backward(
        &d.first(),
        x,
        &p.w_in,
        g_h,
        cols,
        gx,
        &mut grads.w_in,
        &mut grads.b_in,
    );
}

/// Backward pass: the gradients of the input, of `hidden_bias` (if `with_bias`) and of every
/// parameter (weights in their layout). Images in chunks of [`backward_chunk`], the chunks'
/// parameter sums added in order.
fn glow_backward<E: Kernel>(
    d: &GlowDims,
    p: &GlowWeights<E>,
    s: &Saved<E>,
    grad_out: &[E],
    with_bias: bool,
) -> (Vec<E>, Vec<E>, GlowGrads<E>) {
    let hw = d.hw();
    let (n_in, n_out) = (d.c_in * hw, d.c_out * hw);
    assert!(
        grad_out.len() == d.batch * n_out && s.kept.len() == d.batch,
        "fused Glow net: gradient size"
    );
    let mut gx = vec![E::zero(); d.batch * n_in];
    let n_bias = if with_bias { d.hidden } else { 0 };
    let mut g_bias = vec![E::zero(); d.batch * n_bias];
    let mut total = GlowGrads::zeros(d);
    if d.batch > 0 && hw > 0 {
        let chunk = backward_chunk(hw);
        let mut bias_chunks: Vec<&mut [E]> = if with_bias {
            g_bias.chunks_mut(chunk * n_bias).collect()
        } else {
            (0..d.batch.div_ceil(chunk)).map(|_| &mut [][..]).collect()
        };
        let partials: Vec<GlowGrads<E>> = gx
            .par_chunks_mut(chunk * n_in)
            .zip(bias_chunks.par_iter_mut())
            .zip(grad_out.par_chunks(chunk * n_out))
            .zip(s.x.par_chunks(chunk * n_in))
            .zip(s.out.par_chunks(chunk * n_out))
            .zip(s.kept.par_chunks(chunk))
            .map(|(((((gx, gb), go), x), out), kept)| {
                let mut grads = GlowGrads::zeros(d);
                E::with_scratch(d.backward_scratch(), |scratch| {
                    for (i, kept) in kept.iter().enumerate() {
                        let (at_in, at_out) = (i * n_in, i * n_out);
                        let gb: &mut [E] = if n_bias > 0 {
                            &mut gb[i * n_bias..(i + 1) * n_bias]
                        } else {
                            &mut []
                        };
                        backward_image(
                            d,
                            p,
                            &x[at_in..at_in + n_in],
                            kept,
                            &out[at_out..at_out + n_out],
                            &go[at_out..at_out + n_out],
                            &mut gx[at_in..at_in + n_in],
                            gb,
                            &mut grads,
                            scratch,
                        );
                    }
                });
                grads
            })
            .collect();
        total.add_all(partials);
    }
    total.w_in = d
        .first()
        .weight_grad_to_weight_layout(std::mem::take(&mut total.w_in));
    total.w_mid = d
        .mid()
        .weight_grad_to_weight_layout(std::mem::take(&mut total.w_mid));
    total.w_out = d
        .last()
        .weight_grad_to_weight_layout(std::mem::take(&mut total.w_out));
    (gx, g_bias, total)
}

/// The CPU op: one tape entry for the whole network.
#[allow(clippy::type_complexity)]
fn glow_net_cpu<CIn, const HIDDEN: usize, COut, H, W, E, T>(
    net: GlowNetParams<'_, CIn, HIDDEN, COut, E, Cpu>,
    x: Tensor<(usize, CIn, H, W), E, Cpu, T>,
    hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, Cpu, T>>,
) -> Result<Tensor<(usize, COut, H, W), E, Cpu, T>, CpuError>
where
    CIn: ConstDim,
    COut: ConstDim,
    H: Dim,
    W: Dim,
    E: FlowDtype + Kernel,
    T: Tape<E, Cpu>,
{
    // Gradient buffers follow storage order: make the inputs contiguous (a no-op if they are).
    let shape = *x.shape();
    let (x, tape_x) = x.try_reshape_like(&shape)?.split_tape();
    let (bias, mut tape) = match hidden_bias {
        Some(b) => {
            let b_shape = *b.shape();
            let (b, tape_b) = b.try_reshape_like(&b_shape)?.split_tape();
            (Some(b), tape_x.merge(tape_b))
        }
        None => (None, tape_x),
    };
    let dims = GlowDims {
        batch: shape.0,
        c_in: CIn::SIZE,
        hidden: HIDDEN,
        c_out: COut::SIZE,
        height: shape.2.size(),
        width: shape.3.size(),
    };
    let exp = |t: &Tensor<(Const<HIDDEN>,), E, Cpu>| -> Vec<E> {
        host_copy(t).iter().map(|v| v.exp()).collect()
    };
    let three = E::one() + E::one() + E::one();
    let params = GlowWeights {
        w_in: ConvWeight::new(&dims.first(), host_copy(&net.conv_in.weight)),
        b_in: host_copy(&net.conv_in.bias),
        loc_in: host_copy(net.norm_in_loc),
        scale_in: exp(net.norm_in_logs),
        w_mid: ConvWeight::new(&dims.mid(), host_copy(&net.conv_mid.weight)),
        b_mid: host_copy(&net.conv_mid.bias),
        loc_mid: host_copy(net.norm_mid_loc),
        scale_mid: exp(net.norm_mid_logs),
        w_out: ConvWeight::new(&dims.last(), host_copy(&net.conv_out.weight)),
        b_out: host_copy(&net.conv_out.bias),
        scale_out: host_copy(&net.conv_out.logscale)
            .iter()
            .map(|v| (*v * three).exp())
            .collect(),
    };
    let bias_values = bias.as_ref().map(host_copy).unwrap_or_default();
    let (out, saved) = glow_forward(&dims, &params, host_copy(&x), &bias_values, T::OWNS_TAPE);
    let out = x
        .device()
        .try_tensor_from_vec(out, (shape.0, COut::default(), shape.2, shape.3))?;
    if let Some(saved) = saved {
        let (out_ref, x_ref) = (out.ghost(), x.ghost());
        let bias_ref = bias.as_ref().map(|b| b.ghost());
        // The parameters' tensors (shared storage), for their places in the gradient store.
        let (conv_in, conv_mid, conv_out) = (
            net.conv_in.clone(),
            net.conv_mid.clone(),
            net.conv_out.clone(),
        );
        let norms = [
            net.norm_in_loc.clone(),
            net.norm_in_logs.clone(),
            net.norm_mid_loc.clone(),
            net.norm_mid_logs.clone(),
        ];
        tape.add_backward_op(move |grads| {
            let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
            let (gx, g_bias, g) = glow_backward(&dims, &params, &saved, &go, bias_ref.is_some());
            drop(go);
            add_into(grads.get_or_alloc_mut(&x_ref)?, &gx);
            if let Some(bias_ref) = &bias_ref {
                add_into(grads.get_or_alloc_mut(bias_ref)?, &g_bias);
            }
            let [loc_in, logs_in, loc_mid, logs_mid] = &norms;
            let pairs = [
                (&conv_in.bias, &g.b_in),
                (loc_in, &g.loc_in),
                (logs_in, &g.logs_in),
                (&conv_mid.bias, &g.b_mid),
                (loc_mid, &g.loc_mid),
                (logs_mid, &g.logs_mid),
            ];
            for (param, g) in pairs {
                add_into(grads.get_or_alloc_mut(param)?, g);
            }
            add_into(grads.get_or_alloc_mut(&conv_in.weight)?, &g.w_in);
            add_into(grads.get_or_alloc_mut(&conv_mid.weight)?, &g.w_mid);
            add_into(grads.get_or_alloc_mut(&conv_out.weight)?, &g.w_out);
            add_into(grads.get_or_alloc_mut(&conv_out.bias)?, &g.b_out);
            add_into(grads.get_or_alloc_mut(&conv_out.logscale)?, &g.logscale_out);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// Glow's coupling network as one op on the CPU (`glow_net_cpu`).
impl<E: FlowDtype + Kernel> GlowNetOps<E> for Cpu
where
    Cpu: NetDevice<E>,
{
    fn try_glow_net<
        CIn: ConstDim,
        const HIDDEN: usize,
        COut: ConstDim,
        H: Dim,
        W: Dim,
        T: Tape<E, Self>,
    >(
        p: GlowNetParams<'_, CIn, HIDDEN, COut, E, Self>,
        x: Tensor<(usize, CIn, H, W), E, Self, T>,
        hidden_bias: Option<Tensor<(usize, Const<HIDDEN>), E, Self, T>>,
    ) -> Result<Tensor<(usize, COut, H, W), E, Self, T>, Self::Err> {
        let shape = *x.shape();
        if shape.2.size() * shape.3.size() == 0 {
            return glow_net_composed(p, x, hidden_bias);
        }
        glow_net_cpu(p, x, hidden_bias)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::glow_net::GlowNet;
    use crate::testing::perturb_params;
    use dfdx::prelude::*;

    type Net<const HIDDEN: usize> = GlowNet<Const<2>, HIDDEN, Const<4>, 5, 4, f64, Cpu>;

    /// The fused network against the chain of its layers' ops, in f64: output, the gradients of
    /// the input, of the class rows and of every parameter, with and without class rows.
    /// Hidden width 3 runs every convolution as an implicit GEMM; 16 runs the 1×1 convolution
    /// at a width the kernels vectorise. 40 images: three backward chunks at this size, the
    /// last partial.
    #[test]
    fn fused_glow_network_matches_the_chain_of_ops() {
        check_against_the_chain::<3>(false);
        check_against_the_chain::<3>(true);
        check_against_the_chain::<16>(true);
    }

    fn check_against_the_chain<const HIDDEN: usize>(with_bias: bool) {
        let dev: Cpu = Cpu::seed_from_u64(5);
        let mut net = dev.build_module::<Net<HIDDEN>, f64>();
        // Every parameter off its start (the zero convolution and the ActNorms included), so
        // that every path carries gradient.
        perturb_params(&mut net, 0.3).unwrap();
        let x: Tensor<(usize, Const<2>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(40, Const, Const, Const));
        let bias: Tensor<(usize, Const<HIDDEN>), f64, Cpu> = dev.sample_normal_like(&(40, Const));
        let weights: Tensor<(usize, Const<4>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(40, Const, Const, Const));

        let run = |fused: bool| {
            let grads = Gradients::leaky();
            let x_t = x.clone().traced(grads);
            let b = with_bias.then(|| bias.clone().traced(Gradients::leaky()));
            // One tape for both inputs: the bias's entries go onto x's tape when merged.
            let out = if fused {
                net.try_apply_with(x_t, b).unwrap()
            } else {
                net.try_apply_composed(x_t, b).unwrap()
            };
            let values = out.retaped::<NoneTape>().as_vec();
            let grads = (out * weights.clone()).sum().backward();
            (values, grads)
        };
        let (v_fused, g_fused) = run(true);
        let (v_chain, g_chain) = run(false);
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                    "{what}[{i}]: {p} vs {q}"
                );
            }
            assert!(a.iter().any(|v| v.abs() > 1e-9), "{what} is zero");
        };
        close(&v_fused, &v_chain, "output");
        let gradients = |g: &Gradients<f64, Cpu>| -> Vec<(&str, Vec<f64>)> {
            let mut out = vec![
                ("x", g.get(&x).as_vec()),
                ("conv_in.weight", g.get(&net.conv_in.weight).as_vec()),
                ("conv_in.bias", g.get(&net.conv_in.bias).as_vec()),
                ("norm_in.loc", g.get(&net.norm_in.loc).as_vec()),
                ("norm_in.logs", g.get(&net.norm_in.logs).as_vec()),
                ("conv_mid.weight", g.get(&net.conv_mid.weight).as_vec()),
                ("conv_mid.bias", g.get(&net.conv_mid.bias).as_vec()),
                ("norm_mid.loc", g.get(&net.norm_mid.loc).as_vec()),
                ("norm_mid.logs", g.get(&net.norm_mid.logs).as_vec()),
                ("conv_out.weight", g.get(&net.conv_out.weight).as_vec()),
                ("conv_out.bias", g.get(&net.conv_out.bias).as_vec()),
                ("conv_out.logscale", g.get(&net.conv_out.logscale).as_vec()),
            ];
            if with_bias {
                out.push(("hidden_bias", g.get(&bias).as_vec()));
            }
            out
        };
        for ((what, a), (_, b)) in gradients(&g_fused).iter().zip(&gradients(&g_chain)) {
            close(a, b, &format!("gradient of {what}"));
        }
    }
}
