//! The whole conditioner network ([`GatedConvNet`]) as one autograd op on the CPU.
//!
//! As a chain of separate ops (convolutions, ConcatELU, gated residuals, layer norms), every
//! layer copied its input out of dfdx's storage, allocated a zero-filled output, and in the
//! backward pass a zero-filled gradient for each intermediate that the next op then added into:
//! memset and memmove were 28 % of a multi-scale training step. As one op, the network reads its
//! input and parameters once, keeps its intermediates in its own buffers (only those the backward
//! pass needs), and touches dfdx's gradient store only for its input and its parameters. The
//! forward kernels are the separate ops' (`conv`, `fused`), so outputs are the same to the last
//! bit; ConcatELU's gradient is computed from its output instead of its input (no exponential),
//! equal to the chain's within rounding (the test checks 1e-12 in f64).
use super::conv::{conv_backward, conv_forward, host_copy, take_grad, ConvDims};
use super::fused::{
    concat_elu_backward_from_output, concat_elu_forward, gated_backward, gated_forward,
    layer_norm_backward, layer_norm_forward, layer_norm_stats,
};
use super::gated::{GatedConvNet, LAYER_NORM_EPS};
use super::simd::Kernel;
use crate::shape::Double;
use dfdx::prelude::*;
use num_traits::Float;

/// Channel counts and image size of one network application.
#[derive(Clone, Copy, Debug)]
struct NetDims {
    batch: usize,
    c_in: usize,
    hidden: usize,
    c_out: usize,
    height: usize,
    width: usize,
}

impl NetDims {
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
    /// `nn.0`: 3×3, c_in → hidden.
    fn first(&self) -> ConvDims {
        self.conv(self.c_in, self.hidden, 3)
    }
    /// A block's `net.1`: 3×3, 2·hidden → hidden.
    fn block_in(&self) -> ConvDims {
        self.conv(2 * self.hidden, self.hidden, 3)
    }
    /// A block's `net.3`: 1×1, 2·hidden → 2·hidden.
    fn block_gate(&self) -> ConvDims {
        self.conv(2 * self.hidden, 2 * self.hidden, 1)
    }
    /// `nn.8`: 3×3, 2·hidden → c_out.
    fn last(&self) -> ConvDims {
        self.conv(2 * self.hidden, self.c_out, 3)
    }
}

/// A convolution's weight and bias (host copies, or their gradients).
type ConvParams<E> = (Vec<E>, Vec<E>);

/// The network's parameters as flat host vectors, in the order of the tutorial's `nn.*`.
struct NetParams<E> {
    first: ConvParams<E>,
    /// Per block: (`net.1`, `net.3`).
    blocks: [(ConvParams<E>, ConvParams<E>); 3],
    /// Per layer norm: (gamma, beta).
    norms: [(Vec<E>, Vec<E>); 3],
    last: ConvParams<E>,
}

/// The intermediates the backward pass reads. The ConcatELU outputs are kept rather than
/// their inputs: they are the convolutions' inputs, and ConcatELU's gradient follows from them
/// without an exponential (memory is not what limits us: a step peaks far below PyTorch's).
struct Saved<E> {
    x: Vec<E>,
    /// ConcatELU of each block's input (the input of its 3×3 convolution), and (`[3]`) of the
    /// last layer norm's output (the input of `nn.8`).
    c1: [Vec<E>; 4],
    /// ConcatELU of each block's 3×3 convolution output (the input of its 1×1 convolution).
    c2: [Vec<E>; 3],
    /// Output of each block's 1×1 convolution (value and gate halves).
    g: [Vec<E>; 3],
    /// Output of each gated residual (the layer norm's input) and its per-pixel mean and 1/σ.
    r: [(Vec<E>, Vec<E>, Vec<E>); 3],
}

/// Forward pass; with `keep`, also what the backward pass needs.
fn net_forward<E: Kernel>(
    d: &NetDims,
    p: &NetParams<E>,
    x: Vec<E>,
    keep: bool,
) -> (Vec<E>, Option<Saved<E>>) {
    let (ch, hw) = (d.hidden, d.hw());
    let (mut c1s, mut c2s, mut gs, mut rs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut a = conv_forward(&d.first(), &x, &p.first.0, &p.first.1);
    for ((conv_in, conv_gate), (gamma, beta)) in p.blocks.iter().zip(&p.norms) {
        let c1 = concat_elu_forward(&a, ch, hw);
        let v = conv_forward(&d.block_in(), &c1, &conv_in.0, &conv_in.1);
        let c2 = concat_elu_forward(&v, ch, hw);
        drop(v);
        let g = conv_forward(&d.block_gate(), &c2, &conv_gate.0, &conv_gate.1);
        let r = gated_forward(&a, &g, ch, hw);
        let (mean, rstd) = layer_norm_stats(&r, ch, hw, LAYER_NORM_EPS);
        a = layer_norm_forward(&r, gamma, beta, &mean, &rstd, ch, hw);
        if keep {
            c1s.push(c1);
            c2s.push(c2);
            gs.push(g);
            rs.push((r, mean, rstd));
        }
    }
    let c_last = concat_elu_forward(&a, ch, hw);
    drop(a);
    let out = conv_forward(&d.last(), &c_last, &p.last.0, &p.last.1);
    let saved = keep.then(|| {
        c1s.push(c_last);
        Saved {
            x,
            c1: c1s.try_into().unwrap_or_else(|_| unreachable!("four")),
            c2: three(c2s),
            g: three(gs),
            r: three(rs),
        }
    });
    (out, saved)
}

fn three<T>(v: Vec<T>) -> [T; 3] {
    v.try_into()
        .unwrap_or_else(|_| unreachable!("three blocks"))
}

fn add_assign<E: Float>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(a, b)| *a = *a + *b);
}

