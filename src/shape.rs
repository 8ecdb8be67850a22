//! Compile-time image shapes.
//!
//! Every flow layer maps an [`Img<C, H, W>`] — a batch of `C`-channel `H`×`W` images whose batch
//! size is only known at run time — to another. The arithmetic that layers do on sizes (a squeeze
//! halves height and width and quadruples channels, a split halves channels, a coupling network
//! doubles channels) is expressed with the traits [`Halve`], [`Double`] and [`Quadruple`], which
//! are implemented for literal [`Const`] sizes only where the operation makes sense. A stack of
//! layers whose sizes do not fit is therefore a *type error*, reported by `cargo check`.
//!
//! Supported sizes: halving any even size up to 4096, doubling up to 2048 (→ 4096),
//! quadrupling up to 1024 (→ 4096).
//!
//! ```
//! use dfdx::shapes::Const;
//! use dfdx_flows::shape::{Halve, Halved, Quadrupled};
//! let _: Halved<28> = Const::<14>;
//! let _: Quadrupled<4> = Const::<16>;
//! ```
use dfdx::shapes::Const;

/// A batch of images: `(batch, channels, height, width)`, batch size dynamic.
pub type Img<const C: usize, const H: usize, const W: usize> =
    (usize, Const<C>, Const<H>, Const<W>);

/// A size that can be divided by two exactly (an even [`Const`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be halved: the size must be even",
    label = "odd size here",
    note = "squeeze needs an even height and width, split needs an even channel count"
)]
pub trait Halve {
    /// Half the size.
    type Output: dfdx::shapes::ConstDim;
}

/// A size that can be doubled (any [`Const`] up to 2048).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be doubled here: sizes up to 2048 are supported",
    label = "size out of range"
)]
pub trait Double {
    /// Twice the size.
    type Output: dfdx::shapes::ConstDim;
}

/// A size that can be multiplied by four (any [`Const`] up to 1024).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be quadrupled here: sizes up to 1024 are supported",
    label = "size out of range"
)]
pub trait Quadruple {
    /// Four times the size.
    type Output: dfdx::shapes::ConstDim;
}

/// `N / 2` as a type (only for even `N`).
pub type Halved<const N: usize> = <Const<N> as Halve>::Output;
/// `2 N` as a type.
pub type Doubled<const N: usize> = <Const<N> as Double>::Output;
/// `4 N` as a type.
pub type Quadrupled<const N: usize> = <Const<N> as Quadruple>::Output;

include!(concat!(env!("OUT_DIR"), "/dims.rs"));

/// Formats a shape with compile-time image dims as `CxHxW`, e.g. `1x28x28`.
pub fn describe_img<S: dfdx::shapes::Shape>(shape: &S) -> String {
    let dims = shape.concrete();
    let dims = dims
        .into_iter()
        .skip(1)
        .map(|d| d.to_string())
        .collect::<Vec<_>>();
    dims.join("x")
}
