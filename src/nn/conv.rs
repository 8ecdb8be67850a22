//! "Same" 2-D convolutions (stride 1; 3×3 with padding 1, 1×1 with padding 0) on stable Rust.
//!
//! dfdx 0.13 compiles its own `conv2d` only on nightly (DESIGN.md §2), so the convolution is ours,
//! behind the small device trait [`ConvDevice`] so that layers stay device-generic. On the CPU it
//! is a custom autograd op: per image, an implicit GEMM (one GEMM of the `gemm` crate per kernel
//! tap, straight from zero-padded copies of the input planes; see `direct_image_forward`), in
//! parallel over the images of the batch with rayon; 3×3 kernels with channel counts that are
//! multiples of 16 (the hidden layers of the conditioner networks, most of the work) run as
//! Winograd F(2×2, 3×3) convolutions instead (2.25× fewer products; `src/nn/winograd.rs`). The
//! backward pass keeps only the input, so peak memory is a few padded planes of scratch per
//! thread. (DESIGN.md §4 chose im2col + GEMM per image; the implicit GEMM does the same
//! arithmetic without the K²-times larger column matrix, which had stopped fitting in the
//! cache.) The conditioner networks call the per-image functions directly (`fused_net`).
use dfdx::prelude::*;
use num_traits::Float;
use rayon::prelude::*;

use super::simd::{as_uninit_mut, assume_init_mut, par_init, Kernel};
use super::transpose::{transpose_block, BLOCK};
use super::winograd::{self, WinogradWeight};
use std::mem::MaybeUninit;

/// A device that can run the same-padded convolutions of the flows' conditioner networks.
pub trait ConvDevice<E: Dtype>: Device<E> {
    /// Convolves `x` (batch, `CI`, H, W) with `weight` (`CO`, `CI`, K, K) plus `bias` (`CO`),
    /// stride 1 and zero padding `K / 2` ("same"), recording the backward pass on `x`'s tape.
    /// Gradients flow to `x`, `weight` and `bias`.
    fn try_conv2d_same<const K: usize, CI: Dim, CO: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, CI, H, W), E, Self, T>,
        weight: &Tensor<(CO, CI, Const<K>, Const<K>), E, Self>,
        bias: &Tensor<(CO,), E, Self>,
    ) -> Result<Tensor<(usize, CO, H, W), E, Self, T>, Self::Err>;
}

/// Shapes of one convolution, in elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvDims {
    pub(crate) batch: usize,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) kernel: usize,
}

impl ConvDims {
    pub(crate) fn hw(&self) -> usize {
        self.height * self.width
    }
}

/// `c (m×n) = [c +] a (m×k) · b (k×n)`, each matrix given as a slice with (row stride, column
/// stride), single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into<E: 'static + Copy + Float>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    (c_rs, c_cs): (usize, usize),
    accumulate: bool,
    a: &[E],
    (a_rs, a_cs): (usize, usize),
    b: &[E],
    (b_rs, b_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // The bounds checks that make the raw-pointer call below sound.
    assert!(
        (m - 1) * c_rs + (n - 1) * c_cs < c.len(),
        "gemm: destination too small"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                (0..n).for_each(|j| c[i * c_rs + j * c_cs] = E::zero());
            }
        }
        return;
    }
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "gemm: lhs too small"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "gemm: rhs too small"
    );
    assert!(
        std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
            || std::any::TypeId::of::<E>() == std::any::TypeId::of::<f64>(),
        "gemm: only f32 and f64 are supported"
    );
    // SAFETY: the asserts above prove that every element the kernel reads (row index < m or k,
    // column index < k or n, times the given strides) lies inside `a` and `b`, and every element
    // it writes (likewise with c's strides) lies inside `c`; `c` is borrowed mutably, so it
    // does not alias `a` or `b`. gemm dispatches on the type id, checked above to be f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

