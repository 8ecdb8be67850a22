//! The CPU kernels of the fused elementwise ops ([`FusedOps`](crate::nn::FusedOps)): ConcatELU,
//! channel layer norm, the gated residual and ActNorm's per-channel affine map (with or without
//! a ReLU), per image, forward and backward; and the
//! vectorizable `exp` they share with the affine coupling kernel.
use super::exp::KernelExp;
use super::host::backward_chunk;
use super::simd::{par_init, Kernel};
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

simd_kernel! {
    /// ConcatELU of one image: `x` (n values) into `out` (2n: elu(x), then elu(−x)).
    pub(crate) fn concat_elu_image<E: Kernel>(out: &mut [MaybeUninit<E>], x: &[E]) {
        // Equal lengths: every output is written (`par_init`'s contract).
        assert_eq!(out.len(), 2 * x.len(), "concat_elu: output must be twice the input");
        let (pos, neg) = out.split_at_mut(x.len());
        for ((p, n), &v) in pos.iter_mut().zip(neg.iter_mut()).zip(x) {
            // One exponential per element: of the pair elu(v), elu(−v) one is linear.
            let e = (-v.abs()).kexp() - E::one();
            let positive = v > E::zero();
            p.write(if positive { v } else { e });
            n.write(if positive { e } else { -v });
        }
    }
}

pub(crate) fn concat_elu_forward<E: Kernel>(x: &[E], c: usize, hw: usize) -> Vec<E> {
    let n = c * hw;
    // SAFETY: concat_elu_image writes all 2n outputs of each image (it asserts the lengths).
    unsafe {
        par_init(x.len() * 2, 2 * n, |i, o| {
            concat_elu_image(o, &x[i * n..(i + 1) * n])
        })
    }
}

simd_kernel! {
    /// ConcatELU's input gradient for one image from its input `x` and output gradient `go`.
    fn concat_elu_backward_image<E: Kernel>(g: &mut [E], x: &[E], go: &[E]) {
        // d elu(v)/dv = 1 for v > 0, exp(v) otherwise; the second half sees −x.
        let (gp, gn) = go.split_at(x.len());
        for (((g, &v), &a), &b) in g.iter_mut().zip(x).zip(gp).zip(gn) {
            let e = (-v.abs()).kexp();
            let positive = v > E::zero();
            let dp = if positive { E::one() } else { e };
            let dn = if positive { e } else { E::one() };
            *g = a * dp - b * dn;
        }
    }
}

pub(crate) fn concat_elu_backward<E: Kernel>(
    x: &[E],
    grad_out: &[E],
    c: usize,
    hw: usize,
) -> Vec<E> {
    let mut gx = vec![E::zero(); x.len()];
    gx.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .zip(grad_out.par_chunks(2 * c * hw))
        .for_each(|((g, xi), go)| concat_elu_backward_image(g, xi, go));
    gx
}

simd_kernel! {
    /// The gradient of ConcatELU from its output `y = cat(elu(x), elu(−x))` instead of its
    /// input: where `x > 0`, `y = (x, e^{−x} − 1)` and the derivatives are
    /// `(1, e^{−x}) = (1, y₂ + 1)`; where `x ≤ 0`, `y = (e^x − 1, −x)` and they are
    /// `(y₁ + 1, 1)`. No exponential, and the input need not be kept. One image: `g` has n
    /// values, `y` and `go` 2n.
    pub(crate) fn concat_elu_backward_from_output_image<E: Kernel>(
        g: &mut [MaybeUninit<E>],
        y: &[E],
        go: &[E],
    ) {
        assert!(y.len() == 2 * g.len() && go.len() == y.len(), "concat_elu: lengths");
        let (yp, yn) = y.split_at(g.len());
        let (gp, gn) = go.split_at(g.len());
        for ((((g, &p), &n), &a), &b) in g.iter_mut().zip(yp).zip(yn).zip(gp).zip(gn) {
            let dp = if p > E::zero() { E::one() } else { p + E::one() };
            let dn = if n > E::zero() { E::one() } else { n + E::one() };
            g.write(a * dp - b * dn);
        }
    }
}

simd_kernel! {
    /// Layer-norm statistics of one image (c planes of hw pixels): per pixel, the mean `m` and
    /// 1/σ `r` over the channels.
    pub(crate) fn layer_norm_stats_image<E: Kernel>(m: &mut [E], r: &mut [E], x: &[E], eps: E) {
        let hw = m.len();
        let c = x.len() / hw;
        let inv_c = E::one() / E::from(c).unwrap();
        m.iter_mut().for_each(|v| *v = E::zero());
        for plane in x.chunks_exact(hw) {
            m.iter_mut().zip(plane).for_each(|(m, v)| *m = *m + *v);
        }
        m.iter_mut().for_each(|v| *v = *v * inv_c);
        r.iter_mut().for_each(|v| *v = E::zero());
        for plane in x.chunks_exact(hw) {
            for ((r, v), m) in r.iter_mut().zip(plane).zip(m.iter()) {
                let d = *v - *m;
                *r = *r + d * d;
            }
        }
        r.iter_mut()
            .for_each(|v| *v = E::one() / (*v * inv_c + eps).sqrt());
    }
}

