//! The direct convolution of one image as an implicit GEMM (any kernel size): the path for
//! convolutions that Winograd does not cover (1×1, or channel counts that are not multiples
//! of 16), and the reference of the Winograd tests.
use super::conv_dims::ConvDims;
use super::gemm::{gemm_into, sum};
use super::simd::{as_uninit_mut, assume_init_mut, Kernel};
use super::transpose::{transpose_block, BLOCK};
use std::mem::MaybeUninit;

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