impl ConvDims {
    fn pad(&self) -> usize {
        self.kernel / 2
    }
    /// Width of a zero-padded plane.
    fn padded_width(&self) -> usize {
        self.width + 2 * self.pad()
    }
    /// Output positions on the padded-width grid: pixel (y, x) is at `y · Wp + x`; the other
    /// positions (the `K − 1` at the end of each row but the last, and the rounding at the end)
    /// are junk, computed and then ignored. A multiple of 16 (one AVX-512 register of f32): the
    /// `gemm` crate copies ("packs") a whole operand whose row count is not, on every call.
    fn grid(&self) -> usize {
        if self.hw() == 0 {
            0
        } else {
            ((self.height - 1) * self.padded_width() + self.width).next_multiple_of(16)
        }
    }
    /// Where kernel tap `t` (row-major over K×K) reads in a padded plane, relative to the output
    /// position.
    fn tap_offset(&self, t: usize) -> usize {
        (t / self.kernel) * self.padded_width() + t % self.kernel
    }
    /// Values per zero-padded plane: (H + K − 1) × (W + K − 1), and zeros after it up to what
    /// the last tap reads for the last grid position; a multiple of 16.
    fn padded_plane(&self) -> usize {
        let padded = (self.height + 2 * self.pad()) * self.padded_width();
        let last_tap = self.tap_offset(self.kernel * self.kernel - 1);
        padded.max(last_tap + self.grid()).next_multiple_of(16)
    }
    /// Whether [`conv_image_backward`] accumulates the weight gradient transposed, as
    /// (tap, c_in, c_out) instead of the weight's (c_out, c_in, tap): `gemm` packs the operand
    /// whose rows are the destination's rows, and this makes it the output gradient (c_out ×
    /// grid) instead of the padded input (c_in × grid), once per tap; worth it when c_out ≤ c_in
    /// (the last layer of a network has 2 output channels and 64 input channels).
    pub(crate) fn weight_grad_transposed(&self) -> bool {
        self.kernel > 1 && self.c_out <= self.c_in
    }
    /// Whether [`conv_image_backward`] transposes the output gradient once per image, to
    /// (grid position, c_out), for the transposed weight gradient. `gemm` wants the left
    /// operand with the destination's rows (here c_out) contiguous and otherwise packs it,
    /// transposing, on every call: once per tap. Transposed once, it is used as it is, which
    /// `gemm` does when c_out is a multiple of 16 (else it packs anyway, and slowly from this
    /// layout). Measured per image on one core (`conv_image_backward`, old / new interleaved):
    /// 3×3, 32 → 16 channels at 28×28 −13 %; 64 → 32 −4 %; 96 → 48 at 14×14 −5 %; 128 → 64 at
    /// 7×7 −5 %. Not for 1×1 kernels: there the transpose (16 µs for 32 × 784 values) cost more
    /// than the packing it saves.
    fn transposes_output_grad(&self) -> bool {
        self.weight_grad_transposed() && self.c_out.is_multiple_of(16)
    }
    /// Values of the weight gradient as [`conv_image_backward`] accumulates it: the weight's
    /// size, or more for a Winograd convolution (its transform domain).
    pub(crate) fn weight_grad_len(&self) -> usize {
        if winograd::applies(self) {
            winograd::weight_grad_len(self)
        } else {
            self.c_out * self.c_in * self.kernel * self.kernel
        }
    }
    /// A weight gradient accumulated by [`conv_image_backward`] in the weight's layout.
    pub(crate) fn weight_grad_to_weight_layout<E: Kernel>(&self, g: Vec<E>) -> Vec<E> {
        if winograd::applies(self) {
            winograd::weight_grad_to_weight_layout(self, &g)
        } else {
            self.direct_weight_grad_to_weight_layout(g)
        }
    }
    /// A weight gradient accumulated by [`direct_image_backward`] in the weight's layout.
    pub(crate) fn direct_weight_grad_to_weight_layout<E: Copy>(&self, g: Vec<E>) -> Vec<E> {
        if !self.weight_grad_transposed() {
            return g;
        }
        let taps = self.kernel * self.kernel;
        let (ci_n, co_n) = (self.c_in, self.c_out);
        (0..co_n * ci_n * taps)
            .map(|i| {
                let (co, ci, t) = (i / (ci_n * taps), (i / taps) % ci_n, i % taps);
                g[(t * ci_n + ci) * co_n + co]
            })
            .collect()
    }
    /// Scratch values [`conv_image_forward`] needs.
    pub(crate) fn forward_scratch(&self) -> usize {
        if winograd::applies(self) {
            winograd::scratch(self)
        } else {
            self.direct_forward_scratch()
        }
    }
    /// Scratch values [`conv_image_backward`] needs.
    pub(crate) fn backward_scratch(&self) -> usize {
        if winograd::applies(self) {
            winograd::scratch(self)
        } else {
            self.direct_backward_scratch()
        }
    }
    /// Scratch values [`direct_image_forward`] needs.
    pub(crate) fn direct_forward_scratch(&self) -> usize {
        if self.kernel == 1 {
            0
        } else {
            self.c_in * self.padded_plane() + self.c_out * self.grid()
        }
    }
    /// Scratch values [`direct_image_backward`] needs.
    pub(crate) fn direct_backward_scratch(&self) -> usize {
        if self.kernel == 1 {
            0
        } else {
            let transposed_go = if self.transposes_output_grad() {
                self.c_out * self.grid()
            } else {
                0
            };
            2 * self.c_in * self.padded_plane() + self.c_out * self.grid() + transposed_go
        }
    }
}