/// Per pixel of each image: mean and 1/σ over the channels.
pub(crate) fn layer_norm_stats<E: Kernel>(
    x: &[E],
    c: usize,
    hw: usize,
    eps: f64,
) -> (Vec<E>, Vec<E>) {
    let n = x.len() / (c * hw);
    let (mut mean, mut rstd) = (vec![E::zero(); n * hw], vec![E::zero(); n * hw]);
    let eps = E::from(eps).unwrap();
    mean.par_chunks_mut(hw)
        .zip(rstd.par_chunks_mut(hw))
        .zip(x.par_chunks(c * hw))
        .for_each(|((m, r), xi)| layer_norm_stats_image(m, r, xi, eps));
    (mean, rstd)
}

simd_kernel! {
    /// Layer norm of one image: `(x − m) · r · gamma + beta` per channel plane.
    pub(crate) fn layer_norm_image<E: Kernel>(
        o: &mut [MaybeUninit<E>],
        x: &[E],
        gamma: &[E],
        beta: &[E],
        m: &[E],
        r: &[E],
    ) {
        let hw = m.len();
        assert!(
            o.len() == x.len() && x.len() == gamma.len() * hw && beta.len() == gamma.len() && r.len() == hw,
            "layer_norm: lengths"
        );
        for (((o, x), &g), &b) in o.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(gamma).zip(beta) {
            for ((o, v), (m, r)) in o.iter_mut().zip(x).zip(m.iter().zip(r)) {
                o.write((*v - *m) * *r * g + b);
            }
        }
    }
}

pub(crate) fn layer_norm_forward<E: Kernel>(
    x: &[E],
    gamma: &[E],
    beta: &[E],
    mean: &[E],
    rstd: &[E],
    c: usize,
    hw: usize,
) -> Vec<E> {
    let n = c * hw;
    // SAFETY: the kernel writes all n values of each image (it asserts the lengths).
    unsafe {
        par_init(x.len(), n, |i, o| {
            let (m, r) = (&mean[i * hw..(i + 1) * hw], &rstd[i * hw..(i + 1) * hw]);
            layer_norm_image(o, &x[i * n..(i + 1) * n], gamma, beta, m, r)
        })
    }
}

