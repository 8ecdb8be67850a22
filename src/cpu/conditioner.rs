//! The whole conditioner network ([`GatedConvNet`]) as one autograd op on the CPU
//! ([`NetDevice`] for `Cpu`).
//!
//! As a chain of separate ops (convolutions, ConcatELU, gated residuals, layer norms), every
//! layer copied its input out of dfdx's storage, allocated a zero-filled output, and in the
//! backward pass a zero-filled gradient for each intermediate that the next op then added into:
//! memset and memmove were 28 % of a multi-scale training step. As one op, the network reads its
//! input and parameters once and touches dfdx's gradient store only for its input and its
//! parameters.
//!
//! Inside, each image goes through all the layers back to back on one thread (forward, and in
//! reverse order backward), with the intermediates that are not kept in a per-thread scratch
//! buffer of a few hundred KB that stays in the core's cache; one batch-wide pass per layer had
//! streamed every intermediate (25 MB per layer at batch 128) through memory. The forward pass
//! keeps, per image, what the backward pass reads (the ConcatELU outputs, the 1×1 convolutions'
//! outputs, the layer norms' inputs and statistics) in one buffer. Parameter gradients are summed
//! per chunk of images ([`backward_chunk`]: 4, more for small images) and the chunk sums in order,
//! so results do not depend on the thread count. The kernels are the separate ops' (`conv`,
//! `elementwise`); ConcatELU's gradient is computed from its output instead of its input (no
//! exponential), equal to the chain's within rounding (the test checks 1e-12 in f64).
use super::conv::{conv_image_backward, conv_image_forward, ConvWeight};
use super::conv_dims::ConvDims;
use super::elementwise::{
    concat_elu_backward_from_output_image, concat_elu_image, gated_backward_image, gated_image,
    layer_norm_backward_image, layer_norm_image, layer_norm_stats_image,
};
use super::host::{add_into, backward_chunk, host_copy, take_grad};
use super::simd::{as_uninit_mut, assume_init_mut, Carve, Kernel};
use crate::dtype::FlowDtype;
use crate::nn::gated::{GatedConvNet, NetDevice, LAYER_NORM_EPS};
use crate::nn::{ConvDevice, FusedOps};
use crate::shape::Double;
use dfdx::prelude::*;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// A convolution's weight (`W`: prepared for the kernels, or a gradient) and bias.
type ConvParams<W, E> = (W, Vec<E>);

/// The network's parameters as host copies, in the order of the tutorial's `nn.*`: the weights
/// as the kernels read them ([`NetWeights`]), or gradients as flat vectors ([`NetGrads`]).
struct NetParams<W, E> {
    first: ConvParams<W, E>,
    /// Per block: (`net.1`, `net.3`).
    blocks: [(ConvParams<W, E>, ConvParams<W, E>); 3],
    /// Per layer norm: (gamma, beta).
    norms: [(Vec<E>, Vec<E>); 3],
    last: ConvParams<W, E>,
}

/// The parameters of one call of the op.
type NetWeights<E> = NetParams<ConvWeight<E>, E>;
/// Gradients of the parameters (the convolutions' weight gradients as [`conv_image_backward`]
/// accumulates them until [`net_backward`] brings them to the weights' layout).
type NetGrads<E> = NetParams<Vec<E>, E>;

impl<E: Kernel> NetWeights<E> {
    /// Zeros for accumulating gradients.
    fn grad_accumulators(&self, d: &NetDims) -> NetGrads<E> {
        let zeros = |n: usize| vec![E::zero(); n];
        let conv = |c: ConvDims, b: &Vec<E>| (zeros(c.weight_grad_len()), zeros(b.len()));
        NetParams {
            first: conv(d.first(), &self.first.1),
            blocks: std::array::from_fn(|k| {
                let (conv_in, conv_gate) = &self.blocks[k];
                (
                    conv(d.block_in(), &conv_in.1),
                    conv(d.block_gate(), &conv_gate.1),
                )
            }),
            norms: std::array::from_fn(|k| {
                (zeros(self.norms[k].0.len()), zeros(self.norms[k].1.len()))
            }),
            last: conv(d.last(), &self.last.1),
        }
    }
}