simd_kernel! {
    /// Copies the planes of `img` (H×W each) into the middle of zero-padded planes `out`
    /// ((H + K − 1) × (W + K − 1) each), writing every value of `out`.
    fn pad_planes<E: Kernel>(d: &ConvDims, img: &[E], out: &mut [E]) {
        let (w, p, wp, plane) = (d.width, d.pad(), d.padded_width(), d.padded_plane());
        for (src, dst) in img.chunks_exact(d.hw()).zip(out.chunks_exact_mut(plane)) {
            // Top rows and the first row's left border; then per row its pixels and the zeros
            // up to the next row's first pixel (its right and the next row's left border).
            dst[..p * wp + p].fill(E::zero());
            for (y, row) in src.chunks_exact(w).enumerate() {
                let at = (y + p) * wp + p;
                dst[at..at + w].copy_from_slice(row);
                dst[at + w..at + w + 2 * p].fill(E::zero());
            }
            dst[(d.height + p) * wp + p..].fill(E::zero());
        }
    }
}

simd_kernel! {
    /// The sum of `v` in 16 interleaved partial sums: a single running sum is one dependent
    /// add per element (latency-bound, and not vectorizable without reassociation), and the
    /// bias gradients sum every output-gradient plane.
    pub(crate) fn sum<E: Kernel>(v: &[E]) -> E {
        let mut lanes = [E::zero(); 16];
        let chunks = v.chunks_exact(16);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                *l = *l + *x;
            }
        }
        let total = lanes.iter().fold(E::zero(), |a, l| a + *l);
        tail.iter().fold(total, |a, x| a + *x)
    }
}

simd_kernel! {
    /// `acc[c][row y of the grid] + bias[c]` for each plane `c`: from the padded-width grid to
    /// (H, W) planes, writing every value of `out`.
    fn from_grid<E: Kernel>(d: &ConvDims, acc: &[E], bias: &[E], out: &mut [MaybeUninit<E>]) {
        let (w, wp, grid) = (d.width, d.padded_width(), d.grid());
        for ((o, a), &b) in out.chunks_exact_mut(d.hw()).zip(acc.chunks_exact(grid)).zip(bias) {
            for (y, row) in o.chunks_exact_mut(w).enumerate() {
                for (o, &v) in row.iter_mut().zip(&a[y * wp..y * wp + w]) {
                    o.write(v + b);
                }
            }
        }
    }
}

/// (H, W) planes onto the padded-width grid, zero at the junk positions.
fn to_grid<E: Kernel>(d: &ConvDims, planes: &[E], out: &mut [E]) {
    let (w, wp, grid) = (d.width, d.padded_width(), d.grid());
    for (src, dst) in planes.chunks_exact(d.hw()).zip(out.chunks_exact_mut(grid)) {
        for (y, row) in src.chunks_exact(w).enumerate() {
            dst[y * wp..y * wp + w].copy_from_slice(row);
            if y + 1 < d.height {
                dst[y * wp + w..(y + 1) * wp].fill(E::zero());
            }
        }
        dst[(d.height - 1) * wp + w..].fill(E::zero());
    }
}

/// (H, W) planes (c of them) transposed onto the padded-width grid: `out[pos · c + ch]`, zero
/// at the junk positions, in blocks of 16 positions × 16 channels.
fn to_grid_transposed<E: Kernel>(d: &ConvDims, planes: &[E], c: usize, out: &mut [E]) {
    let (w, hw, wp, grid) = (d.width, d.hw(), d.padded_width(), d.grid());
    assert!(
        planes.len() == c * hw && out.len() == c * grid,
        "transpose: sizes"
    );
    for y in 0..d.height {
        for x0 in (0..w).step_by(BLOCK) {
            for c0 in (0..c).step_by(BLOCK) {
                let block = ((c - c0).min(BLOCK), (w - x0).min(BLOCK));
                // SAFETY: the transpose writes only initialised values.
                let dst = unsafe { as_uninit_mut(&mut out[(y * wp + x0) * c + c0..]) };
                transpose_block(&planes[c0 * hw + y * w + x0..], hw, block, dst, c);
            }
        }
        // The junk positions after the row: up to the next row's first pixel, or the end.
        let next = if y + 1 < d.height { (y + 1) * wp } else { grid };
        out[(y * wp + w) * c..next * c].fill(E::zero());
    }
}

/// A convolution's weight as the per-image kernels read it: its values ((c_out, c_in, K, K)) and,
/// for a convolution that runs as a Winograd convolution ([`winograd::applies`]), their
/// transforms, computed once per batch.
pub(crate) struct ConvWeight<E> {
    pub(crate) values: Vec<E>,
    winograd: Option<WinogradWeight<E>>,
}

impl<E: Kernel> ConvWeight<E> {
    /// The weight `values` of the convolution `d`.
    pub(crate) fn new(d: &ConvDims, values: Vec<E>) -> Self {
        let winograd = winograd::applies(d).then(|| WinogradWeight::new(d, &values));
        ConvWeight { values, winograd }
    }
}

