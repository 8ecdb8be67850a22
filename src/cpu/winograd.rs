//! 3×3 convolutions as Winograd F(2×2, 3×3) minimal filtering (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016) on the CPU.
//!
//! Each 2×2 block ("tile") of output pixels is computed from the 4×4 input patch around it as
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: 16 products per input channel and output channel instead of
//! the 36 of the direct convolution (2.25× fewer). Summed over the input channels, the products
//! are 16 GEMMs per image, one per point ξ of the 4×4 transform domain: `M_ξ (c_out × tiles) =
//! U_ξ (c_out × c_in) · V_ξ (c_in × tiles)`. The transforms have entries 0, ±1 and ±½, so their
//! rounding error is that of a few additions (the f32 test checks 1e-5 against f64).
//!
//! Why here: the implicit GEMM of [`super::conv`] computes a padded-width grid of output positions
//! (64 for the 49 pixels of a 7×7 image, 224 for 14×14) and its GEMMs are as long as the image;
//! these GEMMs have no junk positions but on the right and bottom edges of odd sizes, and are
//! short. Measured per GEMM on one core (`gemm` 0.19, AVX-512), the forward pass of one image:
//! 128 → 64 channels at 7×7, 9 taps × 8 µs → 16 points × 2.4 µs; 96 → 48 at 14×14, 9 × 16 µs →
//! 16 × 3.6 µs; 64 → 32 at 28×28, 9 × 26 µs → 16 × 5.6 µs.
//!
//! Layouts: channels innermost ("HWC") inside, so that the transforms run 16 channels per vector
//! step; the layers' (C, H, W) planes are transposed on the way in and out. The transformed
//! weights are computed once per call of the op ([`WinogradWeight`]); the weight gradient is
//! accumulated in the transform domain (16 values per channel pair instead of 9) and brought back
//! to the weight's layout once per batch ([`weight_grad_to_weight_layout`]): it is linear, so
//! chunk sums can be added before.
use super::conv_dims::ConvDims;
use super::gemm::{gemm_into, sum};
use super::simd::{as_f32, as_f32_mut, as_uninit_mut, assume_init_mut, has_avx512, Kernel};
use super::transpose::{transpose_block, BLOCK};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Channels per step of the transforms: one AVX-512 register of f32.
const LANES: usize = 16;
/// Points of the transform domain: 4×4 per tile.
const POINTS: usize = 16;

type Lanes<E> = [E; LANES];

/// Whether [`super::conv`] runs the convolution `d` as a Winograd convolution: 3×3 kernels with
/// channel counts that are multiples of [`LANES`]: the conditioner networks' hidden layers, and
/// the last layer of the 7×7 networks (16 output channels); the first layers (1–8 input
/// channels) and the other last layers (2–8 output channels) stay direct.
pub(crate) fn applies(d: &ConvDims) -> bool {
    d.kernel == 3
        && d.c_in > 0
        && d.c_out > 0
        && d.c_in.is_multiple_of(LANES)
        && d.c_out.is_multiple_of(LANES)
}

/// The 2×2 output tiles covering an image, and the zero-padded input they read.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn of(d: &ConvDims) -> Self {
        Tiles {
            rows: d.height.div_ceil(2),
            cols: d.width.div_ceil(2),
        }
    }
    fn count(&self) -> usize {
        self.rows * self.cols
    }
    /// Positions of the padded input: one row and column of zeros before the image, and after it
    /// up to the last tile's patch (2 · tiles + 2 in each direction).
    fn padded_cols(&self) -> usize {
        2 * self.cols + 2
    }
    fn padded_len(&self) -> usize {
        (2 * self.rows + 2) * self.padded_cols()
    }
}

/// Scratch values [`forward_image`] and [`backward_image`] need.
pub(crate) fn scratch(d: &ConvDims) -> usize {
    let t = Tiles::of(d);
    t.padded_len() * d.c_in + POINTS * t.count() * (d.c_in + d.c_out) + stage_len(d)
}

/// Values of the (2 rows, 2 · tile columns, c_out) staging buffer of one row of tiles' outputs.
fn stage_len(d: &ConvDims) -> usize {
    4 * Tiles::of(d).cols * d.c_out
}

/// Values of the weight gradient as [`backward_image`] accumulates it: (ξ, c_in, c_out).
pub(crate) fn weight_grad_len(d: &ConvDims) -> usize {
    POINTS * d.c_in * d.c_out
}

/// 1-D input transform `Bᵀ x`: (x0 − x2, x1 + x2, x2 − x1, x1 − x3).
#[inline(always)]
fn bt<E: Kernel>([a, b, c, d]: [E; 4]) -> [E; 4] {
    [a - c, b + c, c - b, b - d]
}

/// Adjoint of [`bt`]: `B y`.
#[inline(always)]
fn bt_adjoint<E: Kernel>([a, b, c, d]: [E; 4]) -> [E; 4] {
    [a, b - c + d, b + c - a, -d]
}

/// 1-D output transform `Aᵀ m`: (m0 + m1 + m2, m1 − m2 − m3).
#[inline(always)]
fn at<E: Kernel>([a, b, c, d]: [E; 4]) -> [E; 2] {
    [a + b + c, b - c - d]
}

