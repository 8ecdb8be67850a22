//! "Same" 2-D convolutions (stride 1; 3×3 with padding 1, 1×1 with padding 0) on stable Rust.
//!
//! dfdx 0.13 compiles its own `conv2d` only on nightly (DESIGN.md §2), so the convolution is ours,
//! behind the small device trait [`ConvDevice`] so that layers stay device-generic. On the CPU it
//! is a custom autograd op: per image, im2col then one GEMM (the `gemm` crate), in parallel over
//! the images of the batch with rayon; the backward pass recomputes im2col instead of keeping it,
//! which keeps peak memory at one column buffer per thread (DESIGN.md §4 measured this as the
//! fastest of the approaches possible with dfdx's public API).
use dfdx::prelude::*;
use num_traits::Float;
use rayon::prelude::*;

use super::simd::{assume_init_mut, Kernel};

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
    fn hw(&self) -> usize {
        self.height * self.width
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }
}

/// `c (m×n) = [c +] a (m×k) · b (k×n)`, each matrix given as a slice with (row stride, column
/// stride), single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
fn gemm_into<E: 'static + Copy + Float>(
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

/// The columns `x` of an output row whose tap `x + dx` lies inside a row of width `w`.
fn valid_columns(w: usize, dx: isize) -> std::ops::Range<usize> {
    let start = (-dx).max(0) as usize;
    let end = (w as isize - dx).clamp(0, w as isize) as usize;
    start.min(end)..end
}

/// Where the tap (`dy`, `dx`) of a same-padded convolution reads inside an H×W plane: output
/// pixel `i` (row-major) reads input pixel `i + offset`, for `i` in `rows` (as pixel indices)
/// except the columns outside `columns`; `copy` is the part of `rows` where `i + offset` stays in
/// the plane (it differs from `rows` only by pixels of invalid columns).
struct Tap {
    offset: isize,
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
    copy: std::ops::Range<usize>,
}

impl Tap {
    fn new(h: usize, w: usize, dy: isize, dx: isize) -> Tap {
        let hw = (h * w) as isize;
        let offset = dy * w as isize + dx;
        let y0 = (-dy).clamp(0, h as isize) as usize;
        let y1 = (h as isize - dy).clamp(y0 as isize, h as isize) as usize;
        let rows = y0 * w..y1 * w;
        let lo = (rows.start as isize).max(-offset).min(rows.end as isize) as usize;
        let hi = (rows.end as isize).min(hw - offset).max(lo as isize) as usize;
        Tap {
            offset,
            rows,
            columns: valid_columns(w, dx),
            copy: lo..hi,
        }
    }

    /// Calls `f(i)` for every pixel `i` of a valid row whose column is invalid.
    fn for_invalid_columns(&self, w: usize, mut f: impl FnMut(usize)) {
        for y0 in self.rows.clone().step_by(w) {
            (0..self.columns.start).for_each(|x| f(y0 + x));
            (self.columns.end..w).for_each(|x| f(y0 + x));
        }
    }
}

simd_kernel! {
    /// Unfolds one image (c_in, H, W) into the im2col matrix (c_in·K·K, H·W), zero outside the
    /// image: per tap, one shifted copy of the whole plane, then the padding set to zero.
    fn im2col<E: Kernel>(d: &ConvDims, img: &[E], cols: &mut [E]) {
        let (h, w, k) = (d.height, d.width, d.kernel);
        let pad = (k / 2) as isize;
        let hw = d.hw();
        for (c, plane) in img.chunks_exact(hw).enumerate().take(d.c_in) {
            for ky in 0..k {
                for kx in 0..k {
                    let row = &mut cols[((c * k + ky) * k + kx) * hw..][..hw];
                    let tap = Tap::new(h, w, ky as isize - pad, kx as isize - pad);
                    row[..tap.copy.start].fill(E::zero());
                    row[tap.copy.end..].fill(E::zero());
                    if !tap.copy.is_empty() {
                        let src = (tap.copy.start as isize + tap.offset) as usize;
                        row[tap.copy.clone()].copy_from_slice(&plane[src..src + tap.copy.len()]);
                        tap.for_invalid_columns(w, |i| row[i] = E::zero());
                    }
                }
            }
        }
    }
}

