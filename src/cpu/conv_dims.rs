//! The dimensions of one convolution and the geometry its kernels share: padded planes, the
//! padded-width output grid, scratch sizes of the direct (implicit GEMM) path.

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

impl ConvDims {
    pub(crate) fn pad(&self) -> usize {
        self.kernel / 2
    }
    /// Width of a zero-padded plane.
    pub(crate) fn padded_width(&self) -> usize {
        self.width + 2 * self.pad()
    }
    /// Output positions on the padded-width grid: pixel (y, x) is at `y · Wp + x`; the other
    /// positions (the `K − 1` at the end of each row but the last, and the rounding at the end)
    /// are junk, computed and then ignored. A multiple of 16 (one AVX-512 register of f32): the
    /// `gemm` crate copies ("packs") a whole operand whose row count is not, on every call.
    pub(crate) fn grid(&self) -> usize {
        if self.hw() == 0 {
            0
        } else {
            ((self.height - 1) * self.padded_width() + self.width).next_multiple_of(16)
        }
    }
    /// Where kernel tap `t` (row-major over K×K) reads in a padded plane, relative to the output
    /// position.
    pub(crate) fn tap_offset(&self, t: usize) -> usize {
        (t / self.kernel) * self.padded_width() + t % self.kernel
    }
    /// Values per zero-padded plane: (H + K − 1) × (W + K − 1), and zeros after it up to what
    /// the last tap reads for the last grid position; a multiple of 16.
    pub(crate) fn padded_plane(&self) -> usize {
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
    pub(crate) fn transposes_output_grad(&self) -> bool {
        self.weight_grad_transposed() && self.c_out.is_multiple_of(16)
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
