//! Coupling masks: which half of the input a coupling layer keeps (mask 1) and which it
//! transforms (mask 0). The masks are buffers named `mask` with the tutorial's shapes.
use crate::dtype::FlowDtype;
use crate::flow::FlowDevice;
use dfdx::prelude::*;

/// A kind of coupling mask, fixed at compile time (including whether it is inverted, so that a
/// stack of couplings with alternating masks is a stack of distinct types).
pub trait MaskKind: 'static + Clone + Copy + std::fmt::Debug + Default {
    /// Shape of the stored mask for `C`×`H`×`W` images.
    type Shape<const C: usize, const H: usize, const W: usize>: ConstShape;
    /// Short name for summaries.
    const NAME: &'static str;
    /// The mask's values in storage order.
    fn values<const C: usize, const H: usize, const W: usize>() -> Vec<f64>;
    /// The mask broadcast to a batch of images.
    fn expand<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>(
        mask: &Tensor<Self::Shape<C, H, W>, E, D>,
        batch: usize,
    ) -> Result<Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D>, D::Err>;
}

/// Fills a mask tensor with its kind's values (the `reset` of the `mask` buffer).
pub(crate) fn fill_mask<
    M: MaskKind,
    const C: usize,
    const H: usize,
    const W: usize,
    E: FlowDtype,
    D: FlowDevice<E>,
>(
    t: &mut Tensor<M::Shape<C, H, W>, E, D>,
) -> Result<(), D::Err> {
    let values: Vec<E> = M::values::<C, H, W>()
        .into_iter()
        .map(|v| E::from_f64(v).unwrap())
        .collect();
    t.copy_from(&values);
    Ok(())
}

/// Checkerboard mask (1, 1, H, W): `mask[y][x] = (y + x) mod 2`, or `1 −` that when `INVERT`;
/// shared across channels.
///
/// ```
/// use dfdx_flows::layers::{Checkerboard, MaskKind};
/// assert_eq!(Checkerboard::<false>::values::<1, 2, 2>(), vec![0.0, 1.0, 1.0, 0.0]);
/// assert_eq!(Checkerboard::<true>::values::<1, 2, 2>(), vec![1.0, 0.0, 0.0, 1.0]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Checkerboard<const INVERT: bool>;

impl<const INVERT: bool> MaskKind for Checkerboard<INVERT> {
    type Shape<const C: usize, const H: usize, const W: usize> = Rank4<1, 1, H, W>;
    const NAME: &'static str = if INVERT {
        "checkerboard, inverted"
    } else {
        "checkerboard"
    };

    fn values<const C: usize, const H: usize, const W: usize>() -> Vec<f64> {
        (0..H)
            .flat_map(|y| (0..W).map(move |x| ((y + x) % 2) as f64))
            .map(|v| if INVERT { 1.0 - v } else { v })
            .collect()
    }

    fn expand<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>(
        mask: &Tensor<Rank4<1, 1, H, W>, E, D>,
        batch: usize,
    ) -> Result<Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D>, D::Err> {
        mask.clone()
            .try_reshape::<Rank2<H, W>>()?
            .try_broadcast_like(&(batch, Const::<C>, Const::<H>, Const::<W>))
    }
}

/// Channel mask (1, C, 1, 1): the first `C / 2` channels 1, the rest 0 (or the reverse when
/// `INVERT`).
///
/// ```
/// use dfdx_flows::layers::{ChannelMask, MaskKind};
/// assert_eq!(ChannelMask::<false>::values::<4, 1, 1>(), vec![1.0, 1.0, 0.0, 0.0]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ChannelMask<const INVERT: bool>;

impl<const INVERT: bool> MaskKind for ChannelMask<INVERT> {
    type Shape<const C: usize, const H: usize, const W: usize> = Rank4<1, C, 1, 1>;
    const NAME: &'static str = if INVERT {
        "channel, inverted"
    } else {
        "channel"
    };

    fn values<const C: usize, const H: usize, const W: usize>() -> Vec<f64> {
        (0..C)
            .map(|c| if c < C / 2 { 1.0 } else { 0.0 })
            .map(|v| if INVERT { 1.0 - v } else { v })
            .collect()
    }

    fn expand<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>(
        mask: &Tensor<Rank4<1, C, 1, 1>, E, D>,
        batch: usize,
    ) -> Result<Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D>, D::Err> {
        mask.clone()
            .try_reshape::<Rank1<C>>()?
            .try_broadcast_like(&(batch, Const::<C>, Const::<H>, Const::<W>))
    }
}