/// Adjoint of [`at`]: `A y`.
#[inline(always)]
fn at_adjoint<E: Kernel>([a, b]: [E; 2]) -> [E; 4] {
    [a, a + b, a - b, -b]
}

/// A row-major `R`×`C` block through 1-D transforms along its rows (`f`, C → C2 values), then
/// along its columns (`g`, R → R2 values): the R2×C2 block, row-major. Scalars, so that the
/// callers' loops over lanes vectorise (on arrays of lane vectors, LLVM had made gathers).
#[inline(always)]
fn separable<E: Kernel, const R: usize, const C: usize, const R2: usize, const C2: usize>(
    x: [[E; C]; R],
    f: impl Fn([E; C]) -> [E; C2],
    g: impl Fn([E; R]) -> [E; R2],
) -> [[E; C2]; R2] {
    let rows: [[E; C2]; R] = x.map(f);
    let cols: [[E; R2]; C2] = std::array::from_fn(|j| g(std::array::from_fn(|i| rows[i][j])));
    std::array::from_fn(|i| std::array::from_fn(|j| cols[j][i]))
}

/// `t` applied to each lane: `x[p][l]` for p in 0..`I` in, `out[q][l]` for q in 0..`O` out.
#[inline(always)]
fn per_lane<E: Kernel, const I: usize, const O: usize>(
    x: &[Lanes<E>; I],
    out: &mut [Lanes<E>; O],
    t: impl Fn([E; I]) -> [E; O],
) {
    for l in 0..LANES {
        let y = t(std::array::from_fn(|p| x[p][l]));
        for (o, v) in out.iter_mut().zip(y) {
            o[l] = v;
        }
    }
}

/// 4×4 row-major values as rows, and back.
#[inline(always)]
fn square<E: Copy, const N: usize, const NN: usize>(x: [E; NN]) -> [[E; N]; N] {
    std::array::from_fn(|i| std::array::from_fn(|j| x[i * N + j]))
}
#[inline(always)]
fn flat<E: Copy, const R: usize, const C: usize, const RC: usize>(x: [[E; C]; R]) -> [E; RC] {
    std::array::from_fn(|k| x[k / C][k % C])
}

/// `Bᵀ d B` of a 4×4 patch.
#[inline(always)]
fn input_tile<E: Kernel>(d: [E; POINTS]) -> [E; POINTS] {
    flat(separable(square::<E, 4, 16>(d), bt, bt))
}

/// Adjoint of [`input_tile`]: `B dV Bᵀ`.
#[inline(always)]
fn input_tile_adjoint<E: Kernel>(g: [E; POINTS]) -> [E; POINTS] {
    flat(separable(square::<E, 4, 16>(g), bt_adjoint, bt_adjoint))
}

/// `Aᵀ m A` of a 4×4 block: the 2×2 outputs, row-major.
#[inline(always)]
fn output_tile<E: Kernel>(m: [E; POINTS]) -> [E; 4] {
    flat(separable(square::<E, 4, 16>(m), at, at))
}

/// Adjoint of [`output_tile`]: `A dY Aᵀ`.
#[inline(always)]
fn output_tile_adjoint<E: Kernel>(y: [E; 4]) -> [E; POINTS] {
    flat(separable(square::<E, 2, 4>(y), at_adjoint, at_adjoint))
}

/// The kernel transform `G g Gᵀ` in 1-D: (g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2).
fn g_transform<E: Kernel>(g: [E; 3]) -> [E; 4] {
    let half = E::from(0.5).unwrap();
    [
        g[0],
        (g[0] + g[1] + g[2]) * half,
        (g[0] - g[1] + g[2]) * half,
        g[2],
    ]
}

/// Adjoint of [`g_transform`].
fn g_adjoint<E: Kernel>(u: [E; 4]) -> [E; 3] {
    let half = E::from(0.5).unwrap();
    [
        u[0] + (u[1] + u[2]) * half,
        (u[1] - u[2]) * half,
        (u[1] + u[2]) * half + u[3],
    ]
}

/// A 3×3 convolution's weight transformed for the GEMMs of both passes: `U_ξ = G g Gᵀ`, as
/// (ξ, c_in, c_out) for the forward pass and (ξ, c_out, c_in) for the input gradient, so that
/// `gemm` reads both without packing them transposed.
pub(crate) struct WinogradWeight<E> {
    forward: Vec<E>,
    backward: Vec<E>,
}

impl<E: Kernel> WinogradWeight<E> {
    /// Transforms `weight` ((c_out, c_in, 3, 3), the layers' layout).
    pub(crate) fn new(d: &ConvDims, weight: &[E]) -> Self {
        let (ci_n, co_n) = (d.c_in, d.c_out);
        assert!(
            applies(d) && weight.len() == co_n * ci_n * 9,
            "winograd: weight size"
        );
        // In parallel: once per call of the op, but on its calling thread.
        let pairs: Vec<[E; POINTS]> = weight
            .par_chunks_exact(9)
            .map(|g| {
                let rows: [[E; 4]; 3] =
                    std::array::from_fn(|u| g_transform([g[3 * u], g[3 * u + 1], g[3 * u + 2]]));
                let cols: [[E; 4]; 4] =
                    std::array::from_fn(|b| g_transform([rows[0][b], rows[1][b], rows[2][b]]));
                std::array::from_fn(|p| cols[p % 4][p / 4])
            })
            .collect();
        let layout = |outer: usize, inner: usize, at: fn(usize, usize) -> (usize, usize)| {
            let mut v = vec![E::zero(); POINTS * ci_n * co_n];
            v.par_chunks_mut(outer * inner)
                .enumerate()
                .for_each(|(p, block)| {
                    for (k, x) in block.iter_mut().enumerate() {
                        let (co, ci) = at(k / inner, k % inner);
                        *x = pairs[co * ci_n + ci][p];
                    }
                });
            v
        };
        let forward = layout(ci_n, co_n, |ci, co| (co, ci));
        let backward = layout(co_n, ci_n, |co, ci| (co, ci));
        WinogradWeight { forward, backward }
    }
}

