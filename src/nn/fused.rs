//! Fused elementwise ops of the gated ResNet: concatenated ELU, channel layer norm and the gated
//! residual, each as one pass forward and one backward.
//!
//! Written as compositions of dfdx ops, each of these allocates and walks a full activation
//! tensor several times (and keeps as many intermediates for the backward pass); they dominated
//! the CPU training step. The trait's default methods are those compositions (any dfdx device,
//! and the reference the CPU kernels are tested against); `Cpu` overrides them with fused
//! kernels, parallel over the images of the batch.
use crate::nn::conv::{add_into, host_copy, take_grad};
use crate::nn::gated::GatedConvNet;
use crate::nn::simd::{par_init, Kernel};
use crate::shape::Double;
use crate::{FlowDevice, FlowDtype};
use dfdx::prelude::*;
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `ELU(x) = x` for `x > 0`, `exp(x) − 1` otherwise (α = 1), by composition of dfdx ops:
/// `relu(x) + (e^{min(x, 0)} − 1)`, both terms with a gradient everywhere (1 at 0, like the
/// kernels). Four unary ops and one binary op; the binary op runs on the tensor flattened to one
/// axis, where dfdx's CUDA kernels compute one index division per element instead of one per
/// axis (a view when `x` is contiguous).
fn elu_composed<S: Shape, E: FlowDtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    let shape = *x.shape();
    let flat = x.try_reshape_like(&(shape.num_elements(),))?;
    let pos = flat.retaped::<T>().try_relu()?;
    let neg = flat
        .try_clamp(f64::NEG_INFINITY, 0.0)?
        .try_exp()?
        .try_sub(E::ONE)?;
    pos.try_add(neg)?.try_reshape_like(&shape)
}

/// `cat([elu(x), elu(−x)], channels)` by composition of dfdx ops: the concatenation first, so
/// that one ELU runs over both halves (7 kernels forward instead of 16).
pub(crate) fn concat_elu_composed<
    C: Dim,
    C2: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    c2: C2,
) -> Result<Tensor<(usize, C2, H, W), E, D, T>, D::Err> {
    let x = x
        .try_realize::<(usize, usize, H, W)>()
        .unwrap_or_else(|_| unreachable!());
    let both = (x.retaped::<T>(), x.try_negate()?).try_concat_along(Axis::<1>)?;
    let out = elu_composed(both)?;
    assert_eq!(
        out.shape().1,
        c2.size(),
        "concat_elu: output must have 2·C channels"
    );
    Ok(out.try_realize().unwrap_or_else(|_| unreachable!()))
}

/// Channel layer norm with per-channel affine, by composition of dfdx ops.
pub(crate) fn layer_norm_composed<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    gamma: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
    beta: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
    eps: f64,
) -> Result<Tensor<(usize, C, H, W), E, D, T>, D::Err> {
    let shape = *x.shape();
    // The tape goes on the parameter before the reshape (DESIGN.md §7.2).
    let param = |p: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>| {
        p.retaped::<T>()
            .try_reshape_like(&(shape.1,))?
            .try_broadcast_like(&shape)
    };
    let y = x.try_normalize::<Axis<1>>(eps)?;
    y.try_mul(param(gamma)?)?.try_add(param(beta)?)
}

/// `x + val · σ(gate)` by composition of dfdx ops.
pub(crate) fn gated_residual_composed<
    C: Dim,
    C2: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    h: Tensor<(usize, C2, H, W), E, D, T>,
) -> Result<Tensor<(usize, C, H, W), E, D, T>, D::Err> {
    let c = x.shape().1.size();
    assert_eq!(
        h.shape().1.size(),
        2 * c,
        "gated residual: h must have 2·C channels"
    );
    // Two slices of a tensor nothing else reads: CPU slice backward assigns, and the regions
    // are disjoint, so this stays correct (DESIGN.md §7.1).
    let val = h.retaped::<T>().try_slice((.., 0..c, .., ..))?;
    let gate = h.try_slice((.., c..2 * c, .., ..))?;
    let shape = *x.shape();
    let val = val.try_reshape_like(&shape)?;
    let gate = gate.try_reshape_like(&shape)?;
    x.try_add(val.try_mul(gate.try_sigmoid()?)?)
}

/// The gated ResNet's elementwise ops on one device. The default methods are dfdx
/// compositions; `Cpu` has fused kernels.
pub trait FusedOps<E: FlowDtype>: Device<E> {
    /// `cat([elu(x), elu(−x)], channels)`: `C` channels in, `C2 = 2C` out.
    fn try_concat_elu<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        c2: C2,
    ) -> Result<Tensor<(usize, C2, H, W), E, Self, T>, Self::Err> {
        concat_elu_composed(x, c2)
    }

    /// Layer norm over channels (biased variance), then `· gamma + beta` per channel.
    fn try_layer_norm_channels<C: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        gamma: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, Self>,
        beta: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, Self>,
        eps: f64,
    ) -> Result<Tensor<(usize, C, H, W), E, Self, T>, Self::Err> {
        layer_norm_composed(x, gamma, beta, eps)
    }

    /// `x + val · σ(gate)` where `(val, gate)` are the two channel halves of `h`.
    fn try_gated_residual<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        h: Tensor<(usize, C2, H, W), E, Self, T>,
    ) -> Result<Tensor<(usize, C, H, W), E, Self, T>, Self::Err> {
        gated_residual_composed(x, h)
    }

    /// The whole conditioner network ([`GatedConvNet`]) on `x`; the default is the chain of its
    /// layers, `Cpu` runs it as one op (`fused_net`).
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
    ) -> Result<Tensor<(usize, COut, H, W), E, Self, T>, Self::Err>
    where
        Self: FlowDevice<E>,
    {
        net.try_condition_composed(x)
    }

    /// The affine coupling transform ([`Coupling`](crate::layers::Coupling)) from the
    /// network's output `h` (raw scale and shift, `2·C` channels): `s = tanh(s_raw / e^f) · e^f`
    /// and `t = t_raw`, both zero on the kept half (`mask` = 1, expanded to the batch), then
    /// `z' = (z + t) · e^s`, or `z' = z · e^{−s} − t` with `reverse`. Returns `z'` and `Σ s` per
    /// image. The default is the composition of dfdx ops; `Cpu` runs one parallel pass.
    #[allow(clippy::type_complexity)]
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
    >
    where
        Self: FlowDevice<E>,
    {
        super::affine::affine_coupling_composed(z, h, scaling_factor, mask, reverse)
    }
}