impl<E: Kernel> NetGrads<E> {
    /// Every vector, in a fixed order.
    fn all(&self) -> Vec<&Vec<E>> {
        let mut v = vec![&self.first.0, &self.first.1];
        for ((a, b), (c, e)) in &self.blocks {
            v.extend([a, b, c, e]);
        }
        for (g, b) in &self.norms {
            v.extend([g, b]);
        }
        v.extend([&self.last.0, &self.last.1]);
        v
    }

    fn all_mut(&mut self) -> Vec<&mut Vec<E>> {
        let mut v = vec![&mut self.first.0, &mut self.first.1];
        for ((a, b), (c, e)) in &mut self.blocks {
            v.extend([a, b, c, e]);
        }
        for (g, b) in &mut self.norms {
            v.extend([g, b]);
        }
        v.extend([&mut self.last.0, &mut self.last.1]);
        v
    }

    /// Adds `partials` in their order, element by element (the result does not depend on the
    /// thread count), in parallel over blocks of each vector: summed on one thread, the chunk
    /// partials of the 28×28 networks (32 of them) were a serial pause of the backward pass.
    fn add_all(&mut self, partials: &[Self]) {
        const BLOCK: usize = 4096;
        let parts: Vec<Vec<&Vec<E>>> = partials.iter().map(|p| p.all()).collect();
        for (j, dst) in self.all_mut().into_iter().enumerate() {
            dst.par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(k, block)| {
                    let at = k * BLOCK;
                    for part in &parts {
                        add_into(block, &part[j][at..at + block.len()]);
                    }
                });
        }
    }
}

impl NetDims {
    /// Values of one block's intermediates that the backward pass reads, per image: ConcatELU of
    /// the block's input (2·hidden planes), ConcatELU of its 3×3 convolution's output (2·hidden),
    /// the 1×1 convolution's output (value and gate, 2·hidden), the gated residual (hidden), and
    /// the layer norm's per-pixel mean and 1/σ (one plane each).
    fn block_kept(&self) -> usize {
        (7 * self.hidden + 2) * self.hw()
    }
    /// Values kept per image: three blocks, then the last ConcatELU (the input of `nn.8`).
    fn kept_per_image(&self) -> usize {
        3 * self.block_kept() + 2 * self.hidden * self.hw()
    }
    /// Scratch of the network's largest convolution, forward and backward.
    fn conv_scratch(&self, backward: bool) -> usize {
        let convs = [
            self.first(),
            self.block_in(),
            self.block_gate(),
            self.last(),
        ];
        ConvDims::largest_scratch(&convs, backward)
    }
    fn forward_scratch(&self) -> usize {
        self.conv_scratch(false) + 2 * self.hidden * self.hw() + self.block_kept()
    }
    fn backward_scratch(&self) -> usize {
        self.conv_scratch(true) + (7 * self.hidden + 2) * self.hw()
    }
}

/// One block's kept intermediates of one image (see [`NetDims::block_kept`]).
struct BlockKept<'a, E> {
    c1: &'a [E],
    c2: &'a [E],
    g: &'a [E],
    r: &'a [E],
    mean: &'a [E],
    rstd: &'a [E],
}

impl<'a, E> BlockKept<'a, E> {
    fn of(d: &NetDims, kept: &'a [E], k: usize) -> Self {
        let (ch, hw) = (d.hidden, d.hw());
        let block = &kept[k * d.block_kept()..(k + 1) * d.block_kept()];
        let (c1, rest) = block.split_at(2 * ch * hw);
        let (c2, rest) = rest.split_at(2 * ch * hw);
        let (g, rest) = rest.split_at(2 * ch * hw);
        let (r, rest) = rest.split_at(ch * hw);
        let (mean, rstd) = rest.split_at(hw);
        BlockKept {
            c1,
            c2,
            g,
            r,
            mean,
            rstd,
        }
    }
}

/// What the backward pass reads: the input, and per image its kept intermediates.
struct Saved<E> {
    x: Vec<E>,
    images: Vec<Vec<E>>,
}