simd_kernel! {
    /// Folds an im2col-shaped gradient back onto the image, adding overlapping taps. `cols` is
    /// scratch: its entries for padding positions are zeroed so that each tap is one shifted
    /// add over the whole plane.
    fn col2im_add<E: Kernel>(d: &ConvDims, cols: &mut [E], img: &mut [E]) {
        let (h, w, k) = (d.height, d.width, d.kernel);
        let pad = (k / 2) as isize;
        let hw = d.hw();
        for (c, plane) in img.chunks_exact_mut(hw).enumerate().take(d.c_in) {
            for ky in 0..k {
                for kx in 0..k {
                    let row = &mut cols[((c * k + ky) * k + kx) * hw..][..hw];
                    let tap = Tap::new(h, w, ky as isize - pad, kx as isize - pad);
                    if tap.copy.is_empty() {
                        continue;
                    }
                    tap.for_invalid_columns(w, |i| row[i] = E::zero());
                    let dst = (tap.copy.start as isize + tap.offset) as usize;
                    plane[dst..dst + tap.copy.len()]
                        .iter_mut()
                        .zip(&row[tap.copy.clone()])
                        .for_each(|(a, g)| *a = *a + *g);
                }
            }
        }
    }
}

/// Forward pass over a batch: `out` (batch, c_out, H·W).
pub(crate) fn conv_forward<E: Kernel>(d: &ConvDims, x: &[E], weight: &[E], bias: &[E]) -> Vec<E> {
    let (hw, patch) = (d.hw(), d.patch());
    assert!(
        x.len() == d.batch * d.c_in * hw && bias.len() == d.c_out,
        "conv: input or bias size"
    );
    let n = d.batch * d.c_out * hw;
    // Not zero-filled: each image's output is set to the bias first (every element), then the
    // GEMM adds to it.
    let mut out: Vec<E> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(d.c_out * hw)
        .zip(x.par_chunks(d.c_in * hw))
        .for_each_init(
            || vec![E::zero(); if d.kernel == 1 { 0 } else { patch * hw }],
            |cols, (o, img)| {
                for (row, &b) in o.chunks_exact_mut(hw).zip(bias) {
                    row.iter_mut().for_each(|v| {
                        v.write(b);
                    });
                }
                // SAFETY: the loop above wrote all c_out × hw values (o has c_out rows of hw).
                let o = unsafe { assume_init_mut(o) };
                let cols: &[E] = if d.kernel == 1 {
                    img
                } else {
                    im2col(d, img, cols);
                    cols
                };
                gemm_into(
                    (d.c_out, hw, patch),
                    o,
                    (hw, 1),
                    true,
                    weight,
                    (patch, 1),
                    cols,
                    (hw, 1),
                );
            },
        );
    // SAFETY: every chunk of c_out × hw values was written above (n = batch chunks of them, and
    // x has batch images, asserted).
    unsafe { out.set_len(n) };
    out
}

/// Images per task in the backward pass. The weight gradient is summed per chunk and the
/// chunk sums are then added in a fixed order, so results do not depend on the thread count
/// or on scheduling (training is reproducible from a seed).
const BACKWARD_CHUNK: usize = 4;