/// Backward pass: the gradient of the input and of every parameter.
fn net_backward<E: Kernel>(
    d: &NetDims,
    p: &NetParams<E>,
    s: &Saved<E>,
    grad_out: &[E],
) -> (Vec<E>, NetParams<E>) {
    let (ch, hw) = (d.hidden, d.hw());
    let (g_celu, gw, gb) = conv_backward(&d.last(), &s.c1[3], &p.last.0, grad_out);
    let last = (gw, gb);
    let mut g_a = concat_elu_backward_from_output(&s.c1[3], &g_celu, ch, hw);
    let mut blocks = Vec::new();
    let mut norms = Vec::new();
    for k in (0..3).rev() {
        let (r, mean, rstd) = &s.r[k];
        let (g_r, g_gamma, g_beta) =
            layer_norm_backward(r, &p.norms[k].0, mean, rstd, &g_a, ch, hw);
        norms.push((g_gamma, g_beta));
        let g_h = gated_backward(&s.g[k], &g_r, ch, hw);
        let (conv_in, conv_gate) = &p.blocks[k];
        let (g_c2, gw_gate, gb_gate) = conv_backward(&d.block_gate(), &s.c2[k], &conv_gate.0, &g_h);
        let g_v = concat_elu_backward_from_output(&s.c2[k], &g_c2, ch, hw);
        let (g_c1, gw_in, gb_in) = conv_backward(&d.block_in(), &s.c1[k], &conv_in.0, &g_v);
        blocks.push(((gw_in, gb_in), (gw_gate, gb_gate)));
        // The block's input reaches its output twice: through the residual and the network.
        g_a = g_r;
        add_assign(
            &mut g_a,
            &concat_elu_backward_from_output(&s.c1[k], &g_c1, ch, hw),
        );
    }
    let (g_x, gw, gb) = conv_backward(&d.first(), &s.x, &p.first.0, &g_a);
    blocks.reverse();
    norms.reverse();
    let grads = NetParams {
        first: (gw, gb),
        blocks: blocks.try_into().unwrap_or_else(|_| unreachable!()),
        norms: norms.try_into().unwrap_or_else(|_| unreachable!()),
        last,
    };
    (g_x, grads)
}

