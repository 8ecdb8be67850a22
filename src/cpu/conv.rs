//! The CPU convolution ([`ConvDevice`] for `Cpu`): a custom autograd op, parallel over the images
//! of the batch with rayon. Per image it runs a Winograd F(2×2, 3×3) convolution where that
//! applies (3×3 kernels, channel counts multiples of 16: the hidden layers of the conditioner
//! networks, most of the work; [`winograd`]) and the direct implicit GEMM otherwise
//! ([`direct_conv`](super::direct_conv)). The backward pass keeps only the input, so peak memory
//! is a few padded planes of scratch per thread. The fused conditioner network
//! ([`conditioner`](super::conditioner)) calls the per-image functions directly.
use super::conv_dims::ConvDims;
use super::direct_conv::{direct_image_backward, direct_image_forward};
use super::host::{add_into, backward_chunk, host_copy, take_grad};
use super::simd::{par_init, Kernel};
use super::winograd::{self, WinogradWeight};
use crate::nn::ConvDevice;
use dfdx::prelude::*;
use rayon::prelude::*;
use std::mem::MaybeUninit;

impl ConvDims {
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
    /// The most scratch any of `convs` needs, forward or (`backward`) backward: what a fused
    /// network that runs them one after another in one buffer takes for them.
    pub(crate) fn largest_scratch(convs: &[ConvDims], backward: bool) -> usize {
        convs
            .iter()
            .map(|c| {
                if backward {
                    c.backward_scratch()
                } else {
                    c.forward_scratch()
                }
            })
            .max()
            .unwrap_or(0)
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
