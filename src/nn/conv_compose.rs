//! The same-padded convolution as a composition of dfdx's public tensor ops, so that it runs on
//! any dfdx device (the `Cuda` implementation of [`ConvDevice`](super::ConvDevice) uses it).
//!
//! This is docs/ARCHITECTURE.md §3's "gather composition": the input goes channels-last as a matrix of
//! pixels × channels with one zero row appended; one `gather` with a precomputed index builds the
//! im2col matrix (one row per output pixel and kernel tap; taps outside the image read the zero
//! row), and one `matmul` with the weight, reshaped to (taps · channels in, channels out), does
//! the convolution. Every step is a dfdx op, so dfdx records the backward pass; `gather`'s backward
//! adds overlapping taps (no `slice`, whose CPU backward assigns, docs/ARCHITECTURE.md, dfdx fact 1).
//!
//! The index depends only on (batch, H, W, K); building it on the host and uploading it is
//! O(batch · H · W · K²) host work per call (7 MB for a batch of 128 28×28 images), so the
//! caller passes it in: the `Cuda` implementation keeps the recent ones on the device.
use dfdx::prelude::*;

/// Largest element count that dfdx's CUDA `gather` kernels can address: they compute offsets in
/// 32-bit `unsigned int`s (docs/ARCHITECTURE.md, dfdx fact 7).
const GATHER_MAX_ELEMENTS: usize = u32::MAX as usize;

/// Rows of the channels-last input (`batch · h · w` pixels, then the appended zero row) that the
/// im2col matrix reads, in its row order: output pixel (image, y, x) major, kernel tap (ky, kx)
/// minor. Taps outside the image point at the zero row, index `batch · h · w`.
pub(crate) fn im2col_rows(batch: usize, h: usize, w: usize, k: usize) -> Vec<usize> {
    let zero_row = batch * h * w;
    let pad = (k / 2) as isize;
    let (hi, wi) = (h as isize, w as isize);
    let mut rows = Vec::with_capacity(batch * h * w * k * k);
    for n in 0..batch {
        for y in 0..hi {
            for x in 0..wi {
                for ky in 0..k as isize {
                    let sy = y + ky - pad;
                    for kx in 0..k as isize {
                        let sx = x + kx - pad;
                        rows.push(if sy < 0 || sy >= hi || sx < 0 || sx >= wi {
                            zero_row
                        } else {
                            (n * h + sy as usize) * w + sx as usize
                        });
                    }
                }
            }
        }
    }
    rows
}

/// The value of `key` in `cache` (most recently used last), made by `make` and kept if absent;
/// with `capacity` entries, the least recently used one is dropped first.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn recently_used<K: PartialEq, V: Clone, Err>(
    cache: &mut Vec<(K, V)>,
    key: K,
    capacity: usize,
    make: impl FnOnce() -> Result<V, Err>,
) -> Result<V, Err> {
    if let Some(at) = cache.iter().position(|(k, _)| *k == key) {
        let entry = cache.remove(at);
        let value = entry.1.clone();
        cache.push(entry);
        return Ok(value);
    }
    let value = make()?;
    if cache.len() >= capacity {
        cache.remove(0);
    }
    cache.push((key, value.clone()));
    Ok(value)
}

/// The gather index of [`conv2d_by_composition`] on `dev`: [`im2col_rows`] as a tensor.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn im2col_index<D: TensorFromVec<usize>>(
    dev: &D,
    batch: usize,
    h: usize,
    w: usize,
    k: usize,
) -> Result<Tensor<(usize,), usize, D>, D::Err> {
    let rows = im2col_rows(batch, h, w, k);
    let len = rows.len();
    dev.try_tensor_from_vec(rows, (len,))
}