/// A weight gradient accumulated by [`backward_image`] ((ξ, c_in, c_out)) in the weight's
/// layout (c_out, c_in, 3, 3): `Gᵀ dU G`.
pub(crate) fn weight_grad_to_weight_layout<E: Kernel>(d: &ConvDims, g: &[E]) -> Vec<E> {
    let (ci_n, co_n) = (d.c_in, d.c_out);
    assert_eq!(
        g.len(),
        weight_grad_len(d),
        "winograd: weight gradient size"
    );
    let mut out = vec![E::zero(); co_n * ci_n * 9];
    out.par_chunks_mut(ci_n * 9)
        .enumerate()
        .for_each(|(co, out)| {
            for ci in 0..ci_n {
                let du = |a: usize, b: usize| g[((4 * a + b) * ci_n + ci) * co_n + co];
                let rows: [[E; 3]; 4] =
                    std::array::from_fn(|a| g_adjoint(std::array::from_fn(|b| du(a, b))));
                let w = &mut out[ci * 9..][..9];
                for v in 0..3 {
                    let col = g_adjoint([rows[0][v], rows[1][v], rows[2][v], rows[3][v]]);
                    for (u, x) in col.into_iter().enumerate() {
                        w[3 * u + v] = x;
                    }
                }
            }
        });
    out
}

/// (C, H, W) planes into the zero-padded (row, column, channel) layout of [`Tiles`], writing
/// every value of `out`.
fn to_padded<E: Kernel>(d: &ConvDims, c: usize, planes: &[E], out: &mut [E]) {
    let t = Tiles::of(d);
    let (h, w, hw, wq) = (d.height, d.width, d.hw(), t.padded_cols());
    assert!(
        planes.len() == c * hw && out.len() == t.padded_len() * c,
        "winograd: pad sizes"
    );
    out[..(wq + 1) * c].fill(E::zero());
    for y in 0..h {
        let row = ((y + 1) * wq + 1) * c;
        for x0 in (0..w).step_by(BLOCK) {
            for c0 in (0..c).step_by(BLOCK) {
                let block = ((c - c0).min(BLOCK), (w - x0).min(BLOCK));
                // SAFETY: the transpose writes only initialised values.
                let dst = unsafe { as_uninit_mut(&mut out[row + x0 * c + c0..]) };
                transpose_block(&planes[c0 * hw + y * w + x0..], hw, block, dst, c);
            }
        }
        // The rest of this row and the first position of the next.
        out[row + w * c..((y + 2) * wq + 1) * c].fill(E::zero());
    }
    out[((h + 1) * wq + 1) * c..].fill(E::zero());
}

/// The interior of a padded (row, column, channel) gradient back to (C, H, W) planes, writing
/// every value of `planes`.
fn from_padded<E: Kernel>(d: &ConvDims, c: usize, padded: &[E], planes: &mut [E]) {
    let t = Tiles::of(d);
    let (w, hw, wq) = (d.width, d.hw(), t.padded_cols());
    assert!(
        planes.len() == c * hw && padded.len() == t.padded_len() * c,
        "winograd: crop sizes"
    );
    for y in 0..d.height {
        let row = ((y + 1) * wq + 1) * c;
        for x0 in (0..w).step_by(BLOCK) {
            for c0 in (0..c).step_by(BLOCK) {
                let block = ((w - x0).min(BLOCK), (c - c0).min(BLOCK));
                // SAFETY: the transpose writes only initialised values.
                let dst = unsafe { as_uninit_mut(&mut planes[c0 * hw + y * w + x0..]) };
                transpose_block(&padded[row + x0 * c + c0..], c, block, dst, hw);
            }
        }
    }
}

simd_kernel! {
    /// `V_ξ = (Bᵀ d B)_ξ` for every tile's 4×4 patch `d` of the padded input: `v` (ξ, tile, c).
    fn input_transform_portable<E: Kernel>(t: Tiles, c: usize, padded: &[E], v: &mut [E]) {
        let (n, wq) = (t.count(), t.padded_cols());
        for ty in 0..t.rows {
            for tx in 0..t.cols {
                let tile = ty * t.cols + tx;
                let corner = 2 * ty * wq + 2 * tx;
                for c0 in (0..c).step_by(LANES) {
                    let mut d = [[E::zero(); LANES]; POINTS];
                    for (p, dp) in d.iter_mut().enumerate() {
                        let at = (corner + (p / 4) * wq + p % 4) * c + c0;
                        dp.copy_from_slice(&padded[at..at + LANES]);
                    }
                    let mut x = [[E::zero(); LANES]; POINTS];
                    per_lane(&d, &mut x, input_tile);
                    for (p, vp) in x.iter().enumerate() {
                        let at = (p * n + tile) * c + c0;
                        v[at..at + LANES].copy_from_slice(vp);
                    }
                }
            }
        }
    }
}