#[cfg(feature = "cuda")]
impl FusedOps<f32> for Cuda {}
#[cfg(feature = "cuda")]
impl FusedOps<f64> for Cuda {}

/// `exp` for the elementwise kernels: libm in f64 (the exact checks run in f64), a branch-free
/// polynomial in f32 that the compiler vectorizes (libm's scalar `expf` was 21% of a
/// multi-scale training step).
pub(crate) trait KernelExp: Copy {
    /// `e^self`.
    fn kexp(self) -> Self;
    /// `tanh(self)`: libm in f64; in f32 `1 − 2 / (e^{2x} + 1)` from the vectorizable `exp`
    /// (libm's scalar `tanhf` would dominate the affine coupling's pass), within about 1e-7
    /// absolute.
    fn ktanh(self) -> Self;
}

impl KernelExp for f64 {
    #[inline(always)]
    fn kexp(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn ktanh(self) -> f64 {
        self.tanh()
    }
}

impl KernelExp for f32 {
    #[inline(always)]
    fn kexp(self) -> f32 {
        exp_f32(self)
    }
    #[inline(always)]
    fn ktanh(self) -> f32 {
        // e^{2x} saturates to +inf for large x (tanh = 1) and to 0 far below (tanh = −1).
        1.0 - 2.0 / (exp_f32(2.0 * self) + 1.0)
    }
}

/// `e^x` in f32 within 2 ulp (Cephes `expf`): `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6
/// polynomial for `e^r`, and `2^n` built in the exponent bits. The input is clamped to
/// [−87, 88], where `e^x` is a normal float: below, the result is 1.6e−38 instead of a smaller
/// number or 0; above, 1.65e38 instead of a larger number or infinity — no difference for the
/// ELU and sigmoid that use it. No branches and no libm calls, so loops over it vectorize.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in few bits and a remainder (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer (no SSE4.1 needed).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^n from t's bits, whose low mantissa bits hold n + 2^22: an integer subtraction, where
    // `n as i32` (a saturating cast) compiled to scalar code with NaN checks per lane.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    e_r * scale
}

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
    let chunk = crate::nn::conv::backward_chunk(hw);
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

            fn try_gated_conv_net<
                CIn: ConstDim,
                CH: ConstDim + Double,
                COut: ConstDim,
                H: Dim,
                W: Dim,
                T: Tape<$E, Self>,
            >(
                net: &GatedConvNet<CIn, CH, COut, $E, Self>,
                x: Tensor<(usize, CIn, H, W), $E, Self, T>,
            ) -> Result<Tensor<(usize, COut, H, W), $E, Self, T>, Self::Err>
            where
                Self: FlowDevice<$E>,
            {
                super::fused_net::gated_conv_net_cpu(net, x)
            }

            fn try_affine_coupling<C: ConstDim + Double, H: Dim, W: Dim, T: Tape<$E, Self>>(
                z: Tensor<(usize, C, H, W), $E, Self, T>,
                h: Tensor<(usize, C::Output, H, W), $E, Self, T>,
                scaling_factor: &Tensor<(C,), $E, Self>,
                mask: &Tensor<(usize, C, H, W), $E, Self>,
                reverse: bool,
            ) -> Result<
                (
                    Tensor<(usize, C, H, W), $E, Self, T>,
                    Tensor<(usize,), $E, Self, T>,
                ),
                Self::Err,
            >
            where
                Self: FlowDevice<$E>,
            {
                if reverse && T::OWNS_TAPE {
                    // The flows invert without gradients; this is for completeness.
                    return super::affine::affine_coupling_composed(
                        z,
                        h,
                        scaling_factor,
                        mask,
                        reverse,
                    );
                }
                super::affine::affine_coupling_cpu(z, h, scaling_factor, mask, reverse)
            }
        }
    };
}

cpu_fused_impl!(f32);
cpu_fused_impl!(f64);

#[cfg(test)]
mod tests {
    use super::*;

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
    fn exp_f32_is_within_two_ulp_of_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let exact = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - exact) / exact).abs();
            worst = worst.max(rel);
            x += 0.000_731;
        }
        // 2 ulp of f32 at the worst place in the binade is 2 · 2^-23 ≈ 2.4e-7.
        assert!(worst < 2.4e-7, "max relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 1e-37);
        assert!(exp_f32(1000.0).is_finite() && exp_f32(1000.0) > 1e38);
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
}