/// Lets `f` write `out` and returns it as initialised.
///
/// # Safety
/// `f` must write every element of `out`.
unsafe fn written<E>(
    out: &mut [MaybeUninit<E>],
    f: impl FnOnce(&mut [MaybeUninit<E>]),
) -> &mut [E] {
    f(out);
    // SAFETY: the caller guarantees that f wrote every element.
    unsafe { assume_init_mut(out) }
}

/// The network on one image: `x` (c_in planes) to `out` (c_out planes), every layer back to
/// back on this thread so that the intermediates stay in its cache. With `keep`, writes what
/// the backward pass needs there (every element of it, [`NetDims::kept_per_image`] values).
fn forward_image<E: Kernel>(
    d: &NetDims,
    p: &NetWeights<E>,
    x: &[E],
    keep: Option<&mut [MaybeUninit<E>]>,
    out: &mut [MaybeUninit<E>],
    scratch: &mut [E],
) {
    let (ch, hw) = (d.hidden, d.hw());
    let mut sc = Carve::new(scratch);
    let cols = sc.take(d.conv_scratch(false));
    let a = sc.take(ch * hw);
    let v = sc.take(ch * hw);
    // SAFETY (here and below for scratch): the kernels write only initialised values.
    let spare = unsafe { as_uninit_mut(sc.take(d.block_kept())) };
    if let Some(k) = &keep {
        assert_eq!(k.len(), d.kept_per_image(), "fused net: kept size");
    }
    let mut kept = keep.map(Carve::new);
    conv_image_forward(&d.first(), x, &p.first.0, &p.first.1, cols, unsafe {
        as_uninit_mut(a)
    });
    for ((conv_in, conv_gate), (gamma, beta)) in p.blocks.iter().zip(&p.norms) {
        let region = match kept.as_mut() {
            Some(k) => k.take(d.block_kept()),
            None => &mut *spare,
        };
        let mut parts = Carve::new(region);
        // SAFETY (each `written`): the kernel writes its whole output (it asserts the lengths).
        let c1 = unsafe { written(parts.take(2 * ch * hw), |o| concat_elu_image(o, a)) };
        let v = conv_image_forward(&d.block_in(), c1, &conv_in.0, &conv_in.1, cols, unsafe {
            as_uninit_mut(v)
        });
        let c2 = unsafe { written(parts.take(2 * ch * hw), |o| concat_elu_image(o, v)) };
        let g = conv_image_forward(
            &d.block_gate(),
            c2,
            &conv_gate.0,
            &conv_gate.1,
            cols,
            parts.take(2 * ch * hw),
        );
        let r = unsafe { written(parts.take(ch * hw), |o| gated_image(o, a, g)) };
        let stats = parts.take(2 * hw);
        stats.fill(MaybeUninit::new(E::zero()));
        // SAFETY: filled just above.
        let (mean, rstd) = unsafe { assume_init_mut(stats) }.split_at_mut(hw);
        layer_norm_stats_image(mean, rstd, r, E::from(LAYER_NORM_EPS).unwrap());
        layer_norm_image(unsafe { as_uninit_mut(a) }, r, gamma, beta, mean, rstd);
    }
    let region = match kept.as_mut() {
        Some(k) => k.take(2 * ch * hw),
        None => &mut spare[..2 * ch * hw],
    };
    let c_last = unsafe { written(region, |o| concat_elu_image(o, a)) };
    conv_image_forward(&d.last(), c_last, &p.last.0, &p.last.1, cols, out);
}