/// Convolves `x` (batch, `CI`, H, W) with `weight` (`CO`, `CI`, K, K) plus `bias` (`CO`), stride 1,
/// zero padding `K / 2`, with public dfdx ops only; the contract of
/// [`ConvDevice::try_conv2d_same`](super::ConvDevice::try_conv2d_same). The backward pass is
/// recorded on `x`'s tape; gradients flow to `x`, `weight` and `bias`. The result is a permuted
/// (non-contiguous) view of a channels-last buffer.
///
/// `index(batch, h, w, k)` supplies [`im2col_index`] (or a cached copy of it); it is not called
/// for a 1×1 kernel.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn conv2d_by_composition<
    const K: usize,
    CI: Dim,
    CO: Dim,
    H: Dim,
    W: Dim,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, CI, H, W), E, D, T>,
    weight: &Tensor<(CO, CI, Const<K>, Const<K>), E, D>,
    bias: &Tensor<(CO,), E, D>,
    index: impl FnOnce(usize, usize, usize, usize) -> Result<Tensor<(usize,), usize, D>, D::Err>,
) -> Result<Tensor<(usize, CO, H, W), E, D, T>, D::Err> {
    assert!(
        K % 2 == 1,
        "same-padded convolution needs an odd kernel size, got {K}"
    );
    let (batch, ci, h, w) = *x.shape();
    let co = weight.shape().0;
    let pixels = batch * h.size() * w.size();
    let patch = K * K * ci.size();
    assert!(
        (pixels + 1) * ci.size() <= GATHER_MAX_ELEMENTS && pixels * patch <= GATHER_MAX_ELEMENTS,
        "convolution too large for 32-bit gather offsets: {pixels} pixels × {patch} taps"
    );
    let dev = x.device().clone();

    // Weight (CO, CI, K, K) → (K·K·CI, CO), rows ordered (ky, kx, ci) like the im2col columns.
    // The tape goes on first: the reshape of the permuted weight copies, and a copy made on a
    // `NoneTape` tensor would drop the weight's gradient (docs/ARCHITECTURE.md, dfdx fact 2).
    let weight = weight
        .retaped::<T>()
        .try_permute::<_, Axes4<2, 3, 1, 0>>()?
        .try_reshape_like(&(patch, co))?;

    // Input → channels-last rows (batch·H·W, CI).
    let rows = x
        .try_permute::<_, Axes4<0, 2, 3, 1>>()?
        .try_reshape_like(&(pixels, ci))?;

    // im2col (batch·H·W, K·K·CI): a 1×1 kernel reads each pixel once, no padding needed.
    let cols = if K == 1 {
        rows.try_reshape_like(&(pixels, patch))?
    } else {
        let zero_row = dev.try_zeros_like(&(1usize, ci))?;
        let padded = (rows, zero_row).try_concat_along(Axis::<0>)?;
        let index = index(batch, h.size(), w.size(), K)?;
        assert_eq!(
            index.shape().0,
            pixels * K * K,
            "im2col index of another shape"
        );
        padded
            .try_gather(index)?
            .try_reshape_like(&(pixels, patch))?
    };

    let out = cols.try_matmul(weight)?;
    let out = out.try_add(bias.retaped::<T>().try_broadcast_like(&(pixels, co))?)?;
    out.try_reshape_like(&(batch, h, w, co))?
        .try_permute::<_, Axes4<0, 3, 1, 2>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ConvDevice;

    fn assert_close(what: &str, a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths differ");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-10, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// The composition against the CPU custom op: values, and gradients of x, weight and bias
    /// for loss = sum(out * r) with a random r.
    fn check<const K: usize>() {
        let dev: Cpu = Default::default();
        let x = dev.sample_normal_like(&(3, Const::<2>, Const::<5>, Const::<4>));
        let wt: Tensor<(Const<3>, Const<2>, Const<K>, Const<K>), f64, Cpu> = dev.sample_normal();
        let b: Tensor<(Const<3>,), f64, Cpu> = dev.sample_normal();
        let r: Tensor<(usize, Const<3>, Const<5>, Const<4>), f64, Cpu> =
            dev.sample_normal_like(&(3, Const::<3>, Const::<5>, Const::<4>));

        let expect = Cpu::try_conv2d_same(x.leaky_trace(), &wt, &b).unwrap();
        let dev2 = dev.clone();
        let index = move |n, h, w, k| im2col_index(&dev2, n, h, w, k);
        let got = conv2d_by_composition(x.leaky_trace(), &wt, &b, index.clone()).unwrap();
        assert_eq!(got.shape(), expect.shape());
        assert_close("forward", &got.as_vec(), &expect.as_vec());

        let g_expect = (expect * r.clone()).sum().backward();
        let g_got = (got * r).sum().backward();
        assert_close(
            "grad x",
            &g_got.get(&x).as_vec(),
            &g_expect.get(&x).as_vec(),
        );
        assert_close(
            "grad weight",
            &g_got.get(&wt).as_vec(),
            &g_expect.get(&wt).as_vec(),
        );
        assert_close(
            "grad bias",
            &g_got.get(&b).as_vec(),
            &g_expect.get(&b).as_vec(),
        );

        // Without a tape (inference) the values are the same.
        let plain = conv2d_by_composition(x.clone(), &wt, &b, index).unwrap();
        let reference = Cpu::try_conv2d_same(x, &wt, &b).unwrap();
        assert_close("forward, no tape", &plain.as_vec(), &reference.as_vec());
    }

    #[test]
    fn composed_conv3x3_matches_cpu_op_values_and_gradients() {
        check::<3>();
    }

    #[test]
    fn composed_conv1x1_matches_cpu_op_values_and_gradients() {
        check::<1>();
    }

    #[test]
    fn recently_used_makes_each_value_once_and_drops_the_least_recent() {
        let mut cache = Vec::new();
        let mut made = Vec::new();
        let mut get = |cache: &mut Vec<(u32, String)>, key: u32| {
            recently_used(cache, key, 2, || {
                made.push(key);
                Ok::<_, ()>(format!("v{key}"))
            })
            .unwrap()
        };
        assert_eq!(get(&mut cache, 1), "v1");
        assert_eq!(get(&mut cache, 2), "v2");
        assert_eq!(get(&mut cache, 1), "v1"); // hit: 1 becomes the most recent
        assert_eq!(get(&mut cache, 3), "v3"); // full: drops 2, the least recent
        assert_eq!(get(&mut cache, 1), "v1");
        assert_eq!(get(&mut cache, 2), "v2"); // made again
        assert_eq!(made, [1, 2, 3, 2]);
        assert_eq!(cache.len(), 2);
        // A failing `make` leaves the cache as it was.
        let before: Vec<u32> = cache.iter().map(|(k, _)| *k).collect();
        assert!(recently_used(&mut cache, 9, 2, || Err::<String, _>("no")).is_err());
        assert_eq!(cache.iter().map(|(k, _)| *k).collect::<Vec<_>>(), before);
    }

    #[test]
    fn im2col_rows_point_outside_taps_at_the_zero_row() {
        // One 2×2 image, 3×3 kernel: pixel (0, 0) sees itself at tap (1, 1) and its right,
        // lower and lower-right neighbours at taps (1, 2), (2, 1), (2, 2).
        let rows = im2col_rows(1, 2, 2, 3);
        assert_eq!(rows.len(), 4 * 9);
        assert_eq!(&rows[..9], &[4, 4, 4, 4, 0, 1, 4, 2, 3]);
    }
}