/// Forward pass of one image: `out` (c_out, H·W) = bias + weight ∗ `img`. `scratch` holds at
/// least [`ConvDims::forward_scratch`] values. Writes every element of `out` and returns it as
/// initialised. A Winograd convolution where [`winograd::applies`], else
/// [`direct_image_forward`].
pub(crate) fn conv_image_forward<'o, E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &ConvWeight<E>,
    bias: &[E],
    scratch: &mut [E],
    out: &'o mut [MaybeUninit<E>],
) -> &'o mut [E] {
    assert_eq!(
        weight.winograd.is_some(),
        winograd::applies(d),
        "conv: weight prepared for other dimensions"
    );
    match &weight.winograd {
        Some(w) if d.hw() > 0 => winograd::forward_image(d, img, w, bias, scratch, out),
        _ => direct_image_forward(d, img, &weight.values, bias, scratch, out),
    }
}

/// Backward pass of one image: writes the input gradient into `gx` (overwritten) and adds the
/// weight gradient ([`ConvDims::weight_grad_len`] values, in the layout that
/// [`ConvDims::weight_grad_to_weight_layout`] undoes) to `gw` and the bias gradient to `gb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_image_backward<E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &ConvWeight<E>,
    go: &[E],
    scratch: &mut [E],
    gx: &mut [E],
    gw: &mut [E],
    gb: &mut [E],
) {
    assert_eq!(
        weight.winograd.is_some(),
        winograd::applies(d),
        "conv: weight prepared for other dimensions"
    );
    match &weight.winograd {
        Some(w) if d.hw() > 0 => winograd::backward_image(d, img, w, go, scratch, gx, gw, gb),
        Some(_) => {}
        None => direct_image_backward(d, img, &weight.values, go, scratch, gx, gw, gb),
    }
}

/// Forward pass of one image as an implicit GEMM: `out` (c_out, H·W) = bias + weight ∗ `img`.
/// `scratch` holds at least [`ConvDims::direct_forward_scratch`] values. Writes every element of
/// `out` and returns it as initialised.
///
/// A K×K kernel runs as an implicit GEMM: the input is copied once into zero-padded planes, on
/// which the values tap `t` reads for all output positions are one contiguous run per channel
/// (at [`ConvDims::tap_offset`]), so each tap is one GEMM (c_out × c_in)·(c_in × grid) straight
/// from the padded planes, accumulated over the K² taps. There is no im2col matrix (K² copies of
/// the input, 1.8 MB per image for 64 channels on 28×28: it no longer fitted in L2).
pub(crate) fn direct_image_forward<'o, E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &[E],
    bias: &[E],
    scratch: &mut [E],
    out: &'o mut [MaybeUninit<E>],
) -> &'o mut [E] {
    let (hw, taps) = (d.hw(), d.kernel * d.kernel);
    assert!(
        img.len() == d.c_in * hw
            && out.len() == d.c_out * hw
            && bias.len() == d.c_out
            && weight.len() == d.c_out * d.c_in * taps,
        "conv: input, output, weight or bias size"
    );
    if hw == 0 {
        // SAFETY: out is empty (c_out × 0 values).
        return unsafe { assume_init_mut(out) };
    }
    if d.kernel == 1 {
        for (row, &b) in out.chunks_exact_mut(hw).zip(bias) {
            row.iter_mut().for_each(|v| {
                v.write(b);
            });
        }
        // SAFETY: the loop above wrote all c_out × hw values (asserted: out has c_out rows of hw).
        let out = unsafe { assume_init_mut(out) };
        #[rustfmt::skip]
        gemm_into((d.c_out, hw, d.c_in), out, (hw, 1), true, weight, (d.c_in, 1), img, (hw, 1));
        return out;
    }
    let (plane, grid) = (d.padded_plane(), d.grid());
    let (padded, rest) = scratch.split_at_mut(d.c_in * plane);
    let acc = &mut rest[..d.c_out * grid];
    pad_planes(d, img, padded);
    for t in 0..taps {
        gemm_into(
            (d.c_out, grid, d.c_in),
            acc,
            (grid, 1),
            t > 0,
            &weight[t..],
            (d.c_in * taps, taps),
            &padded[d.tap_offset(t)..],
            (plane, 1),
        );
    }
    from_grid(d, acc, bias, out);
    // SAFETY: from_grid wrote all c_out planes of hw values (acc has c_out planes of the grid).
    unsafe { assume_init_mut(out) }
}