/// Forward pass, one image per task; with `keep`, also what the backward pass needs.
fn net_forward<E: Kernel>(
    d: &NetDims,
    p: &NetWeights<E>,
    x: Vec<E>,
    keep: bool,
) -> (Vec<E>, Option<Saved<E>>) {
    let (hw, per_image) = (d.hw(), d.kept_per_image());
    let out_len = d.batch * d.c_out * hw;
    assert_eq!(x.len(), d.batch * d.c_in * hw, "fused net: input size");
    let mut out: Vec<E> = Vec::with_capacity(out_len);
    let images: Vec<Vec<E>> = if out_len == 0 {
        Vec::new()
    } else {
        out.spare_capacity_mut()[..out_len]
            .par_chunks_mut(d.c_out * hw)
            .zip(x.par_chunks(d.c_in * hw))
            .map(|(o, xi)| {
                E::with_scratch(d.forward_scratch(), |scratch| {
                    if !keep {
                        forward_image(d, p, xi, None, o, scratch);
                        return Vec::new();
                    }
                    // One buffer per image (2.3 MB for the tutorial's networks): the backward
                    // pass reads them per image, and at this size mimalloc serves them from its
                    // segments (a batch-wide 300 MB block would be a separate "huge" allocation).
                    let mut kept = Vec::with_capacity(per_image);
                    forward_image(
                        d,
                        p,
                        xi,
                        Some(&mut kept.spare_capacity_mut()[..per_image]),
                        o,
                        scratch,
                    );
                    // SAFETY: forward_image writes every kept value.
                    unsafe { kept.set_len(per_image) };
                    kept
                })
            })
            .collect()
    };
    // SAFETY: each image's c_out × hw outputs were written by its last convolution (which
    // asserts its output size), and the chunks cover all out_len values.
    unsafe { out.set_len(out_len) };
    (out, keep.then_some(Saved { x, images }))
}

/// Backward pass of one image: writes the input gradient into `gx` and adds the parameter
/// gradients to `grads`.
#[allow(clippy::too_many_arguments)]
fn backward_image<E: Kernel>(
    d: &NetDims,
    p: &NetWeights<E>,
    x: &[E],
    kept: &[E],
    go: &[E],
    gx: &mut [E],
    grads: &mut NetGrads<E>,
    scratch: &mut [E],
) {
    let (ch, hw) = (d.hidden, d.hw());
    let mut sc = Carve::new(scratch);
    let cols = sc.take(d.conv_scratch(true));
    let (wide1, wide2) = (sc.take(2 * ch * hw), sc.take(2 * ch * hw));
    let (g_a, g_r, g_v) = (sc.take(ch * hw), sc.take(ch * hw), sc.take(ch * hw));
    let (sum_g, sum_gy) = (sc.take(hw), sc.take(hw));
    let c_last = &kept[3 * d.block_kept()..];
    let (gw, gb) = &mut grads.last;
    conv_image_backward(&d.last(), c_last, &p.last.0, go, cols, wide1, gw, gb);
    // SAFETY (each `as_uninit_mut`): the kernels write only initialised values.
    concat_elu_backward_from_output_image(unsafe { as_uninit_mut(g_a) }, c_last, wide1);
    for k in (0..3).rev() {
        let b = BlockKept::of(d, kept, k);
        let (g_gamma, g_beta) = &mut grads.norms[k];
        #[rustfmt::skip]
        layer_norm_backward_image(
            g_r, b.r, g_a, &p.norms[k].0, b.mean, b.rstd, g_gamma, g_beta, sum_g, sum_gy,
        );
        // wide1: gradient of the 1×1 convolution's output.
        gated_backward_image(unsafe { as_uninit_mut(wide1) }, b.g, g_r);
        let ((w_in, _), (w_gate, _)) = &p.blocks[k];
        let ((gw_in, gb_in), (gw_gate, gb_gate)) = &mut grads.blocks[k];
        // wide2: gradient of the second ConcatELU's output.
        #[rustfmt::skip]
        conv_image_backward(&d.block_gate(), b.c2, w_gate, wide1, cols, wide2, gw_gate, gb_gate);
        concat_elu_backward_from_output_image(unsafe { as_uninit_mut(g_v) }, b.c2, wide2);
        // wide1: gradient of the first ConcatELU's output.
        #[rustfmt::skip]
        conv_image_backward(&d.block_in(), b.c1, w_in, g_v, cols, wide1, gw_in, gb_in);
        // The block's input reaches its output twice: through the network and the residual.
        concat_elu_backward_from_output_image(unsafe { as_uninit_mut(g_a) }, b.c1, wide1);
        add_into(g_a, g_r);
    }
    let (gw, gb) = &mut grads.first;
    conv_image_backward(&d.first(), x, &p.first.0, g_a, cols, gx, gw, gb);
}