simd_kernel! {
    /// Layer norm's input gradient for one image, adding its gamma and beta gradients to
    /// `g_gamma`, `g_beta`; `sum_g`, `sum_gy` are scratch of hw values.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer_norm_backward_image<E: Kernel>(
        gx: &mut [E],
        x: &[E],
        go: &[E],
        gamma: &[E],
        m: &[E],
        r: &[E],
        g_gamma: &mut [E],
        g_beta: &mut [E],
        sum_g: &mut [E],
        sum_gy: &mut [E],
    ) {
        // With y = (x − μ)/σ and g = grad_out · γ: grad_x = (g − mean_c(g) − y · mean_c(g · y)) / σ.
        let hw = m.len();
        let inv_c = E::one() / E::from(gamma.len()).unwrap();
        sum_g.iter_mut().for_each(|v| *v = E::zero());
        sum_gy.iter_mut().for_each(|v| *v = E::zero());
        for ch in 0..gamma.len() {
            let (xs, gos) = (&x[ch * hw..(ch + 1) * hw], &go[ch * hw..(ch + 1) * hw]);
            let (mut gg, mut gb) = (E::zero(), E::zero());
            for p in 0..hw {
                let y = (xs[p] - m[p]) * r[p];
                let g = gos[p] * gamma[ch];
                sum_g[p] = sum_g[p] + g;
                sum_gy[p] = sum_gy[p] + g * y;
                gg = gg + gos[p] * y;
                gb = gb + gos[p];
            }
            g_gamma[ch] = g_gamma[ch] + gg;
            g_beta[ch] = g_beta[ch] + gb;
        }
        for ch in 0..gamma.len() {
            let (xs, gos) = (&x[ch * hw..(ch + 1) * hw], &go[ch * hw..(ch + 1) * hw]);
            let gxs = &mut gx[ch * hw..(ch + 1) * hw];
            for p in 0..hw {
                let y = (xs[p] - m[p]) * r[p];
                let g = gos[p] * gamma[ch];
                gxs[p] = (g - sum_g[p] * inv_c - y * sum_gy[p] * inv_c) * r[p];
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward<E: Kernel>(
    x: &[E],
    gamma: &[E],
    mean: &[E],
    rstd: &[E],
    grad_out: &[E],
    c: usize,
    hw: usize,
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let mut gx = vec![E::zero(); x.len()];
    let chunk = backward_chunk(hw);
    let partials: Vec<(Vec<E>, Vec<E>)> = gx
        .par_chunks_mut(chunk * c * hw)
        .zip(x.par_chunks(chunk * c * hw))
        .zip(grad_out.par_chunks(chunk * c * hw))
        .zip(mean.par_chunks(chunk * hw).zip(rstd.par_chunks(chunk * hw)))
        .map(|(((gx, x), go), (mean, rstd))| {
            let (mut g_gamma, mut g_beta) = (vec![E::zero(); c], vec![E::zero(); c]);
            let (mut sum_g, mut sum_gy) = (vec![E::zero(); hw], vec![E::zero(); hw]);
            let images = gx
                .chunks_mut(c * hw)
                .zip(x.chunks(c * hw))
                .zip(go.chunks(c * hw));
            for (((gx, xi), go), (m, r)) in images.zip(mean.chunks(hw).zip(rstd.chunks(hw))) {
                layer_norm_backward_image(
                    gx,
                    xi,
                    go,
                    gamma,
                    m,
                    r,
                    &mut g_gamma,
                    &mut g_beta,
                    &mut sum_g,
                    &mut sum_gy,
                );
            }
            (g_gamma, g_beta)
        })
        .collect();
    let (mut g_gamma, mut g_beta) = (vec![E::zero(); c], vec![E::zero(); c]);
    for (gg, gb) in partials {
        g_gamma.iter_mut().zip(gg).for_each(|(a, b)| *a = *a + b);
        g_beta.iter_mut().zip(gb).for_each(|(a, b)| *a = *a + b);
    }
    (gx, g_gamma, g_beta)
}

#[inline(always)]
fn sigmoid<E: Float + KernelExp>(v: E) -> E {
    E::one() / (E::one() + (-v).kexp())
}

simd_kernel! {
    /// `x + val · σ(gate)` for one image; `h` holds val then gate.
    pub(crate) fn gated_image<E: Kernel>(o: &mut [MaybeUninit<E>], x: &[E], h: &[E]) {
        assert!(o.len() == x.len() && h.len() == 2 * x.len(), "gated: lengths");
        let (val, gate) = h.split_at(x.len());
        for (((o, x), v), g) in o.iter_mut().zip(x).zip(val).zip(gate) {
            o.write(*x + *v * sigmoid(*g));
        }
    }
}

pub(crate) fn gated_forward<E: Kernel>(x: &[E], h: &[E], c: usize, hw: usize) -> Vec<E> {
    let n = c * hw;
    // SAFETY: the kernel writes all n values of each image (it asserts the lengths).
    unsafe {
        par_init(x.len(), n, |i, o| {
            gated_image(o, &x[i * n..(i + 1) * n], &h[2 * i * n..2 * (i + 1) * n])
        })
    }
}

simd_kernel! {
    /// The gradient of `h` (val and gate) of the gated residual of one image.
    pub(crate) fn gated_backward_image<E: Kernel>(gh: &mut [MaybeUninit<E>], h: &[E], go: &[E]) {
        assert!(gh.len() == h.len() && h.len() == 2 * go.len(), "gated: lengths");
        let (val, gate) = h.split_at(go.len());
        let (g_val, g_gate) = gh.split_at_mut(go.len());
        for ((((gv, gg), v), g), o) in g_val
            .iter_mut()
            .zip(g_gate.iter_mut())
            .zip(val)
            .zip(gate)
            .zip(go)
        {
            let s = sigmoid(*g);
            gv.write(*o * s);
            gg.write(*o * *v * s * (E::one() - s));
        }
    }
}

pub(crate) fn gated_backward<E: Kernel>(h: &[E], grad_out: &[E], c: usize, hw: usize) -> Vec<E> {
    let n = c * hw;
    // SAFETY: the kernel writes all 2n values of each image (it asserts the lengths).
    unsafe {
        par_init(h.len(), 2 * n, |i, gh| {
            gated_backward_image(
                gh,
                &h[2 * i * n..2 * (i + 1) * n],
                &grad_out[i * n..(i + 1) * n],
            )
        })
    }
}

simd_kernel! {
    /// ActNorm of one image: `scale · (x + loc)` per channel plane (`scale = e^{logs}`), then a
    /// ReLU if `relu`.
    pub(crate) fn channel_affine_image<E: Kernel>(
        o: &mut [MaybeUninit<E>],
        x: &[E],
        loc: &[E],
        scale: &[E],
        relu: bool,
    ) {
        let hw = x.len() / loc.len().max(1);
        assert!(
            hw > 0 && o.len() == x.len() && scale.len() == loc.len() && hw * loc.len() == x.len(),
            "channel_affine: lengths"
        );
        let planes = o.chunks_exact_mut(hw).zip(x.chunks_exact(hw));
        for ((o, x), (&b, &s)) in planes.zip(loc.iter().zip(scale)) {
            for (o, &v) in o.iter_mut().zip(x) {
                let y = (v + b) * s;
                o.write(if relu { y.max(E::zero()) } else { y });
            }
        }
    }
}

/// ActNorm (`scale · (x + loc)` per channel, then a ReLU if `relu`) of a batch of images of
/// `loc.len()` channels and `hw` pixels.
pub(crate) fn channel_affine_forward<E: Kernel>(
    x: &[E],
    loc: &[E],
    scale: &[E],
    hw: usize,
    relu: bool,
) -> Vec<E> {
    let n = loc.len() * hw;
    // SAFETY: the kernel writes all n values of each image (it asserts the lengths).
    unsafe {
        par_init(x.len(), n, |i, o| {
            channel_affine_image(o, &x[i * n..(i + 1) * n], loc, scale, relu)
        })
    }
}

simd_kernel! {
    /// The gradients of [`channel_affine_image`] for one image, from its output `y`: the input
    /// gradient into `gx`, and the sums for `loc` and `logs` added to `g_loc`, `g_logs`.
    /// With `y = scale · (x + loc)` (where the ReLU passes): `∂y/∂x = ∂y/∂loc = scale` and
    /// `∂y/∂logs = y`, so the input need not be kept.
    pub(crate) fn channel_affine_backward_image<E: Kernel>(
        gx: &mut [E],
        y: &[E],
        go: &[E],
        scale: &[E],
        relu: bool,
        g_loc: &mut [E],
        g_logs: &mut [E],
    ) {
        let hw = y.len() / scale.len().max(1);
        assert!(
            hw > 0 && gx.len() == y.len() && go.len() == y.len() && g_loc.len() == scale.len(),
            "channel_affine: lengths"
        );
        let planes = gx.chunks_exact_mut(hw).zip(y.chunks_exact(hw)).zip(go.chunks_exact(hw));
        for (ch, ((gx, y), go)) in planes.enumerate() {
            let s = scale[ch];
            let (mut sum_loc, mut sum_logs) = (E::zero(), E::zero());
            for ((g, &y), &o) in gx.iter_mut().zip(y).zip(go) {
                // The ReLU's derivative is 0 where its output is 0 (as dfdx's relu).
                let passed = if !relu || y > E::zero() { o } else { E::zero() };
                *g = passed * s;
                sum_loc = sum_loc + passed;
                sum_logs = sum_logs + passed * y;
            }
            g_loc[ch] = g_loc[ch] + sum_loc * s;
            g_logs[ch] = g_logs[ch] + sum_logs;
        }
    }
}

/// The gradients of [`channel_affine_forward`] from its output `y` and output gradient:
/// `(grad x, grad loc, grad logs)`. Per-chunk sums added in a fixed order (deterministic).
pub(crate) fn channel_affine_backward<E: Kernel>(
    y: &[E],
    grad_out: &[E],
    scale: &[E],
    hw: usize,
    relu: bool,
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let c = scale.len();
    let mut gx = vec![E::zero(); y.len()];
    let chunk = backward_chunk(hw) * c * hw;
    let partials: Vec<(Vec<E>, Vec<E>)> = gx
        .par_chunks_mut(chunk.max(1))
        .zip(y.par_chunks(chunk.max(1)))
        .zip(grad_out.par_chunks(chunk.max(1)))
        .map(|((gx, y), go)| {
            let (mut g_loc, mut g_logs) = (vec![E::zero(); c], vec![E::zero(); c]);
            let images = gx
                .chunks_mut(c * hw)
                .zip(y.chunks(c * hw))
                .zip(go.chunks(c * hw));
            for ((gx, y), go) in images {
                channel_affine_backward_image(gx, y, go, scale, relu, &mut g_loc, &mut g_logs);
            }
            (g_loc, g_logs)
        })
        .collect();
    let (mut g_loc, mut g_logs) = (vec![E::zero(); c], vec![E::zero(); c]);
    for (gl, gs) in partials {
        g_loc.iter_mut().zip(gl).for_each(|(a, b)| *a = *a + b);
        g_logs.iter_mut().zip(gs).for_each(|(a, b)| *a = *a + b);
    }
    (gx, g_loc, g_logs)
}