/// Backward pass of one image as implicit GEMMs, for the output gradient `go` (c_out, H·W):
/// writes the input gradient into `gx` (c_in, H·W; overwritten) and adds the weight and bias
/// gradients to `gw` (transposed if [`ConvDims::weight_grad_transposed`]), `gb`. `scratch` holds
/// at least [`ConvDims::direct_backward_scratch`] values.
///
/// Implicit GEMMs like the forward pass: with the output gradient on the padded-width grid
/// (zero at the junk positions), tap `t` adds `go · paddedᵀ` to the weight gradient's column
/// `t`, and `weightᵀ · go` to the padded input gradient shifted by the tap's offset.
#[allow(clippy::too_many_arguments)]
pub(crate) fn direct_image_backward<E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &[E],
    go: &[E],
    scratch: &mut [E],
    gx: &mut [E],
    gw: &mut [E],
    gb: &mut [E],
) {
    let (hw, taps) = (d.hw(), d.kernel * d.kernel);
    assert!(
        img.len() == d.c_in * hw
            && gx.len() == img.len()
            && go.len() == d.c_out * hw
            && gw.len() == d.c_out * d.c_in * taps
            && gb.len() == d.c_out,
        "conv backward: input, input gradient, output gradient or parameter gradient size"
    );
    if hw == 0 {
        return;
    }
    for (co, row) in go.chunks(hw).enumerate() {
        gb[co] = gb[co] + sum(row);
    }
    if d.kernel == 1 {
        // grad weight += grad_out (c_out × hw) · xᵀ (hw × c_in); grad x = weightᵀ · grad_out
        #[rustfmt::skip]
        gemm_into((d.c_out, d.c_in, hw), gw, (d.c_in, 1), true, go, (hw, 1), img, (1, hw));
        #[rustfmt::skip]
        gemm_into((d.c_in, hw, d.c_out), gx, (hw, 1), false, weight, (1, d.c_in), go, (hw, 1));
        return;
    }
    let (plane, grid) = (d.padded_plane(), d.grid());
    let (padded, rest) = scratch.split_at_mut(d.c_in * plane);
    let (g_padded, rest) = rest.split_at_mut(d.c_in * plane);
    let (go_grid, rest) = rest.split_at_mut(d.c_out * grid);
    pad_planes(d, img, padded);
    to_grid(d, go, go_grid);
    let go_transposed = if d.transposes_output_grad() {
        let go_t = &mut rest[..d.c_out * grid];
        to_grid_transposed(d, go, d.c_out, go_t);
        Some(&*go_t)
    } else {
        None
    };
    g_padded.fill(E::zero());
    for t in 0..taps {
        let offset = d.tap_offset(t);
        // grad weight[:, :, t] += go (c_out × grid) · padded_tᵀ (grid × c_in)
        let (gw_t, gw_strides) = if d.weight_grad_transposed() {
            (&mut gw[t * d.c_in * d.c_out..], (1, d.c_out))
        } else {
            (&mut gw[t..], (d.c_in * taps, taps))
        };
        let (lhs, lhs_strides) = match go_transposed {
            Some(go_t) => (go_t, (1, d.c_out)),
            None => (&go_grid[..], (grid, 1)),
        };
        #[rustfmt::skip]
        gemm_into(
            (d.c_out, d.c_in, grid), gw_t, gw_strides, true,
            lhs, lhs_strides, &padded[offset..], (1, plane),
        );
        // grad padded_t += weight[:, :, t]ᵀ (c_in × c_out) · go (c_out × grid)
        gemm_into(
            (d.c_in, grid, d.c_out),
            &mut g_padded[offset..],
            (plane, 1),
            true,
            &weight[t..],
            (taps, d.c_in * taps),
            go_grid,
            (grid, 1),
        );
    }
    // The padding's gradient is dropped: those inputs are the constant zeros.
    let (p, wp) = (d.pad(), d.padded_width());
    for (dst, src) in gx.chunks_exact_mut(hw).zip(g_padded.chunks_exact(plane)) {
        for (y, row) in dst.chunks_exact_mut(d.width).enumerate() {
            let at = (y + p) * wp + p;
            row.copy_from_slice(&src[at..at + d.width]);
        }
    }
}

/// Forward pass over a batch: `out` (batch, c_out, H·W).
pub(crate) fn conv_forward<E: Kernel>(
    d: &ConvDims,
    x: &[E],
    weight: &ConvWeight<E>,
    bias: &[E],
) -> Vec<E> {
    let hw = d.hw();
    assert!(x.len() == d.batch * d.c_in * hw, "conv: input size");
    // SAFETY: conv_image_forward writes every element of each image's output (it asserts the
    // lengths), and there are batch images of c_out × hw values.
    unsafe {
        par_init(d.batch * d.c_out * hw, d.c_out * hw, |i, o| {
            E::with_scratch(d.forward_scratch(), |scratch| {
                let img = &x[i * d.c_in * hw..(i + 1) * d.c_in * hw];
                conv_image_forward(d, img, weight, bias, scratch, o);
            })
        })
    }
}

/// Images per task in the backward passes at 28×28 and above. Parameter gradients are summed
/// per chunk and the chunk sums then added in a fixed order, so results do not depend on the
/// thread count or on scheduling (training is reproducible from a seed).
pub(crate) const BACKWARD_CHUNK: usize = 4;

/// Images per backward task for images of `hw` pixels: [`BACKWARD_CHUNK`], and more (up to 32)
/// for small images. Each chunk zero-fills and then adds a copy of its parameter gradients
/// (1.1 MB for the 7×7, 64-channel networks of the multi-scale flow, whose backward pass costs
/// little per image). Fixed by the image size, so results still do not depend on the thread
/// count.
pub(crate) fn backward_chunk(hw: usize) -> usize {
    (BACKWARD_CHUNK * (28 * 28 / hw.max(1)).max(1)).min(32)
}