simd_kernel! {
    /// Adjoint of [`input_transform`]: adds `B dV_ξ Bᵀ` of every tile into its patch of the
    /// padded gradient `padded` (overlapping patches add up).
    fn input_transform_adjoint_portable<E: Kernel>(t: Tiles, c: usize, gv: &[E], padded: &mut [E]) {
        let (n, wq) = (t.count(), t.padded_cols());
        for ty in 0..t.rows {
            for tx in 0..t.cols {
                let tile = ty * t.cols + tx;
                let corner = 2 * ty * wq + 2 * tx;
                for c0 in (0..c).step_by(LANES) {
                    let mut g = [[E::zero(); LANES]; POINTS];
                    for (p, gp) in g.iter_mut().enumerate() {
                        let at = (p * n + tile) * c + c0;
                        gp.copy_from_slice(&gv[at..at + LANES]);
                    }
                    let mut x = [[E::zero(); LANES]; POINTS];
                    per_lane(&g, &mut x, input_tile_adjoint);
                    for (p, dp) in x.iter().enumerate() {
                        let at = (corner + (p / 4) * wq + p % 4) * c + c0;
                        for (o, x) in padded[at..at + LANES].iter_mut().zip(dp) {
                            *o = *o + *x;
                        }
                    }
                }
            }
        }
    }
}

simd_kernel! {
    /// `bias + Aᵀ M A` of the tiles in row `ty`, from `m` (ξ, tile, c) to `stage` (2 rows,
    /// 2 · tile columns, c).
    fn output_row_portable<E: Kernel>(t: Tiles, c: usize, ty: usize, m: &[E], bias: &[E], stage: &mut [E]) {
        let (n, sw) = (t.count(), 2 * t.cols);
        for tx in 0..t.cols {
            let tile = ty * t.cols + tx;
            for c0 in (0..c).step_by(LANES) {
                let mut mt = [[E::zero(); LANES]; POINTS];
                for (p, mp) in mt.iter_mut().enumerate() {
                    let at = (p * n + tile) * c + c0;
                    mp.copy_from_slice(&m[at..at + LANES]);
                }
                let b = &bias[c0..c0 + LANES];
                let mut y = [[E::zero(); LANES]; 4];
                per_lane(&mt, &mut y, output_tile);
                for (q, yq) in y.iter().enumerate() {
                    let at = ((q / 2) * sw + 2 * tx + q % 2) * c + c0;
                    for ((o, y), b) in stage[at..at + LANES].iter_mut().zip(yq).zip(b) {
                        *o = *y + *b;
                    }
                }
            }
        }
    }
}

simd_kernel! {
    /// Adjoint of [`output_row`] (without the bias): `A dY Aᵀ` of the tiles in row `ty`, from
    /// `stage` (2 rows, 2 · tile columns, c) to `gm` (ξ, tile, c).
    fn output_row_adjoint_portable<E: Kernel>(t: Tiles, c: usize, ty: usize, stage: &[E], gm: &mut [E]) {
        let (n, sw) = (t.count(), 2 * t.cols);
        for tx in 0..t.cols {
            let tile = ty * t.cols + tx;
            for c0 in (0..c).step_by(LANES) {
                let mut y = [[E::zero(); LANES]; 4];
                for (q, yq) in y.iter_mut().enumerate() {
                    let at = ((q / 2) * sw + 2 * tx + q % 2) * c + c0;
                    yq.copy_from_slice(&stage[at..at + LANES]);
                }
                let mut x = [[E::zero(); LANES]; POINTS];
                per_lane(&y, &mut x, output_tile_adjoint);
                for (p, mp) in x.iter().enumerate() {
                    let at = (p * n + tile) * c + c0;
                    gm[at..at + LANES].copy_from_slice(mp);
                }
            }
        }
    }
}

/// See [`input_transform_portable`]; AVX-512 code for f32 where the CPU has it.
fn input_transform<E: Kernel>(t: Tiles, c: usize, padded: &[E], v: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(src), Some(dst), true) = (as_f32(padded), as_f32_mut(v), has_avx512()) {
        // SAFETY: the CPU has AVX-512 F.
        return unsafe { avx512::input_transform(t, c, src, dst) };
    }
    input_transform_portable(t, c, padded, v)
}

/// See [`input_transform_adjoint_portable`]; AVX-512 code for f32 where the CPU has it.
fn input_transform_adjoint<E: Kernel>(t: Tiles, c: usize, gv: &[E], padded: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(src), Some(dst), true) = (as_f32(gv), as_f32_mut(padded), has_avx512()) {
        // SAFETY: the CPU has AVX-512 F.
        return unsafe { avx512::input_transform_adjoint(t, c, src, dst) };
    }
    input_transform_adjoint_portable(t, c, gv, padded)
}

