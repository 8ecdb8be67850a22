//! [`Repeat`]: `K` copies of one flow step, each with its own parameters.
//!
//! ```
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! // Glow's step (ActNorm, invertible 1×1 convolution, coupling), 4 times on 4x4x4 images.
//! type Step = Chain<(
//!     ActNorm<4, 4, 4, f64, Cpu>,
//!     InvConv1x1<4, 4, 4, f64, Cpu>,
//!     ChannelCoupling<4, 4, 4, 8, false, f64, Cpu>,
//! )>;
//! type Level = Repeat<Step, 4>;
//! let dev: Cpu = Default::default();
//! let level = dev.build_module::<Level, f64>();
//! assert_eq!(level.steps.len(), 4);
//! let x = dev.sample_normal_like(&Img::<4, 4, 4>::with_batch(2));
//! let (z, _ldj) = level.try_forward(x, dev.zeros_like(&(2,)), &mut FlowCtx::default()).unwrap();
//! assert_eq!(z.shape().concrete(), [2, 4, 4, 4]);
//! ```
//!
//! A step that changes the shape cannot be repeated, and `cargo check` says so:
//!
//! ```compile_fail
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! type Level = Repeat<Chain<(ActNorm<1, 8, 8, f32, Cpu>, Squeeze<1, 8, 8>)>, 2>;
//! let dev: Cpu = Default::default();
//! let flow = ImageFlow::new(dev.build_module::<Level, f32>());
//! // error: `Repeat` needs a step whose output shape is its input shape, but this step
//! // takes 1x8x8 images (CxHxW) and outputs 4x4x4
//! let _ = flow.bpd(dev.zeros_like(&Img::<1, 8, 8>::with_batch(1)), &mut FlowCtx::default());
//! ```
use crate::dtype::FlowDtype;
use crate::error::FlowError;
use crate::flow::{Flow, FlowCtx, FlowDevice, LayerInfo, Ldj};
use crate::shape::Img;
use dfdx::prelude::*;

/// `K` steps of type `S` applied in order, each with its own parameters (tensor names `0.…` to
/// `{K-1}.…`), so that a level of Glow's 16 or 32 steps is one type. It is a flow when `S`'s
/// output shape is its input shape ([`RepeatFits`]).
#[derive(Clone, Debug)]
pub struct Repeat<S, const K: usize> {
    /// The steps, in order (density direction).
    pub steps: Vec<S>,
}

/// `S`'s output shape `Self` is its input shape `In`, so that `S` can follow itself in a
/// [`Repeat`]. Implemented for every pair of image shapes on the condition [`RepeatFits`] that
/// the two are equal; the indirection exists for the error message.
pub trait RepeatsInto<In: Shape, S>: Shape {
    /// The output of one step as the input of the next (the identity).
    fn fit<E: Dtype, D: Storage<E>, T>(x: Tensor<Self, E, D, T>) -> Tensor<In, E, D, T>;
    /// Back, for the inverse direction (the identity).
    fn unfit<E: Dtype, D: Storage<E>, T>(z: Tensor<In, E, D, T>) -> Tensor<Self, E, D, T>;
}

impl<
        S,
        const C1: usize,
        const H1: usize,
        const W1: usize,
        const C2: usize,
        const H2: usize,
        const W2: usize,
    > RepeatsInto<Img<C2, H2, W2>, S> for Img<C1, H1, W1>
where
    (): RepeatFits<S, C2, H2, W2, C1, H1, W1>,
{
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Self, E, D, T>,
    ) -> Tensor<Img<C2, H2, W2>, E, D, T> {
        <() as RepeatFits<S, C2, H2, W2, C1, H1, W1>>::fit(x)
    }
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<C2, H2, W2>, E, D, T>,
    ) -> Tensor<Self, E, D, T> {
        <() as RepeatFits<S, C2, H2, W2, C1, H1, W1>>::unfit(z)
    }
}

