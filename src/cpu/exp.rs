//! `exp` and `tanh` for the CPU kernels ([`KernelExp`]): vectorizable in f32, libm in f64.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