/// See [`output_row_portable`]; AVX-512 code for f32 where the CPU has it.
fn output_row<E: Kernel>(t: Tiles, c: usize, ty: usize, m: &[E], bias: &[E], stage: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(m), Some(b), Some(dst), true) =
        (as_f32(m), as_f32(bias), as_f32_mut(stage), has_avx512())
    {
        // SAFETY: the CPU has AVX-512 F.
        return unsafe { avx512::output_row(t, c, ty, m, b, dst) };
    }
    output_row_portable(t, c, ty, m, bias, stage)
}

/// See [`output_row_adjoint_portable`]; AVX-512 code for f32 where the CPU has it.
fn output_row_adjoint<E: Kernel>(t: Tiles, c: usize, ty: usize, stage: &[E], gm: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(src), Some(dst), true) = (as_f32(stage), as_f32_mut(gm), has_avx512()) {
        // SAFETY: the CPU has AVX-512 F.
        return unsafe { avx512::output_row_adjoint(t, c, ty, src, dst) };
    }
    output_row_adjoint_portable(t, c, ty, stage, gm)
}

/// The transforms in AVX-512 intrinsics, for f32, 16 channels per register: the same
/// arithmetic as the portable versions (the tests compare f32 results with f64 ones), which
/// LLVM compiled to 5–10× more instructions than these loads, stores and additions (address
/// arithmetic for 32 streams spilled to the stack; on arrays of lanes, gathers).
#[cfg(target_arch = "x86_64")]
// The column loops index the same column of several rows.
#[allow(clippy::needless_range_loop)]
mod avx512 {
    use super::{Tiles, LANES, POINTS};
    use std::arch::x86_64::*;

    /// `(a − c, b + c, c − b, b − d)`: [`super::bt`].
    #[inline(always)]
    unsafe fn bt([a, b, c, d]: [__m512; 4]) -> [__m512; 4] {
        unsafe {
            [
                _mm512_sub_ps(a, c),
                _mm512_add_ps(b, c),
                _mm512_sub_ps(c, b),
                _mm512_sub_ps(b, d),
            ]
        }
    }

    /// `(a, b − c + d, b + c − a, −d)`: [`super::bt_adjoint`].
    #[inline(always)]
    unsafe fn bt_adjoint([a, b, c, d]: [__m512; 4]) -> [__m512; 4] {
        unsafe {
            [
                a,
                _mm512_add_ps(_mm512_sub_ps(b, c), d),
                _mm512_sub_ps(_mm512_add_ps(b, c), a),
                _mm512_sub_ps(_mm512_setzero_ps(), d),
            ]
        }
    }

    /// `(a + b + c, b − c − d)`: [`super::at`].
    #[inline(always)]
    unsafe fn at([a, b, c, d]: [__m512; 4]) -> [__m512; 2] {
        unsafe {
            [
                _mm512_add_ps(_mm512_add_ps(a, b), c),
                _mm512_sub_ps(_mm512_sub_ps(b, c), d),
            ]
        }
    }

    /// `(a, a + b, a − b, −b)`: [`super::at_adjoint`].
    #[inline(always)]
    unsafe fn at_adjoint([a, b]: [__m512; 2]) -> [__m512; 4] {
        unsafe {
            [
                a,
                _mm512_add_ps(a, b),
                _mm512_sub_ps(a, b),
                _mm512_sub_ps(_mm512_setzero_ps(), b),
            ]
        }
    }