/// The step `S` takes `CI`×`HI`×`WI` images and outputs `CO`×`HO`×`WO`: implemented only when
/// the two shapes are equal. See [`RepeatsInto`].
#[diagnostic::on_unimplemented(
    message = "`Repeat` needs a step whose output shape is its input shape, but this step takes {CI}x{HI}x{WI} images (CxHxW) and outputs {CO}x{HO}x{WO}",
    label = "this step cannot follow itself",
    note = "the step is `{S}`",
    note = "repeat steps that keep the shape (couplings, ActNorm, InvConv1x1, a Chain of them), and put a Squeeze or Split between two Repeats"
)]
pub trait RepeatFits<
    S,
    const CI: usize,
    const HI: usize,
    const WI: usize,
    const CO: usize,
    const HO: usize,
    const WO: usize,
>
{
    /// The identity from the step's output to its input.
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Img<CO, HO, WO>, E, D, T>,
    ) -> Tensor<Img<CI, HI, WI>, E, D, T>;
    /// The identity back.
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<CI, HI, WI>, E, D, T>,
    ) -> Tensor<Img<CO, HO, WO>, E, D, T>;
}

impl<S, const C: usize, const H: usize, const W: usize> RepeatFits<S, C, H, W, C, H, W> for () {
    fn fit<E: Dtype, D: Storage<E>, T>(
        x: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Tensor<Img<C, H, W>, E, D, T> {
        x
    }
    fn unfit<E: Dtype, D: Storage<E>, T>(
        z: Tensor<Img<C, H, W>, E, D, T>,
    ) -> Tensor<Img<C, H, W>, E, D, T> {
        z
    }
}

impl<E: FlowDtype, D: FlowDevice<E>, S: TensorCollection<E, D>, const K: usize>
    TensorCollection<E, D> for Repeat<S, K>
{
    type To<E2: Dtype, D2: Device<E2>> = Repeat<S::To<E2, D2>, K>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names: Vec<String> = (0..K).map(|i| i.to_string()).collect();
        visitor.visit_fields(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| Self::module(name, move |s| &s.steps[i], move |s| &mut s.steps[i]))
                .collect::<Vec<_>>(),
            |steps| Repeat { steps },
        )
    }
}

/// Builds as itself, as [`Chain`](crate::Chain) does; whether the step fits itself is checked
/// where the repeat is used as a [`Flow`].
impl<E: FlowDtype, D: FlowDevice<E>, S, const K: usize> BuildOnDevice<D, E> for Repeat<S, K>
where
    Repeat<S, K>: TensorCollection<E, D, To<E, D> = Repeat<S, K>>,
{
    type Built = Repeat<S, K>;
}

impl<E: FlowDtype, D: FlowDevice<E>, S: Flow<E, D>, const K: usize> Flow<E, D> for Repeat<S, K>
where
    S::Out: RepeatsInto<S::In, S>,
{
    type In = S::In;
    type Out = S::In;

    fn try_forward<T: Tape<E, D>>(
        &self,
        mut x: Tensor<Self::In, E, D, T>,
        mut ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        for step in &self.steps {
            let (y, l) = step.try_forward(x, ldj, ctx)?;
            x = <S::Out as RepeatsInto<S::In, S>>::fit(y);
            ldj = l;
        }
        Ok((x, ldj))
    }

    fn try_inverse(
        &self,
        mut z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        for step in self.steps.iter().rev() {
            z = step.try_inverse(<S::Out as RepeatsInto<S::In, S>>::unfit(z), ctx)?;
        }
        Ok(z)
    }

    fn needs_initialization(&self) -> bool {
        self.steps.iter().any(|s| s.needs_initialization())
    }

    fn try_initialize(
        &mut self,
        mut x: Tensor<Self::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {
        for step in &mut self.steps {
            x = <S::Out as RepeatsInto<S::In, S>>::fit(step.try_initialize(x, ctx)?);
        }
        Ok(x)
    }

    fn name(&self) -> String {
        format!("Repeat x{K}")
    }

    fn describe(&self, layers: &mut Vec<LayerInfo>) {
        for step in &self.steps {
            step.describe(layers);
        }
    }
}
