//! The affine coupling transform as a device op ([`AffineCouplingOps`]): from the conditioner
//! network's output to the coupled latent and the log-determinant.
//!
//! Written with dfdx ops, the transform is a chain of about a dozen elementwise ops forward and
//! twenty backward, each allocating its output and walking the whole batch. The trait's default
//! is that composition (any device, and the reference of the CPU kernel's test); `Cpu` runs one
//! parallel pass (`crate::cpu::affine`).
use crate::dtype::FlowDtype;
use crate::nn::gated::chunk2;
use crate::shape::Double;
use dfdx::prelude::*;

/// The coupling transform by composition of dfdx ops (any device): `h` holds the raw scale and
/// shift (`2·C` channels), `mask` is 1 on the kept half, expanded to the batch.
#[allow(clippy::type_complexity)]
pub(crate) fn affine_coupling_composed<
    C: ConstDim + Double,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    z: Tensor<(usize, C, H, W), E, D, T>,
    h: Tensor<(usize, C::Output, H, W), E, D, T>,
    scaling_factor: &Tensor<(C,), E, D>,
    mask: &Tensor<(usize, C, H, W), E, D>,
    reverse: bool,
) -> Result<(Tensor<(usize, C, H, W), E, D, T>, Tensor<(usize,), E, D, T>), D::Err> {
    let shape = *z.shape();
    let (s, t) = chunk2::<_, C, H, W, E, D, T>(h)?;
    // s = tanh(s / e^f) · e^f keeps |s| below the learnable limit e^f.
    let s_fac = scaling_factor
        .retaped::<T>()
        .try_exp()?
        .try_broadcast_like(&shape)?;
    let s = s
        .try_div(s_fac.retaped::<T>())?
        .try_tanh()?
        .try_mul(s_fac)?;
    let transformed = mask.clone().try_negate()?.try_add(E::ONE)?;
    let s = s.try_mul(transformed.clone())?;
    let t = t.try_mul(transformed)?;
    let log_det = s.retaped::<T>().try_sum::<(usize,), Axes3<1, 2, 3>>()?;
    let z = if !reverse {
        z.try_add(t)?.try_mul(s.try_exp()?)?
    } else {
        z.try_mul(s.try_negate()?.try_exp()?)?.try_sub(t)?
    };
    Ok((z, log_det))
}

/// A device that runs the affine coupling transform of [`Coupling`](super::Coupling).
pub trait AffineCouplingOps<E: FlowDtype>: Device<E> {
    /// The affine coupling transform ([`Coupling`](crate::layers::Coupling)) from the
    /// network's output `h` (raw scale and shift, `2·C` channels): `s = tanh(s_raw / e^f) · e^f`
    /// and `t = t_raw`, both zero on the kept half (`mask` = 1, expanded to the batch), then
    /// `z' = (z + t) · e^s`, or `z' = z · e^{−s} − t` with `reverse`. Returns `z'` and `Σ s` per
    /// image. The default is the composition of dfdx ops.
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
    > {
        affine_coupling_composed(z, h, scaling_factor, mask, reverse)
    }
}