    /// [`super::input_transform_portable`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform(t: Tiles, c: usize, padded: &[f32], v: &mut [f32]) {
        let (n, wq) = (t.count(), t.padded_cols());
        // Bounds of every access below: patches end at the padded input's last position,
        // points at v's last value.
        assert!(
            c.is_multiple_of(LANES)
                && padded.len() >= t.padded_len() * c
                && v.len() >= POINTS * n * c,
            "winograd: transform sizes"
        );
        let (rs, ps) = (wq * c, n * c);
        for ty in 0..t.rows {
            for tx in 0..t.cols {
                let tile = ty * t.cols + tx;
                for c0 in (0..c).step_by(LANES) {
                    // SAFETY: position (2ty + r, 2tx + k) < padded_len, channel c0 + 15 < c;
                    // point p < 16, tile < n (asserted sizes).
                    unsafe {
                        let src = padded.as_ptr().add((2 * ty * wq + 2 * tx) * c + c0);
                        let dst = v.as_mut_ptr().add(tile * c + c0);
                        let mut rows = [[_mm512_setzero_ps(); 4]; 4];
                        for (r, row) in rows.iter_mut().enumerate() {
                            *row = bt(std::array::from_fn(|k| {
                                _mm512_loadu_ps(src.add(r * rs + k * c))
                            }));
                        }
                        for k in 0..4 {
                            let col = bt([rows[0][k], rows[1][k], rows[2][k], rows[3][k]]);
                            for (a, x) in col.into_iter().enumerate() {
                                _mm512_storeu_ps(dst.add((4 * a + k) * ps), x);
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`super::input_transform_adjoint_portable`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform_adjoint(
        t: Tiles,
        c: usize,
        gv: &[f32],
        padded: &mut [f32],
    ) {
        let (n, wq) = (t.count(), t.padded_cols());
        assert!(
            c.is_multiple_of(LANES)
                && padded.len() >= t.padded_len() * c
                && gv.len() >= POINTS * n * c,
            "winograd: transform sizes"
        );
        let (rs, ps) = (wq * c, n * c);
        for ty in 0..t.rows {
            for tx in 0..t.cols {
                let tile = ty * t.cols + tx;
                for c0 in (0..c).step_by(LANES) {
                    // SAFETY: as in input_transform.
                    unsafe {
                        let src = gv.as_ptr().add(tile * c + c0);
                        let dst = padded.as_mut_ptr().add((2 * ty * wq + 2 * tx) * c + c0);
                        let mut rows = [[_mm512_setzero_ps(); 4]; 4];
                        for (a, row) in rows.iter_mut().enumerate() {
                            *row = bt_adjoint(std::array::from_fn(|b| {
                                _mm512_loadu_ps(src.add((4 * a + b) * ps))
                            }));
                        }
                        for k in 0..4 {
                            let col = bt_adjoint([rows[0][k], rows[1][k], rows[2][k], rows[3][k]]);
                            for (r, x) in col.into_iter().enumerate() {
                                let at = dst.add(r * rs + k * c);
                                _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), x));
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`super::output_row_portable`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_row(
        t: Tiles,
        c: usize,
        ty: usize,
        m: &[f32],
        bias: &[f32],
        stage: &mut [f32],
    ) {
        let (n, sw) = (t.count(), 2 * t.cols);
        assert!(
            c.is_multiple_of(LANES)
                && ty < t.rows
                && m.len() >= POINTS * n * c
                && bias.len() >= c
                && stage.len() >= 2 * sw * c,
            "winograd: transform sizes"
        );
        for tx in 0..t.cols {
            let tile = ty * t.cols + tx;
            for c0 in (0..c).step_by(LANES) {
                // SAFETY: point p < 16, tile < n; stage position (i, 2tx + j) < 2 · sw.
                unsafe {
                    let src = m.as_ptr().add(tile * c + c0);
                    let dst = stage.as_mut_ptr().add(2 * tx * c + c0);
                    let b = _mm512_loadu_ps(bias.as_ptr().add(c0));
                    let mut rows = [[_mm512_setzero_ps(); 2]; 4];
                    for (a, row) in rows.iter_mut().enumerate() {
                        *row = at(std::array::from_fn(|k| {
                            _mm512_loadu_ps(src.add((4 * a + k) * n * c))
                        }));
                    }
                    for j in 0..2 {
                        let col = at([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
                        for (i, y) in col.into_iter().enumerate() {
                            _mm512_storeu_ps(dst.add((i * sw + j) * c), _mm512_add_ps(y, b));
                        }
                    }
                }
            }
        }
    }

    /// [`super::output_row_adjoint_portable`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_row_adjoint(
        t: Tiles,
        c: usize,
        ty: usize,
        stage: &[f32],
        gm: &mut [f32],
    ) {
        let (n, sw) = (t.count(), 2 * t.cols);
        assert!(
            c.is_multiple_of(LANES)
                && ty < t.rows
                && gm.len() >= POINTS * n * c
                && stage.len() >= 2 * sw * c,
            "winograd: transform sizes"
        );
        for tx in 0..t.cols {
            let tile = ty * t.cols + tx;
            for c0 in (0..c).step_by(LANES) {
                // SAFETY: as in output_row.
                unsafe {
                    let src = stage.as_ptr().add(2 * tx * c + c0);
                    let dst = gm.as_mut_ptr().add(tile * c + c0);
                    let mut rows = [[_mm512_setzero_ps(); 4]; 2];
                    for (i, row) in rows.iter_mut().enumerate() {
                        *row = at_adjoint(std::array::from_fn(|j| {
                            _mm512_loadu_ps(src.add((i * sw + j) * c))
                        }));
                    }
                    for b in 0..4 {
                        let col = at_adjoint([rows[0][b], rows[1][b]]);
                        for (a, x) in col.into_iter().enumerate() {
                            _mm512_storeu_ps(dst.add((4 * a + b) * n * c), x);
                        }
                    }
                }
            }
        }
    }
}

/// `out = bias + Aᵀ M A` per tile, from `m` (ξ, tile, c) to (C, H, W) planes, writing every
/// value of `out` (the tiles' positions beyond the image are dropped), one row of tiles at a
/// time through `stage` ([`stage_len`] values).
fn output_transform<E: Kernel>(
    d: &ConvDims,
    m: &[E],
    bias: &[E],
    stage: &mut [E],
    out: &mut [MaybeUninit<E>],
) {
    let t = Tiles::of(d);
    let (c, w, hw, sw) = (d.c_out, d.width, d.hw(), 2 * t.cols);
    assert!(
        out.len() == c * hw && bias.len() == c && stage.len() == stage_len(d),
        "winograd: output sizes"
    );
    for ty in 0..t.rows {
        output_row(t, c, ty, m, bias, stage);
        for r in 0..2.min(d.height - 2 * ty) {
            let y = 2 * ty + r;
            for x0 in (0..w).step_by(BLOCK) {
                for c0 in (0..c).step_by(BLOCK) {
                    let block = ((w - x0).min(BLOCK), (c - c0).min(BLOCK));
                    let src = &stage[(r * sw + x0) * c + c0..];
                    transpose_block(src, c, block, &mut out[c0 * hw + y * w + x0..], hw);
                }
            }
        }
    }
}

/// Adjoint of [`output_transform`] (without the bias): `A dY Aᵀ` per tile, from the output
/// gradient's (C, H, W) planes to `gm` (ξ, tile, c), zeros for positions beyond the image, one
/// row of tiles at a time through `stage` ([`stage_len`] values).
fn output_transform_adjoint<E: Kernel>(d: &ConvDims, go: &[E], stage: &mut [E], gm: &mut [E]) {
    let t = Tiles::of(d);
    let (c, w, hw, sw) = (d.c_out, d.width, d.hw(), 2 * t.cols);
    assert!(
        go.len() == c * hw && stage.len() == stage_len(d),
        "winograd: output gradient sizes"
    );
    for ty in 0..t.rows {
        stage.fill(E::zero());
        for r in 0..2.min(d.height - 2 * ty) {
            let y = 2 * ty + r;
            for x0 in (0..w).step_by(BLOCK) {
                for c0 in (0..c).step_by(BLOCK) {
                    let block = ((c - c0).min(BLOCK), (w - x0).min(BLOCK));
                    // SAFETY: the transpose writes only initialised values.
                    let dst = unsafe { as_uninit_mut(&mut stage[(r * sw + x0) * c + c0..]) };
                    transpose_block(&go[c0 * hw + y * w + x0..], hw, block, dst, c);
                }
            }
        }
        output_row_adjoint(t, c, ty, stage, gm);
    }
}

/// Forward pass of one image (see [`super::conv::conv_image_forward`]): `out` (c_out, H·W) =
/// bias + weight ∗ `img`, writing every element of `out`. `scratch` holds at least [`scratch`]
/// values.
pub(crate) fn forward_image<'o, E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &WinogradWeight<E>,
    bias: &[E],
    scratch: &mut [E],
    out: &'o mut [MaybeUninit<E>],
) -> &'o mut [E] {
    let t = Tiles::of(d);
    let (n, ci, co) = (t.count(), d.c_in, d.c_out);
    assert!(
        img.len() == ci * d.height * d.width && weight.forward.len() == POINTS * ci * co,
        "winograd: input or weight size"
    );
    let (padded, rest) = scratch.split_at_mut(t.padded_len() * ci);
    let (v, rest) = rest.split_at_mut(POINTS * n * ci);
    let (m, rest) = rest.split_at_mut(POINTS * n * co);
    let stage = &mut rest[..stage_len(d)];
    to_padded(d, ci, img, padded);
    input_transform(t, ci, padded, v);
    for p in 0..POINTS {
        #[rustfmt::skip]
        gemm_into(
            (co, n, ci), &mut m[p * n * co..], (1, co), false,
            &weight.forward[p * ci * co..], (1, co), &v[p * n * ci..], (1, ci),
        );
    }
    output_transform(d, m, bias, stage, out);
    // SAFETY: output_transform writes every (channel, row, column) of the image: the tiles
    // cover it.
    unsafe { assume_init_mut(out) }
}

/// Backward pass of one image (see [`super::conv::conv_image_backward`]): writes the input
/// gradient into `gx` and adds the weight gradient, in the transform domain ((ξ, c_in, c_out),
/// [`weight_grad_len`] values), to `gw` and the bias gradient to `gb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_image<E: Kernel>(
    d: &ConvDims,
    img: &[E],
    weight: &WinogradWeight<E>,
    go: &[E],
    scratch: &mut [E],
    gx: &mut [E],
    gw: &mut [E],
    gb: &mut [E],
) {
    let t = Tiles::of(d);
    let (n, ci, co, hw) = (t.count(), d.c_in, d.c_out, d.height * d.width);
    assert!(
        img.len() == ci * hw
            && gx.len() == img.len()
            && go.len() == co * hw
            && gw.len() == weight_grad_len(d)
            && gb.len() == co,
        "winograd backward: input, gradient or parameter gradient size"
    );
    for (b, row) in gb.iter_mut().zip(go.chunks_exact(hw)) {
        *b = *b + sum(row);
    }
    let (padded, rest) = scratch.split_at_mut(t.padded_len() * ci);
    let (v, rest) = rest.split_at_mut(POINTS * n * ci);
    let (gm, rest) = rest.split_at_mut(POINTS * n * co);
    let stage = &mut rest[..stage_len(d)];
    to_padded(d, ci, img, padded);
    input_transform(t, ci, padded, v);
    output_transform_adjoint(d, go, stage, gm);
    for p in 0..POINTS {
        let (gm_p, v_p) = (&gm[p * n * co..(p + 1) * n * co], &v[p * n * ci..]);
        // dU_ξ (c_out × c_in) += dM_ξ (c_out × tiles) · V_ξᵀ
        #[rustfmt::skip]
        gemm_into((co, ci, n), &mut gw[p * ci * co..], (1, co), true, gm_p, (1, co), v_p, (ci, 1));
    }
    // V is spent: its room takes dV_ξ (c_in × tiles) = U_ξᵀ · dM_ξ; the padded input's takes
    // the padded input gradient.
    for p in 0..POINTS {
        #[rustfmt::skip]
        gemm_into(
            (ci, n, co), &mut v[p * n * ci..], (1, ci), false,
            &weight.backward[p * co * ci..], (1, ci), &gm[p * n * co..], (1, co),
        );
    }
    padded.fill(E::zero());
    input_transform_adjoint(t, ci, v, padded);
    from_padded(d, ci, padded, gx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct_conv::{direct_image_backward, direct_image_forward};

    fn dims(c_in: usize, c_out: usize, height: usize, width: usize) -> ConvDims {
        ConvDims {
            batch: 1,
            c_in,
            c_out,
            height,
            width,
            kernel: 3,
        }
    }

    /// Pseudo-random values in [-1, 1) (a fixed LCG: the test needs no generator state).
    fn values<E: Kernel>(n: usize, seed: u64) -> Vec<E> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                E::from((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0).unwrap()
            })
            .collect()
    }

    /// Forward values, input gradient, weight gradient (in the weight's layout) and bias
    /// gradient of one image, by the Winograd path and by the direct implicit GEMM (itself
    /// tested against the definition in `conv`).
    fn both<E: Kernel>(d: &ConvDims) -> [(Vec<E>, Vec<E>); 4] {
        let hw = d.height * d.width;
        let img = values::<E>(d.c_in * hw, 1);
        let weight = values::<E>(d.c_out * d.c_in * 9, 2);
        let bias = values::<E>(d.c_out, 3);
        let go = values::<E>(d.c_out * hw, 4);
        let mut scratch = vec![
            E::zero();
            scratch(d)
                .max(d.direct_forward_scratch())
                .max(d.direct_backward_scratch())
        ];
        let wino = WinogradWeight::new(d, &weight);
        let mut out_w = vec![MaybeUninit::uninit(); d.c_out * hw];
        let out_w = forward_image(d, &img, &wino, &bias, &mut scratch, &mut out_w).to_vec();
        let mut out_d = vec![MaybeUninit::uninit(); d.c_out * hw];
        let out_d =
            direct_image_forward(d, &img, &weight, &bias, &mut scratch, &mut out_d).to_vec();
        let (mut gx_w, mut gw_w, mut gb_w) = (
            vec![E::zero(); img.len()],
            vec![E::zero(); weight_grad_len(d)],
            vec![E::zero(); d.c_out],
        );
        backward_image(
            d,
            &img,
            &wino,
            &go,
            &mut scratch,
            &mut gx_w,
            &mut gw_w,
            &mut gb_w,
        );
        let (mut gx_d, mut gw_d, mut gb_d) = (
            vec![E::zero(); img.len()],
            vec![E::zero(); weight.len()],
            vec![E::zero(); d.c_out],
        );
        direct_image_backward(
            d,
            &img,
            &weight,
            &go,
            &mut scratch,
            &mut gx_d,
            &mut gw_d,
            &mut gb_d,
        );
        [
            (out_w, out_d),
            (gx_w, gx_d),
            (
                weight_grad_to_weight_layout(d, &gw_w),
                d.direct_weight_grad_to_weight_layout(gw_d),
            ),
            (gb_w, gb_d),
        ]
    }

    /// Every output and gradient equal to the direct convolution's within rounding, in f64, on
    /// odd and even sizes (tiles past the right and bottom edges), a single pixel, and both
    /// directions of channel change.
    #[test]
    fn winograd_matches_the_direct_convolution_in_f64() {
        for (ci, co, h, w) in [
            (16, 16, 4, 4),
            (32, 16, 5, 7),
            (16, 32, 7, 7),
            (16, 16, 1, 1),
            (16, 48, 2, 9),
            (32, 32, 14, 3),
            (16, 16, 20, 30),
        ] {
            let d = dims(ci, co, h, w);
            assert!(applies(&d));
            for (what, (a, b)) in [
                "output",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ]
            .iter()
            .zip(both::<f64>(&d))
            {
                assert_eq!(a.len(), b.len());
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-12 * (1.0 + y.abs()),
                        "{ci}->{co} {h}x{w} {what}[{i}]: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// In f32 (the AVX-512 kernels where the CPU has them), within 1e-5 (relative to the
    /// largest value) of f64: at the conditioner networks' shapes and at odd sizes.
    #[test]
    fn f32_winograd_is_close_to_f64() {
        for (ci, co, h, w) in [
            (128, 64, 7, 7),
            (96, 48, 14, 14),
            (32, 16, 5, 7),
            (16, 48, 2, 9),
            (16, 16, 1, 1),
        ] {
            let d = dims(ci, co, h, w);
            let names = [
                "output",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ];
            for (what, ((a32, _), (a64, _))) in names
                .iter()
                .zip(both::<f32>(&d).into_iter().zip(both::<f64>(&d)))
            {
                let scale = a64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (x, y) in a32.iter().zip(&a64) {
                    assert!(
                        (*x as f64 - y).abs() < 1e-5 * scale,
                        "{ci}->{co} {h}x{w} {what}: {x} vs {y} (scale {scale})"
                    );
                }
            }
        }
    }

    #[test]
    fn only_3x3_kernels_with_whole_vectors_of_channels() {
        assert!(applies(&dims(32, 16, 28, 28)));
        assert!(!applies(&dims(4, 64, 7, 7)));
        assert!(!applies(&dims(128, 8, 7, 7)));
        assert!(!applies(&ConvDims {
            kernel: 1,
            ..dims(32, 32, 7, 7)
        }));
    }
}