/// The CPU op: one tape entry for the whole network.
pub(crate) fn gated_conv_net_cpu<CIn, CH, COut, H, W, E, T>(
    net: &GatedConvNet<CIn, CH, COut, E, Cpu>,
    x: Tensor<(usize, CIn, H, W), E, Cpu, T>,
) -> Result<Tensor<(usize, COut, H, W), E, Cpu, T>, CpuError>
where
    CIn: ConstDim,
    CH: ConstDim + Double,
    COut: ConstDim,
    H: Dim,
    W: Dim,
    E: crate::FlowDtype + Kernel,
    T: Tape<E, Cpu>,
{
    // Gradient buffers follow storage order: make the input contiguous (a no-op if it is).
    let shape = *x.shape();
    let (x, mut tape) = x.try_reshape_like(&shape)?.split_tape();
    let dims = NetDims {
        batch: shape.0,
        c_in: CIn::SIZE,
        hidden: CH::SIZE,
        c_out: COut::SIZE,
        height: shape.2.size(),
        width: shape.3.size(),
    };
    let params = NetParams {
        first: (host_copy(&net.conv_in.weight), host_copy(&net.conv_in.bias)),
        blocks: std::array::from_fn(|k| {
            let b = &net.blocks[k];
            (
                (host_copy(&b.conv_in.weight), host_copy(&b.conv_in.bias)),
                (host_copy(&b.conv_gate.weight), host_copy(&b.conv_gate.bias)),
            )
        }),
        norms: std::array::from_fn(|k| {
            (
                host_copy(&net.norms[k].gamma),
                host_copy(&net.norms[k].beta),
            )
        }),
        last: (
            host_copy(&net.conv_out.weight),
            host_copy(&net.conv_out.bias),
        ),
    };
    let (out, saved) = net_forward(&dims, &params, host_copy(&x), T::OWNS_TAPE);
    let out = x
        .device()
        .try_tensor_from_vec(out, (shape.0, COut::default(), shape.2, shape.3))?;
    if let Some(saved) = saved {
        let (out_ref, x_ref) = (out.ghost(), x.ghost());
        let net = net.clone();
        tape.add_backward_op(move |grads| {
            let go = take_grad(grads.get_or_alloc_mut(&out_ref)?);
            let (gx, g) = net_backward(&dims, &params, &saved, &go);
            drop(go);
            add_assign(grads.get_or_alloc_mut(&x_ref)?, &gx);
            add_assign(grads.get_or_alloc_mut(&net.conv_in.weight)?, &g.first.0);
            add_assign(grads.get_or_alloc_mut(&net.conv_in.bias)?, &g.first.1);
            for (block, (g_in, g_gate)) in net.blocks.iter().zip(&g.blocks) {
                add_assign(grads.get_or_alloc_mut(&block.conv_in.weight)?, &g_in.0);
                add_assign(grads.get_or_alloc_mut(&block.conv_in.bias)?, &g_in.1);
                add_assign(grads.get_or_alloc_mut(&block.conv_gate.weight)?, &g_gate.0);
                add_assign(grads.get_or_alloc_mut(&block.conv_gate.bias)?, &g_gate.1);
            }
            for (norm, (g_gamma, g_beta)) in net.norms.iter().zip(&g.norms) {
                add_assign(grads.get_or_alloc_mut(&norm.gamma)?, g_gamma);
                add_assign(grads.get_or_alloc_mut(&norm.beta)?, g_beta);
            }
            add_assign(grads.get_or_alloc_mut(&net.conv_out.weight)?, &g.last.0);
            add_assign(grads.get_or_alloc_mut(&net.conv_out.bias)?, &g.last.1);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use crate::nn::gated::{Conditioner, GatedConvNet};
    use crate::params::perturb_params;
    use dfdx::prelude::*;

    type Net = GatedConvNet<Const<2>, Const<3>, Const<4>, f64, Cpu>;

    /// The fused network against the chain of separate ops (themselves tested against dfdx
    /// compositions): output, input gradient and every parameter gradient, in f64.
    #[test]
    fn fused_network_matches_the_chain_of_ops() {
        let dev: Cpu = Cpu::seed_from_u64(3);
        let mut net = dev.build_module::<Net, f64>();
        // Non-zero last layer and perturbed norms, so that every path carries gradient.
        perturb_params(&mut net, 0.3).unwrap();
        let x: Tensor<(usize, Const<2>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const, Const, Const));
        let weights: Tensor<(usize, Const<4>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const, Const, Const));

        let run = |fused: bool| {
            let x_t = x.clone().traced(Gradients::leaky());
            let out = if fused {
                net.try_condition(x_t).unwrap()
            } else {
                net.try_condition_composed(x_t).unwrap()
            };
            let values = out.retaped::<NoneTape>().as_vec();
            let loss = (out * weights.clone()).sum();
            let grads = loss.backward();
            let gx = grads.get(&x).as_vec();
            (values, gx, grads)
        };
        let (v_fused, gx_fused, g_fused) = run(true);
        let (v_chain, gx_chain, g_chain) = run(false);
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                    "{what}[{i}]: {p} vs {q}"
                );
            }
        };
        close(&v_fused, &v_chain, "output");
        close(&gx_fused, &gx_chain, "grad x");
        assert!(
            gx_fused.iter().any(|v| v.abs() > 1e-6),
            "input gradient is zero"
        );
        let param_grads = |g: &Gradients<f64, Cpu>| -> Vec<Vec<f64>> {
            let mut out = vec![
                g.get(&net.conv_in.weight).as_vec(),
                g.get(&net.conv_in.bias).as_vec(),
                g.get(&net.conv_out.weight).as_vec(),
                g.get(&net.conv_out.bias).as_vec(),
            ];
            for b in &net.blocks {
                out.push(g.get(&b.conv_in.weight).as_vec());
                out.push(g.get(&b.conv_in.bias).as_vec());
                out.push(g.get(&b.conv_gate.weight).as_vec());
                out.push(g.get(&b.conv_gate.bias).as_vec());
            }
            for n in &net.norms {
                out.push(g.get(&n.gamma).as_vec());
                out.push(g.get(&n.beta).as_vec());
            }
            out
        };
        for (i, (a, b)) in param_grads(&g_fused)
            .iter()
            .zip(&param_grads(&g_chain))
            .enumerate()
        {
            close(a, b, &format!("parameter gradient {i}"));
            assert!(
                a.iter().any(|v| v.abs() > 1e-9),
                "parameter gradient {i} is zero"
            );
        }
    }
}
