//! Fused elementwise ops of the gated ResNet (concatenated ELU, channel layer norm, the gated
//! residual) and of Glow (ActNorm's per-channel affine map, with or without the ReLU that follows
//! it in Glow's coupling network), each as one pass forward and one backward.
//!
//! Written as compositions of dfdx ops, each of these allocates and walks a full activation
//! tensor several times (and keeps as many intermediates for the backward pass); they dominated
//! the CPU training step. The trait's default methods are those compositions (any dfdx device,
//! and the reference the CPU kernels are tested against); `Cpu` overrides them with fused
//! kernels, parallel over the images of the batch.
use crate::dtype::FlowDtype;
use dfdx::prelude::*;

/// `ELU(x) = x` for `x > 0`, `exp(x) − 1` otherwise (α = 1), by composition of dfdx ops:
/// `relu(x) + (e^{min(x, 0)} − 1)`, both terms with a gradient everywhere (1 at 0, like the
/// kernels). Four unary ops and one binary op; the binary op runs on the tensor flattened to one
/// axis, where dfdx's CUDA kernels compute one index division per element instead of one per
/// axis (a view when `x` is contiguous).
fn elu_composed<S: Shape, E: FlowDtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    let shape = *x.shape();
    let flat = x.try_reshape_like(&(shape.num_elements(),))?;
    let pos = flat.retaped::<T>().try_relu()?;
    let neg = flat
        .try_clamp(f64::NEG_INFINITY, 0.0)?
        .try_exp()?
        .try_sub(E::ONE)?;
    pos.try_add(neg)?.try_reshape_like(&shape)
}

/// `cat([elu(x), elu(−x)], channels)` by composition of dfdx ops: the concatenation first, so
/// that one ELU runs over both halves (7 kernels forward instead of 16).
pub(crate) fn concat_elu_composed<
    C: Dim,
    C2: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    c2: C2,
) -> Result<Tensor<(usize, C2, H, W), E, D, T>, D::Err> {
    let x = x
        .try_realize::<(usize, usize, H, W)>()
        .unwrap_or_else(|_| unreachable!());
    let both = (x.retaped::<T>(), x.try_negate()?).try_concat_along(Axis::<1>)?;
    let out = elu_composed(both)?;
    assert_eq!(
        out.shape().1,
        c2.size(),
        "concat_elu: output must have 2·C channels"
    );
    Ok(out.try_realize().unwrap_or_else(|_| unreachable!()))
}

/// Channel layer norm with per-channel affine, by composition of dfdx ops.
pub(crate) fn layer_norm_composed<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    gamma: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
    beta: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>,
    eps: f64,
) -> Result<Tensor<(usize, C, H, W), E, D, T>, D::Err> {
    let shape = *x.shape();
    // The tape goes on the parameter before the reshape (docs/ARCHITECTURE.md, dfdx fact 2).
    let param = |p: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, D>| {
        p.retaped::<T>()
            .try_reshape_like(&(shape.1,))?
            .try_broadcast_like(&shape)
    };
    let y = x.try_normalize::<Axis<1>>(eps)?;
    y.try_mul(param(gamma)?)?.try_add(param(beta)?)
}

/// `x + val · σ(gate)` by composition of dfdx ops.
pub(crate) fn gated_residual_composed<
    C: Dim,
    C2: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    h: Tensor<(usize, C2, H, W), E, D, T>,
) -> Result<Tensor<(usize, C, H, W), E, D, T>, D::Err> {
    let c = x.shape().1.size();
    assert_eq!(
        h.shape().1.size(),
        2 * c,
        "gated residual: h must have 2·C channels"
    );
    // Two slices of a tensor nothing else reads: CPU slice backward assigns, and the regions
    // are disjoint, so this stays correct (docs/ARCHITECTURE.md, dfdx fact 1).
    let val = h.retaped::<T>().try_slice((.., 0..c, .., ..))?;
    let gate = h.try_slice((.., c..2 * c, .., ..))?;
    let shape = *x.shape();
    let val = val.try_reshape_like(&shape)?;
    let gate = gate.try_reshape_like(&shape)?;
    x.try_add(val.try_mul(gate.try_sigmoid()?)?)
}

/// `e^{logs} · (x + loc)` per channel, then `relu` if asked, by composition of dfdx ops: two
/// broadcast binary ops (and a ReLU), each a pass over the activation and, backward, a
/// reduction over the batch and pixels.
pub(crate) fn channel_affine_composed<
    C: Dim,
    H: Dim,
    W: Dim,
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(usize, C, H, W), E, D, T>,
    loc: &Tensor<(C,), E, D>,
    logs: &Tensor<(C,), E, D>,
    relu: bool,
) -> Result<Tensor<(usize, C, H, W), E, D, T>, D::Err> {
    let shape = *x.shape();
    let loc = loc
        .retaped::<T>()
        .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let scale = logs
        .retaped::<T>()
        .try_exp()?
        .try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let y = x.try_add(loc)?.try_mul(scale)?;
    if relu {
        y.try_relu()
    } else {
        Ok(y)
    }
}

/// The gated ResNet's and Glow's elementwise ops on one device. The default methods are dfdx
/// compositions; `Cpu` has fused kernels.
pub trait FusedOps<E: FlowDtype>: Device<E> {
    /// `cat([elu(x), elu(−x)], channels)`: `C` channels in, `C2 = 2C` out.
    fn try_concat_elu<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        c2: C2,
    ) -> Result<Tensor<(usize, C2, H, W), E, Self, T>, Self::Err> {
        concat_elu_composed(x, c2)
    }

    /// Layer norm over channels (biased variance), then `· gamma + beta` per channel.
    fn try_layer_norm_channels<C: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        gamma: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, Self>,
        beta: &Tensor<(Const<1>, C, Const<1>, Const<1>), E, Self>,
        eps: f64,
    ) -> Result<Tensor<(usize, C, H, W), E, Self, T>, Self::Err> {
        layer_norm_composed(x, gamma, beta, eps)
    }

    /// `x + val · σ(gate)` where `(val, gate)` are the two channel halves of `h`.
    fn try_gated_residual<C: Dim, C2: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        h: Tensor<(usize, C2, H, W), E, Self, T>,
    ) -> Result<Tensor<(usize, C, H, W), E, Self, T>, Self::Err> {
        gated_residual_composed(x, h)
    }

    /// ActNorm's map `e^{logs} · (x + loc)` per channel, followed by a ReLU if `relu` (as in
    /// Glow's coupling network). Gradients flow to `x`, `loc` and `logs`.
    fn try_channel_affine<C: Dim, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, C, H, W), E, Self, T>,
        loc: &Tensor<(C,), E, Self>,
        logs: &Tensor<(C,), E, Self>,
        relu: bool,
    ) -> Result<Tensor<(usize, C, H, W), E, Self, T>, Self::Err> {
        channel_affine_composed(x, loc, logs, relu)
    }
}
