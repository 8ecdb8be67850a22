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

/// Squeezing `C`×`H`×`W` images needs an even height `H`: `<() as SqueezeHeight<C, H, W>>::Half`
/// is `H / 2`.
///
/// The image shape is a parameter of the trait (rather than `Self`) so that the compiler's error
/// for an odd height prints the whole shape in numbers.
#[diagnostic::on_unimplemented(
    message = "cannot squeeze {C}x{H}x{W} images (CxHxW): the height {H} is odd",
    label = "needs an even height",
    note = "a squeeze turns each 2x2 block of pixels into 4 channels (CxHxW -> 4C x H/2 x W/2), so the height and the width must be even",
    note = "crop or pad the images to an even size, or squeeze at a level where the height is even"
)]
pub trait SqueezeHeight<const C: usize, const H: usize, const W: usize> {
    /// `H / 2`.
    type Half: dfdx::shapes::ConstDim;
}

/// Squeezing `C`×`H`×`W` images needs an even width `W`: see [`SqueezeHeight`].
#[diagnostic::on_unimplemented(
    message = "cannot squeeze {C}x{H}x{W} images (CxHxW): the width {W} is odd",
    label = "needs an even width",
    note = "a squeeze turns each 2x2 block of pixels into 4 channels (CxHxW -> 4C x H/2 x W/2), so the height and the width must be even",
    note = "crop or pad the images to an even size, or squeeze at a level where the width is even"
)]
pub trait SqueezeWidth<const C: usize, const H: usize, const W: usize> {
    /// `W / 2`.
    type Half: dfdx::shapes::ConstDim;
}

/// Squeezing `C`×`H`×`W` images makes `4 C` channels: supported for `C` up to 1024.
#[diagnostic::on_unimplemented(
    message = "cannot squeeze {C}x{H}x{W} images (CxHxW): {C} channels would become more than 4096",
    label = "too many channels to squeeze",
    note = "squeezing is supported for up to 1024 input channels"
)]
pub trait SqueezeChannels<const C: usize, const H: usize, const W: usize> {
    /// `4 C`.
    type Quadrupled: dfdx::shapes::ConstDim;
}

/// Splitting `C`×`H`×`W` images in two along the channels needs an even `C`:
/// `<() as SplitChannels<C, H, W>>::Half` is `C / 2`.
#[diagnostic::on_unimplemented(
    message = "cannot split {C}x{H}x{W} images (CxHxW) in half along the channels: {C} channels is an odd number",
    label = "needs an even number of channels",
    note = "a split keeps C/2 channels and factors out the other C/2 to the prior; squeeze first (it multiplies the channels by 4)"
)]
pub trait SplitChannels<const C: usize, const H: usize, const W: usize> {
    /// `C / 2`.
    type Half: dfdx::shapes::ConstDim;
}