/// Backward pass: returns (grad x, grad weight, grad bias) for the output gradient `grad_out`.
pub(crate) fn conv_backward<E: Kernel>(
    d: &ConvDims,
    x: &[E],
    weight: &ConvWeight<E>,
    grad_out: &[E],
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let hw = d.hw();
    let n_weight = d.weight_grad_len();
    let mut grad_x = vec![E::zero(); d.batch * d.c_in * hw];
    let zeros = |n| vec![E::zero(); n];
    if d.batch == 0 || hw == 0 {
        return (grad_x, zeros(weight.values.len()), zeros(d.c_out));
    }
    let chunk = backward_chunk(hw);
    let partials: Vec<(Vec<E>, Vec<E>)> = grad_out
        .par_chunks(chunk * d.c_out * hw)
        .zip(x.par_chunks(chunk * d.c_in * hw))
        .zip(grad_x.par_chunks_mut(chunk * d.c_in * hw))
        .map(|((go_chunk, x_chunk), gx_chunk)| {
            let (mut gw, mut gb) = (zeros(n_weight), zeros(d.c_out));
            E::with_scratch(d.backward_scratch(), |scratch| {
                let images = go_chunk
                    .chunks(d.c_out * hw)
                    .zip(x_chunk.chunks(d.c_in * hw))
                    .zip(gx_chunk.chunks_mut(d.c_in * hw));
                for ((go, img), gx) in images {
                    conv_image_backward(d, img, weight, go, scratch, gx, &mut gw, &mut gb);
                }
            });
            (gw, gb)
        })
        .collect();
    let (mut grad_w, mut grad_b) = (zeros(n_weight), zeros(d.c_out));
    for (gw, gb) in partials {
        add_into(&mut grad_w, &gw);
        add_into(&mut grad_b, &gb);
    }
    (grad_x, d.weight_grad_to_weight_layout(grad_w), grad_b)
}

/// Copies a contiguous CPU tensor's storage (`as_vec` walks it index by index, several times
/// slower). Panics, rather than reading wrong data, if the storage is not exactly the tensor's
/// elements (a broadcast or strided view): callers make inputs contiguous first.
pub(crate) fn host_copy<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Vec<E> {
    let mut out = vec![E::default(); t.shape().num_elements()];
    t.copy_into(&mut out);
    out
}

/// Moves an intermediate's gradient out of the gradient store, leaving it empty.
///
/// Backward ops run in reverse order of the forward ops, so when an op's backward runs, every
/// consumer of its output has already added its contribution: the output's gradient is
/// complete and nothing reads it again. Taking it (instead of copying) frees it at once, which
/// keeps dfdx from holding every intermediate gradient until the end of the backward pass.
/// (The outputs of these ops are internal to the model, never tensors a caller asks for the
/// gradient of.)
pub(crate) fn take_grad<E>(g: &mut Vec<E>) -> Vec<E> {
    std::mem::take(g)
}

/// `dst += src`, elementwise: accumulating gradients (into dfdx's store and across chunks).
pub(crate) fn add_into<E: Float>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(a, b)| *a = *a + *b);
}

macro_rules! cpu_conv_impl {
    ($E:ty) => {
        impl ConvDevice<$E> for Cpu {
            fn try_conv2d_same<
                const K: usize,
                CI: Dim,
                CO: Dim,
                H: Dim,
                W: Dim,
                T: Tape<$E, Self>,
            >(
                x: Tensor<(usize, CI, H, W), $E, Self, T>,
                weight: &Tensor<(CO, CI, Const<K>, Const<K>), $E, Self>,
                bias: &Tensor<(CO,), $E, Self>,
            ) -> Result<Tensor<(usize, CO, H, W), $E, Self, T>, Self::Err> {
                assert!(
                    K % 2 == 1,
                    "same-padded convolution needs an odd kernel size, got {K}"
                );
                // Gradient buffers follow storage order: make the input contiguous (a no-op if it is).
                let shape = *x.shape();
                let x = x.try_reshape_like(&shape)?;
                let (x, mut tape) = x.split_tape();
                let (batch, ci, h, w) = shape;
                let co = weight.shape().0;
                let dims = ConvDims {
                    batch,
                    c_in: ci.size(),
                    c_out: co.size(),
                    height: h.size(),
                    width: w.size(),
                    kernel: K,
                };
                let (x_vec, b_vec) = (host_copy(&x), host_copy(bias));
                let w_vec = ConvWeight::new(&dims, host_copy(weight));
                let out = conv_forward(&dims, &x_vec, &w_vec, &b_vec);
                let dev = x.device().clone();
                let out = dev.tensor_from_vec(out, (batch, co, h, w));
                if T::OWNS_TAPE {
                    // Ghosts (ids and shapes, no data): the backward pass keeps only the host
                    // copies of x and the weight.
                    let (out_ref, x_ref) = (out.ghost(), x.ghost());
                    let (weight, bias) = (weight.ghost(), bias.ghost());
                    tape.add_backward_op(move |grads| {
                        let grad_out = take_grad(grads.get_or_alloc_mut(&out_ref)?);
                        let (gx, gw, gb) = conv_backward(&dims, &x_vec, &w_vec, &grad_out);
                        add_into(grads.get_or_alloc_mut(&x_ref)?, &gx);
                        add_into(grads.get_or_alloc_mut(&weight)?, &gw);
                        add_into(grads.get_or_alloc_mut(&bias)?, &gb);
                        Ok(())
                    });
                }
                Ok(out.put_tape(tape))
            }
        }
    };
}

