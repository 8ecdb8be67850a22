//! # Writing your own flow layer
//!
//! A flow layer is a type that implements three traits: dfdx's [`TensorCollection`] (its
//! tensors), dfdx's [`BuildOnDevice`] (building it with `dev.build_module`), and
//! [`Flow`](crate::Flow) (the two directions and the log-determinant). Once it does, it stacks in
//! a [`Chain`](crate::Chain) with the library's layers, with the same compile-time shape checks,
//! trains with [`Adam`](crate::optim::Adam), saves to safetensors and runs in an
//! [`ImageFlow`](crate::ImageFlow). `examples/custom_layer.rs` is a complete program; this page
//! says what each part is for.
//!
//! ## 1. Shapes are types
//!
//! [`Flow::In`](crate::Flow::In) and [`Flow::Out`](crate::Flow::Out) are batches of images with
//! compile-time channels, height and width: [`Img<C, H, W>`](crate::shape::Img), that is
//! `(usize, Const<C>, Const<H>, Const<W>)`. Give the layer the sizes as const parameters
//! (`MyLayer<const C: usize, const H: usize, const W: usize>`); a chain then only compiles if
//! each layer's output shape is the next one's input, and the error names both layers and both
//! shapes.
//!
//! ## 2. Parameters and the tape
//!
//! dfdx records the backward pass on a *tape* that travels with a tensor. The input `x` carries
//! it (`T = OwnedTape` in training, `NoneTape` when evaluating); the layer's parameters do not.
//! Two rules follow (`docs/ARCHITECTURE.md`, dfdx facts 2 and 3):
//!
//! - A parameter must get the tape before it meets the input: `self.weight.retaped::<T>()`.
//!   An op on a tape-less tensor is not recorded, so its gradient would silently be zero
//!   (`testing::check_flow` catches this).
//! - A tape is not `Clone`: a tensor used twice needs a `retaped::<T>()` copy for each use
//!   but the last, and the tape belongs on the left operand of a binary op.
//!
//! Tensors that are not trained (masks, constants) are visited with `TensorOptions` whose
//! `do_gradient_update` is false (dfdx's `TensorOptions::detached`); trained ones get a
//! reset rule (`reset_to_zeros` makes a layer start as the identity, which keeps the first
//! steps of training stable).
//!
//! ## 3. Errors
//!
//! Both directions return [`FlowError<D::Err>`](crate::FlowError). `?` converts dfdx's device
//! errors into it, so `try_*` ops compose as usual. Check what comes from the caller (values in
//! [`FlowCtx`](crate::FlowCtx), input ranges) before changing anything, and return the matching
//! [`FlowError`](crate::FlowError) variant instead of panicking.
//!
//! ## 4. A complete layer
//!
//! A learned per-channel scale `y = x · e^{s_c}`, with `log |det J| = H·W·Σ s_c`:
//!
//! ```
//! use dfdx::prelude::*;
//! use dfdx_flows::prelude::*;
//!
//! #[derive(Clone, Debug)]
//! struct Scale<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
//!     log_scale: Tensor<(Const<C>,), E, D>,
//! }
//!
//! impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
//!     TensorCollection<E, D> for Scale<C, H, W, E, D>
//! {
//!     type To<E2: Dtype, D2: Device<E2>> = Scale<C, H, W, E2, D2>;
//!     fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
//!         visitor: &mut V,
//!     ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
//!         visitor.visit_fields(
//!             Self::tensor(
//!                 "log_scale", // the name in checkpoints
//!                 |s| &s.log_scale,
//!                 |s| &mut s.log_scale,
//!                 TensorOptions::reset_to_zeros(), // trained; starts as the identity
//!             ),
//!             |log_scale| Scale { log_scale },
//!         )
//!     }
//! }
//!
//! impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
//!     BuildOnDevice<D, E> for Scale<C, H, W, E, D>
//! {
//!     type Built = Self;
//! }
//!
//! impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
//!     Flow<E, D> for Scale<C, H, W, E, D>
//! {
//!     type In = Img<C, H, W>;
//!     type Out = Img<C, H, W>;
//!
//!     fn try_forward<T: Tape<E, D>>(
//!         &self,
//!         x: Tensor<Self::In, E, D, T>,
//!         ldj: Ldj<E, D, T>,
//!         _ctx: &mut FlowCtx<E>,
//!     ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
//!         let shape = *x.shape();
//!         // The parameter takes the tape before meeting x; one `retaped` per use.
//!         let s = self.log_scale.retaped::<T>();
//!         let per_image = s.retaped::<T>().try_sum::<Rank0, _>()?.try_mul(E::from_usize(H * W).unwrap())?;
//!         let y = x.try_mul(s.try_exp()?.try_broadcast_like(&shape)?)?;
//!         Ok((y, ldj.try_add(per_image.try_broadcast_like(&(shape.0,))?)?))
//!     }
//!
//!     fn try_inverse(
//!         &self,
//!         z: Tensor<Self::Out, E, D>,
//!         _ctx: &mut FlowCtx<E>,
//!     ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
//!         let scale = self.log_scale.clone().try_exp()?.try_broadcast_like(z.shape())?;
//!         Ok(z.try_div(scale)?)
//!     }
//!
//!     fn name(&self) -> String {
//!         "Scale".into()
//!     }
//! }
//!
//! // It stacks with the library's layers, and the shapes are checked at compile time.
//! type Model = Chain<(
//!     Dequantization<1, 4, 4>,
//!     Scale<1, 4, 4, f64, Cpu>,
//!     CheckerboardCoupling<1, 4, 4, 8, false, f64, Cpu>,
//! )>;
//! let dev = Cpu::seed_from_u64(0);
//! let model = ImageFlow::<Model>::build(&dev);
//! let images = dev.ones_like(&Img::<1, 4, 4>::with_batch(2)) * 100.0;
//! assert!(model.bpd(images, &mut FlowCtx::default()).unwrap().array() > 0.0);
//! ```
//!
//! ## 5. Testing it
//!
//! With the crate's feature `test-util` (in your dev-dependencies),
//! `dfdx_flows::testing::check_flow` runs, in `f64` on a batch you give, the
//! checks every layer of this crate passes: `inverse(forward(x)) == x`, the log-determinant
//! against a brute-force Jacobian, and each parameter's gradient against finite differences.
//! Perturb the parameters first (`testing::perturb_params`),
//! so that a layer that starts as the identity is tested as what it becomes.
//!
//! ## 6. Initialisation from data
//!
//! A layer whose parameters should be set from the first batch, as Glow's
//! [`ActNorm`](crate::layers::ActNorm) sets its shift and scale, overrides
//! [`Flow::needs_initialization`](crate::Flow::needs_initialization) and
//! [`Flow::try_initialize`](crate::Flow::try_initialize) (the defaults: nothing to do). Keep the
//! "initialised" flag in a detached tensor of the layer, as `ActNorm` does, so that checkpoints
//! carry it and a loaded model is not initialised again. The trainer initialises a fresh run;
//! in a loop of your own, call [`ImageFlow::initialize`](crate::ImageFlow::initialize) on the
//! first batch.
//!
//! [`TensorCollection`]: dfdx::nn::TensorCollection
//! [`BuildOnDevice`]: dfdx::nn::BuildOnDevice