/// Backward pass: returns (grad x, grad weight, grad bias) for the output gradient `grad_out`.
pub(crate) fn conv_backward<E: Kernel>(
    d: &ConvDims,
    x: &[E],
    weight: &[E],
    grad_out: &[E],
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let (hw, patch) = (d.hw(), d.patch());
    let mut grad_x = vec![E::zero(); d.batch * d.c_in * hw];
    let zeros = |n| vec![E::zero(); n];
    let partials: Vec<(Vec<E>, Vec<E>)> = grad_out
        .par_chunks(BACKWARD_CHUNK * d.c_out * hw)
        .zip(x.par_chunks(BACKWARD_CHUNK * d.c_in * hw))
        .zip(grad_x.par_chunks_mut(BACKWARD_CHUNK * d.c_in * hw))
        .map_init(
            // Column buffers per worker, not per chunk: zero-filling 2 × patch × hw values per
            // chunk of images was a tenth of a training step.
            || {
                let scratch = if d.kernel == 1 { 0 } else { patch * hw };
                (zeros(scratch), zeros(scratch))
            },
            |(cols, gcols), ((go_chunk, x_chunk), gx_chunk)| {
                let (mut gw, mut gb) = (zeros(d.c_out * patch), zeros(d.c_out));
                let images = go_chunk
                    .chunks(d.c_out * hw)
                    .zip(x_chunk.chunks(d.c_in * hw))
                    .zip(gx_chunk.chunks_mut(d.c_in * hw));
                for ((go, img), gx) in images {
                    for (co, row) in go.chunks(hw).enumerate() {
                        gb[co] = row.iter().fold(gb[co], |acc, v| acc + *v);
                    }
                    let cols_ref: &[E] = if d.kernel == 1 {
                        img
                    } else {
                        im2col(d, img, cols);
                        cols
                    };
                    // grad weight += grad_out (c_out × hw) · colsᵀ (hw × patch)
                    gemm_into(
                        (d.c_out, patch, hw),
                        &mut gw,
                        (patch, 1),
                        true,
                        go,
                        (hw, 1),
                        cols_ref,
                        (1, hw),
                    );
                    // grad cols = weightᵀ (patch × c_out) · grad_out (c_out × hw), folded onto x
                    if d.kernel == 1 {
                        gemm_into(
                            (patch, hw, d.c_out),
                            gx,
                            (hw, 1),
                            true,
                            weight,
                            (1, patch),
                            go,
                            (hw, 1),
                        );
                    } else {
                        gemm_into(
                            (patch, hw, d.c_out),
                            gcols,
                            (hw, 1),
                            false,
                            weight,
                            (1, patch),
                            go,
                            (hw, 1),
                        );
                        col2im_add(d, gcols, gx);
                    }
                }
                (gw, gb)
            },
        )
        .collect();
    let (mut grad_w, mut grad_b) = (zeros(d.c_out * patch), zeros(d.c_out));
    for (gw, gb) in partials {
        add_into(&mut grad_w, &gw);
        add_into(&mut grad_b, &gb);
    }
    (grad_x, grad_w, grad_b)
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

fn add_into<E: Float>(dst: &mut [E], src: &[E]) {
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
                let (x_vec, w_vec, b_vec) = (host_copy(&x), host_copy(weight), host_copy(bias));
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

    fn check<const K: usize>() {
        let dev: Cpu = Default::default();
        let d = ConvDims {
            batch: 3,
            c_in: 2,
            c_out: 3,
            height: 5,
            width: 4,
            kernel: K,
        };
        let x = dev.sample_normal_like(&(3, Const::<2>, Const::<5>, Const::<4>));
        let wt: Tensor<(Const<3>, Const<2>, Const<K>, Const<K>), f64, Cpu> = dev.sample_normal();
        let b: Tensor<(Const<3>,), f64, Cpu> = dev.sample_normal();
        let r: Tensor<(usize, Const<3>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const::<3>, Const::<5>, Const::<4>));
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

    /// im2col and col2im (shifted whole-plane copies with padding fixed up afterwards) against
    /// their definitions, on shapes with every edge case: 1-pixel planes, single rows and
    /// columns, kernels wider than the image.
    #[test]
    fn im2col_and_col2im_match_their_definitions() {
        for (h, w, k) in [
            (1, 1, 3),
            (1, 5, 3),
            (4, 1, 3),
            (2, 2, 3),
            (5, 4, 3),
            (7, 6, 5),
            (3, 3, 5),
        ] {
            let d = ConvDims {
                batch: 1,
                c_in: 2,
                c_out: 1,
                height: h,
                width: w,
                kernel: k,
            };
            let img: Vec<f64> = (0..2 * h * w).map(|i| i as f64 + 1.0).collect();
            let pad = (k / 2) as isize;
            let tap = |c: usize, ky: usize, kx: usize, y: usize, x: usize| {
                let (sy, sx) = (
                    y as isize + ky as isize - pad,
                    x as isize + kx as isize - pad,
                );
                ((0..h as isize).contains(&sy) && (0..w as isize).contains(&sx))
                    .then(|| c * h * w + sy as usize * w + sx as usize)
            };
            let mut cols = vec![f64::NAN; d.patch() * h * w];
            im2col(&d, &img, &mut cols);
            let grad: Vec<f64> = (0..cols.len()).map(|i| (i % 7) as f64 - 3.0).collect();
            let mut expect_img = vec![0.5; img.len()];
            for c in 0..2 {
                for ky in 0..k {
                    for kx in 0..k {
                        for y in 0..h {
                            for x in 0..w {
                                let at = ((c * k + ky) * k + kx) * h * w + y * w + x;
                                let src = tap(c, ky, kx, y, x);
                                assert_eq!(
                                    cols[at],
                                    src.map_or(0.0, |i| img[i]),
                                    "im2col {h}x{w} k{k}"
                                );
                                if let Some(i) = src {
                                    expect_img[i] += grad[at];
                                }
                            }
                        }
                    }
                }
            }
            let mut folded = vec![0.5; img.len()];
            col2im_add(&d, &mut grad.clone(), &mut folded);
            assert_eq!(folded, expect_img, "col2im {h}x{w} k{k}");
        }
    }

    #[test]
    fn conv3x3_matches_direct_convolution_values_and_gradients() {
        check::<3>();
    }

    #[test]
    fn conv1x1_matches_direct_convolution_values_and_gradients() {
        check::<1>();
    }
}
