//! Transposes of blocks of up to 16 × 16 values, between (channel, pixel) planes and the
//! (pixel, channel) layouts of the Winograd convolution and of the direct weight gradient.
//!
//! Element by element, a transpose is one load and one store per value, each to a different
//! cache line on one side; measured as 7 % of a multi-scale training step. In f32 on CPUs with
//! AVX-512 a 16 × 16 block is 16 vector loads, 64 shuffles and 16 vector stores instead.
use super::simd::{as_f32, has_avx512, Kernel};
use std::mem::MaybeUninit;

/// Rows and columns of the largest block.
pub(crate) const BLOCK: usize = 16;

/// `dst[j · dst_stride + i] = src[i · src_stride + j]` for `i < rows`, `j < cols` (both at most
/// [`BLOCK`]); writes nothing else.
pub(crate) fn transpose_block<E: Kernel>(
    src: &[E],
    src_stride: usize,
    (rows, cols): (usize, usize),
    dst: &mut [MaybeUninit<E>],
    dst_stride: usize,
) {
    assert!(rows <= BLOCK && cols <= BLOCK, "transpose: block too large");
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_stride + cols <= src.len() && (cols - 1) * dst_stride + rows <= dst.len(),
        "transpose: block outside the slices"
    );
    #[cfg(target_arch = "x86_64")]
    if let Some(src) = as_f32(src).filter(|_| has_avx512()) {
        // SAFETY: E is f32 (as_f32 checked), so the cast keeps the element type; the bounds
        // were asserted above; the CPU has AVX-512 F.
        unsafe {
            let dst = &mut *(dst as *mut [MaybeUninit<E>] as *mut [MaybeUninit<f32>]);
            avx512::transpose_f32(src, src_stride, (rows, cols), dst, dst_stride);
        }
        return;
    }
    for i in 0..rows {
        for j in 0..cols {
            dst[j * dst_stride + i].write(src[i * src_stride + j]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// [`super::transpose_block`] for f32: rows loaded with a mask of `cols` lanes (zeros for
    /// missing rows), stores masked to `rows` lanes.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, and the block must lie inside both slices (as asserted by
    /// the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_f32(
        src: &[f32],
        src_stride: usize,
        (rows, cols): (usize, usize),
        dst: &mut [MaybeUninit<f32>],
        dst_stride: usize,
    ) {
        let load_mask: __mmask16 = ((1u32 << cols) - 1) as u16;
        let store_mask: __mmask16 = ((1u32 << rows) - 1) as u16;
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, ri) in r.iter_mut().enumerate().take(rows) {
            // SAFETY: row i < rows starts at i · src_stride, and its `cols` loaded lanes end
            // within src (asserted by the caller); masked-off lanes are not read.
            *ri = unsafe { _mm512_maskz_loadu_ps(load_mask, src.as_ptr().add(i * src_stride)) };
        }
        // Pairs of rows interleaved, then pairs of pairs: each 128-bit lane holds a 4 × 4 block.
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        for g in 0..4 {
            let (a, b) = (4 * g, 4 * g + 2);
            r[4 * g] = _mm512_shuffle_ps::<0x44>(t[a], t[b]);
            r[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t[a], t[b]);
            r[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t[a + 1], t[b + 1]);
            r[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t[a + 1], t[b + 1]);
        }
        // Then the 4 × 4 blocks moved across lanes: r[4g + k] holds column k, 4 + k, 8 + k,
        // 12 + k of rows 4g..4g + 4, one per lane.
        for k in 0..4 {
            t[k] = _mm512_shuffle_f32x4::<0x88>(r[k], r[4 + k]);
            t[4 + k] = _mm512_shuffle_f32x4::<0xDD>(r[k], r[4 + k]);
            t[8 + k] = _mm512_shuffle_f32x4::<0x88>(r[8 + k], r[12 + k]);
            t[12 + k] = _mm512_shuffle_f32x4::<0xDD>(r[8 + k], r[12 + k]);
        }
        for k in 0..4 {
            r[k] = _mm512_shuffle_f32x4::<0x88>(t[k], t[8 + k]);
            r[4 + k] = _mm512_shuffle_f32x4::<0x88>(t[4 + k], t[12 + k]);
            r[8 + k] = _mm512_shuffle_f32x4::<0xDD>(t[k], t[8 + k]);
            r[12 + k] = _mm512_shuffle_f32x4::<0xDD>(t[4 + k], t[12 + k]);
        }
        for (j, rj) in r.iter().enumerate().take(cols) {
            // SAFETY: column j < cols goes to j · dst_stride, its `rows` stored lanes end within
            // dst (asserted by the caller); masked-off lanes are not written.
            unsafe {
                _mm512_mask_storeu_ps(
                    dst.as_mut_ptr().add(j * dst_stride) as *mut f32,
                    store_mask,
                    *rj,
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block size up to 16 × 16, in f32 (the vector path where the CPU has AVX-512) and
    /// f64 (element by element), strides wider than the blocks; nothing outside the block is
    /// written.
    #[test]
    fn blocks_of_every_size_are_transposed() {
        fn check<E: Kernel + std::fmt::Debug>() {
            let (ss, ds) = (19, 23);
            let src: Vec<E> = (0..BLOCK * ss).map(|i| E::from(i).unwrap()).collect();
            for rows in 0..=BLOCK {
                for cols in 0..=BLOCK {
                    let mut dst = vec![MaybeUninit::new(-E::one()); BLOCK * ds];
                    transpose_block(&src, ss, (rows, cols), &mut dst, ds);
                    for (k, v) in dst.iter().enumerate() {
                        // SAFETY: every element was initialised (with -1, or written).
                        let v = unsafe { v.assume_init() };
                        let (j, i) = (k / ds, k % ds);
                        let want = if i < rows && j < cols {
                            src[i * ss + j]
                        } else {
                            -E::one()
                        };
                        assert_eq!(v, want, "{rows}x{cols}, dst[{k}]");
                    }
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }
}