/// Backward pass: the gradient of the input and of every parameter. Images run in chunks of
/// [`backward_chunk`] (4, more for small images); each chunk sums its parameter gradients, and the
/// chunk sums are added in order, so results do not depend on the thread count or scheduling.
fn net_backward<E: Kernel>(
    d: &NetDims,
    p: &NetWeights<E>,
    s: &Saved<E>,
    grad_out: &[E],
) -> (Vec<E>, NetGrads<E>) {
    let hw = d.hw();
    let (n_in, n_out) = (d.c_in * hw, d.c_out * hw);
    assert!(
        grad_out.len() == d.batch * n_out && s.images.len() == d.batch,
        "fused net: gradient size"
    );
    let mut gx = vec![E::zero(); d.batch * n_in];
    let mut total = p.grad_accumulators(d);
    if d.batch == 0 || hw == 0 {
        return (gx, total);
    }
    let chunk = backward_chunk(hw);
    let partials: Vec<NetGrads<E>> = gx
        .par_chunks_mut(chunk * n_in)
        .zip(grad_out.par_chunks(chunk * n_out))
        .zip(s.x.par_chunks(chunk * n_in))
        .zip(s.images.par_chunks(chunk))
        .map(|(((gx, go), x), kept)| {
            let mut grads = p.grad_accumulators(d);
            E::with_scratch(d.backward_scratch(), |scratch| {
                let images = gx
                    .chunks_mut(n_in)
                    .zip(go.chunks(n_out))
                    .zip(x.chunks(n_in))
                    .zip(kept);
                for (((gx, go), x), kept) in images {
                    backward_image(d, p, x, kept, go, gx, &mut grads, scratch);
                }
            });
            grads
        })
        .collect();
    total.add_all(&partials);
    let to_weight_layout = |c: ConvDims, g: &mut Vec<E>| {
        *g = c.weight_grad_to_weight_layout(std::mem::take(g));
    };
    to_weight_layout(d.first(), &mut total.first.0);
    for (conv_in, conv_gate) in &mut total.blocks {
        to_weight_layout(d.block_in(), &mut conv_in.0);
        to_weight_layout(d.block_gate(), &mut conv_gate.0);
    }
    to_weight_layout(d.last(), &mut total.last.0);
    (gx, total)
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
    E: FlowDtype + Kernel,
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
    fn weight<S: Shape, E: FlowDtype + Kernel>(
        c: ConvDims,
        w: &Tensor<S, E, Cpu>,
    ) -> ConvWeight<E> {
        ConvWeight::new(&c, host_copy(w))
    }
    let params = NetParams {
        first: (
            weight(dims.first(), &net.conv_in.weight),
            host_copy(&net.conv_in.bias),
        ),
        blocks: std::array::from_fn(|k| {
            let b = &net.blocks[k];
            (
                (
                    weight(dims.block_in(), &b.conv_in.weight),
                    host_copy(&b.conv_in.bias),
                ),
                (
                    weight(dims.block_gate(), &b.conv_gate.weight),
                    host_copy(&b.conv_gate.bias),
                ),
            )
        }),
        norms: std::array::from_fn(|k| {
            (
                host_copy(&net.norms[k].gamma),
                host_copy(&net.norms[k].beta),
            )
        }),
        last: (
            weight(dims.last(), &net.conv_out.weight),
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
            add_into(grads.get_or_alloc_mut(&x_ref)?, &gx);
            add_into(grads.get_or_alloc_mut(&net.conv_in.weight)?, &g.first.0);
            add_into(grads.get_or_alloc_mut(&net.conv_in.bias)?, &g.first.1);
            for (block, (g_in, g_gate)) in net.blocks.iter().zip(&g.blocks) {
                add_into(grads.get_or_alloc_mut(&block.conv_in.weight)?, &g_in.0);
                add_into(grads.get_or_alloc_mut(&block.conv_in.bias)?, &g_in.1);
                add_into(grads.get_or_alloc_mut(&block.conv_gate.weight)?, &g_gate.0);
                add_into(grads.get_or_alloc_mut(&block.conv_gate.bias)?, &g_gate.1);
            }
            for (norm, (g_gamma, g_beta)) in net.norms.iter().zip(&g.norms) {
                add_into(grads.get_or_alloc_mut(&norm.gamma)?, g_gamma);
                add_into(grads.get_or_alloc_mut(&norm.beta)?, g_beta);
            }
            add_into(grads.get_or_alloc_mut(&net.conv_out.weight)?, &g.last.0);
            add_into(grads.get_or_alloc_mut(&net.conv_out.bias)?, &g.last.1);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// The conditioner network as one op on the CPU (`gated_conv_net_cpu`).
impl<E: FlowDtype + Kernel> NetDevice<E> for Cpu
where
    Cpu: FusedOps<E> + ConvDevice<E>,
{
    fn try_gated_conv_net<
        CIn: ConstDim,
        CH: ConstDim + Double,
        COut: ConstDim,
        H: Dim,
        W: Dim,
        T: Tape<E, Self>,
    >(
        net: &GatedConvNet<CIn, CH, COut, E, Self>,
        x: Tensor<(usize, CIn, H, W), E, Self, T>,
    ) -> Result<Tensor<(usize, COut, H, W), E, Self, T>, Self::Err> {
        gated_conv_net_cpu(net, x)
    }
}

#[cfg(test)]
mod tests {
    use super::{NetGrads, NetParams};
    use crate::nn::gated::{Conditioner, GatedConvNet};
    use crate::testing::perturb_params;
    use dfdx::prelude::*;

    /// The fused network against the chain of separate ops (themselves tested against dfdx
    /// compositions): output, input gradient and every parameter gradient, in f64. Hidden
    /// width 3 runs every convolution as an implicit GEMM; 16 runs the blocks' 3×3
    /// convolutions (32 → 16 channels) as Winograd convolutions, whose weight gradients are
    /// summed over the chunks in the transform domain.
    #[test]
    fn fused_network_matches_the_chain_of_ops() {
        check_against_the_chain::<3>();
        check_against_the_chain::<16>();
    }

    fn check_against_the_chain<const HIDDEN: usize>()
    where
        Const<HIDDEN>: crate::shape::Double,
    {
        let dev: Cpu = Cpu::seed_from_u64(3);
        let mut net =
            dev.build_module::<GatedConvNet<Const<2>, Const<HIDDEN>, Const<4>, f64, Cpu>, f64>();
        // Non-zero last layer and perturbed norms, so that every path carries gradient.
        perturb_params(&mut net, 0.3).unwrap();
        // 40 images: two chunks of the backward pass (32 images each at this size), the second
        // partial.
        let x: Tensor<(usize, Const<2>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(40, Const, Const, Const));
        let weights: Tensor<(usize, Const<4>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(40, Const, Const, Const));

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

    /// The chunk partials of the parameter gradients are summed element by element in their
    /// order, across the parallel blocks of vectors longer than one block.
    #[test]
    fn partial_gradients_are_summed_in_order_across_blocks() {
        let params = |seed: usize| {
            let v = |n: usize, k: usize| -> Vec<f64> {
                (0..n)
                    .map(|i| ((i * 31 + k * 7 + seed * 13) % 101) as f64 / 3.0)
                    .collect()
            };
            let conv = |k: usize| (v(10_007, k), v(5, k + 1));
            NetParams {
                first: conv(0),
                blocks: std::array::from_fn(|b| (conv(10 + b), conv(20 + b))),
                norms: std::array::from_fn(|b| (v(3, 30 + b), v(3, 40 + b))),
                last: conv(50),
            }
        };
        let partials: Vec<NetGrads<f64>> = (0..3).map(params).collect();
        let zeros = |v: &Vec<f64>| vec![0.0; v.len()];
        let conv = |(w, b): &(Vec<f64>, Vec<f64>)| (zeros(w), zeros(b));
        let p = &partials[0];
        let mut total = NetParams {
            first: conv(&p.first),
            blocks: std::array::from_fn(|k| (conv(&p.blocks[k].0), conv(&p.blocks[k].1))),
            norms: std::array::from_fn(|k| conv(&p.norms[k])),
            last: conv(&p.last),
        };
        total.add_all(&partials);
        for (j, got) in total.all().into_iter().enumerate() {
            for (i, g) in got.iter().enumerate() {
                let want = partials.iter().fold(0.0, |a, p| a + p.all()[j][i]);
                assert_eq!(*g, want, "vector {j}, element {i}");
            }
        }
    }
}