cpu_conv_impl!(f32);
cpu_conv_impl!(f64);

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution by definition, the reference for the im2col + GEMM path.
    fn naive(d: &ConvDims, x: &[f64], wt: &[f64], b: &[f64]) -> Vec<f64> {
        let (h, w, k) = (d.height as isize, d.width as isize, d.kernel as isize);
        let mut out = vec![0.0; d.batch * d.c_out * d.hw()];
        for n in 0..d.batch {
            for o in 0..d.c_out {
                for y in 0..h {
                    for xx in 0..w {
                        let mut acc = b[o];
                        for c in 0..d.c_in {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (sy, sx) = (y + ky - k / 2, xx + kx - k / 2);
                                    if sy < 0 || sy >= h || sx < 0 || sx >= w {
                                        continue;
                                    }
                                    let xi = ((n * d.c_in + c) * d.height + sy as usize) * d.width
                                        + sx as usize;
                                    let wi = ((o * d.c_in + c) * d.kernel + ky as usize) * d.kernel
                                        + kx as usize;
                                    acc += x[xi] * wt[wi];
                                }
                            }
                        }
                        out[((n * d.c_out + o) * d.height + y as usize) * d.width + xx as usize] =
                            acc;
                    }
                }
            }
        }
        out
    }

    /// Values and all three gradients against the definition, for CI → CO channels on h×w.
    fn check<const K: usize, const CI: usize, const CO: usize>(h: usize, w: usize) {
        let dev: Cpu = Default::default();
        let d = ConvDims {
            batch: 3,
            c_in: CI,
            c_out: CO,
            height: h,
            width: w,
            kernel: K,
        };
        let x = dev.sample_normal_like(&(3, Const::<CI>, h, w));
        let wt: Tensor<(Const<CO>, Const<CI>, Const<K>, Const<K>), f64, Cpu> = dev.sample_normal();
        let b: Tensor<(Const<CO>,), f64, Cpu> = dev.sample_normal();
        let r: Tensor<(usize, Const<CO>, usize, usize), f64, Cpu> =
            dev.sample_normal_like(&(3, Const::<CO>, h, w));
        let out = Cpu::try_conv2d_same(x.leaky_trace(), &wt, &b).unwrap();
        let expect = naive(&d, &x.as_vec(), &wt.as_vec(), &b.as_vec());
        for (a, e) in out.as_vec().iter().zip(&expect) {
            assert!((a - e).abs() < 1e-12, "forward {a} vs {e}");
        }
        // loss = sum(out * r): its gradient by central differences on each input.
        let grads = (out * r.clone()).sum().backward();
        let loss = |x: &[f64], wt: &[f64], b: &[f64]| -> f64 {
            naive(&d, x, wt, b)
                .iter()
                .zip(r.as_vec())
                .map(|(o, r)| o * r)
                .sum()
        };
        let (xv, wv, bv) = (x.as_vec(), wt.as_vec(), b.as_vec());
        let eps = 1e-6;
        let numeric = |which: usize, i: usize| {
            let (mut p, mut m) = (
                [xv.clone(), wv.clone(), bv.clone()],
                [xv.clone(), wv.clone(), bv.clone()],
            );
            p[which][i] += eps;
            m[which][i] -= eps;
            (loss(&p[0], &p[1], &p[2]) - loss(&m[0], &m[1], &m[2])) / (2.0 * eps)
        };
        for (which, g) in [
            grads.get(&x).as_vec(),
            grads.get(&wt).as_vec(),
            grads.get(&b).as_vec(),
        ]
        .iter()
        .enumerate()
        {
            for (i, gi) in g.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (gi - n).abs() < 1e-6 * (1.0 + n.abs()),
                    "grad {which}[{i}]: {gi} vs {n}"
                );
            }
        }
    }

    /// The implicit GEMM against the definition, with the edge cases of its padded-width grid
    /// (single rows and columns, one pixel, kernels wider than the image), and both layouts of
    /// the weight gradient (transposed when c_out ≤ c_in).
    #[test]
    fn conv3x3_matches_direct_convolution_values_and_gradients() {
        for (h, w) in [(5, 4), (1, 5), (4, 1), (1, 1), (2, 2)] {
            check::<3, 2, 3>(h, w);
        }
        check::<3, 3, 2>(5, 4);
        check::<3, 2, 2>(3, 6);
        check::<3, 3, 3>(3, 35);
    }

    /// The weight gradient from the output gradient transposed once per image (c_out a multiple
    /// of 16, ≤ c_in; rows wider than the transpose's 16-pixel blocks) against its definition,
    /// Σ over pixels of the output gradient times the shifted input (finite differences, as in
    /// `check`, would take minutes at 16 channels).
    #[test]
    fn weight_gradient_from_the_transposed_output_gradient_matches_its_definition() {
        let d = ConvDims {
            batch: 2,
            c_in: 17,
            c_out: 16,
            height: 3,
            width: 19,
            kernel: 3,
        };
        assert!(d.transposes_output_grad());
        let (h, w, hw) = (d.height, d.width, d.hw());
        let value = |i: usize, m: usize| ((i * m) % 23) as f64 / 7.0 - 1.5;
        let x: Vec<f64> = (0..d.batch * d.c_in * hw).map(|i| value(i, 7)).collect();
        let go: Vec<f64> = (0..d.batch * d.c_out * hw).map(|i| value(i, 5)).collect();
        let weight: Vec<f64> = (0..d.c_out * d.c_in * 9).map(|i| value(i, 3)).collect();
        let (_, gw, gb) = conv_backward(&d, &x, &ConvWeight::new(&d, weight), &go);
        for (o, i, ky, kx) in (0..d.c_out)
            .flat_map(|o| (0..d.c_in).map(move |i| (o, i)))
            .flat_map(|(o, i)| (0..9).map(move |t| (o, i, t / 3, t % 3)))
        {
            let mut expect = 0.0;
            for (b, y, xx) in (0..d.batch)
                .flat_map(|b| (0..h).map(move |y| (b, y)))
                .flat_map(|(b, y)| (0..w).map(move |xx| (b, y, xx)))
            {
                let (sy, sx) = ((y + ky) as isize - 1, (xx + kx) as isize - 1);
                if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                    let xi = x[(b * d.c_in + i) * hw + sy as usize * w + sx as usize];
                    expect += go[(b * d.c_out + o) * hw + y * w + xx] * xi;
                }
            }
            let got = gw[(o * d.c_in + i) * 9 + ky * 3 + kx];
            assert!(
                (got - expect).abs() < 1e-10,
                "gw[{o},{i},{ky},{kx}] {got} vs {expect}"
            );
        }
        for (o, g) in gb.iter().enumerate() {
            let expect: f64 = (0..d.batch)
                .map(|b| go[(b * d.c_out + o) * hw..][..hw].iter().sum::<f64>())
                .sum();
            assert!((g - expect).abs() < 1e-10);
        }
    }

    #[test]
    fn conv5x5_matches_direct_convolution_values_and_gradients() {
        for (h, w) in [(7, 6), (3, 3), (1, 4)] {
            check::<5, 2, 3>(h, w);
        }
        check::<5, 3, 1>(4, 5);
    }

    /// An empty batch and empty images give empty outputs and zero parameter gradients (dfdx
    /// itself cannot sum an empty tensor, so this calls the kernels directly), by the implicit
    /// GEMM (2 → 3 channels) and the Winograd convolution (16 → 16).
    #[test]
    fn empty_batches_and_images_are_fine() {
        for (c_in, c_out) in [(2, 3), (16, 16)] {
            for (batch, height, width) in [(0, 5, 4), (2, 0, 4), (2, 4, 0)] {
                let d = ConvDims {
                    batch,
                    c_in,
                    c_out,
                    height,
                    width,
                    kernel: 3,
                };
                let n_weight = c_out * c_in * 9;
                let weight = ConvWeight::new(&d, vec![1.0f64; n_weight]);
                let bias = vec![1.0f64; c_out];
                let out = conv_forward(&d, &[], &weight, &bias);
                assert!(out.is_empty());
                let (gx, gw, gb) = conv_backward(&d, &[], &weight, &[]);
                assert!(gx.is_empty());
                assert_eq!((gw, gb), (vec![0.0; n_weight], vec![0.0; c_out]));
                if height * width == 0 {
                    // One empty image.
                    let mut scratch = vec![0.0; d.backward_scratch()];
                    let (mut gw, mut gb) = (vec![0.0; d.weight_grad_len()], vec![0.0; c_out]);
                    #[rustfmt::skip]
                    conv_image_backward(&d, &[], &weight, &[], &mut scratch, &mut [], &mut gw, &mut gb);
                    assert!(gw.iter().chain(&gb).all(|&v| v == 0.0));
                    let out = conv_image_forward(&d, &[], &weight, &bias, &mut scratch, &mut []);
                    assert!(out.is_empty());
                }
            }
        }
    }

    #[test]
    fn conv1x1_matches_direct_convolution_values_and_gradients() {
        check::<1, 2, 3>(5, 4);
        check::<1, 3, 2>(5, 4);
        check::<1, 3, 3>(2, 21);
    }
}
