//! Your own flow layer: an invertible leaky ReLU with a learned slope per channel, written
//! outside the library, chained between library layers, checked with
//! `dfdx_flows::testing::check_flow`, trained a few steps with the library's Adam, and
//! inverted exactly.
//!
//! ```text
//! cargo run --release --example custom_layer
//! ```
//!
//! The guide to what each part is for is the rustdoc of `dfdx_flows::guide`.
use dfdx::prelude::*;
use dfdx_flows::optim::Adam;
use dfdx_flows::prelude::*;
use dfdx_flows::testing::{check_flow, perturb_params};

/// `y = x` for `x ≥ 0`, `y = e^{a_c} · x` for `x < 0`, with one learned `a_c` per channel:
/// invertible because the slope `e^{a_c}` is positive, with `log |det J| = Σ a_c` over the
/// negative inputs.
#[derive(Clone, Debug)]
pub struct LeakyRelu<const C: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
    /// The log of each channel's slope below zero; starts at 0 (the identity).
    pub log_slope: Tensor<(Const<C>,), E, D>,
}

// 1. Its tensors: names for checkpoints, and which ones the optimizer trains.
impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    TensorCollection<E, D> for LeakyRelu<C, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = LeakyRelu<C, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "log_slope",
                |s| &s.log_slope,
                |s| &mut s.log_slope,
                TensorOptions::reset_to_zeros(),
            ),
            |log_slope| LeakyRelu { log_slope },
        )
    }
}

// 2. Building it on a device (`dev.build_module`, `ImageFlow::build`).
impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>>
    BuildOnDevice<D, E> for LeakyRelu<C, H, W, E, D>
{
    type Built = Self;
}

// 3. The flow itself: typed input and output shapes, both directions.
impl<const C: usize, const H: usize, const W: usize, E: FlowDtype, D: FlowDevice<E>> Flow<E, D>
    for LeakyRelu<C, H, W, E, D>
{
    type In = Img<C, H, W>;
    type Out = Img<C, H, W>;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {
        let shape = *x.shape();
        // The parameter gets the tape before it meets x (`retaped`): an op on a tape-less
        // tensor is not recorded, and its gradient would be lost. One `retaped` per use.
        let log_slope = self.log_slope.retaped::<T>().try_broadcast_like(&shape)?;
        let negative = x.retaped::<NoneTape>().try_lt(E::zero())?;
        let dev = x.device().clone();
        let indicator =
            negative.try_choose(dev.try_ones_like(&shape)?, dev.try_zeros_like(&shape)?)?;
        let positive_part = x.retaped::<T>().try_relu()?;
        let negative_part = x.try_sub(positive_part.retaped::<T>())?;
        let y =
            positive_part.try_add(negative_part.try_mul(log_slope.retaped::<T>().try_exp()?)?)?;
        let layer_ldj = log_slope
            .try_mul(indicator)?
            .try_sum::<(usize,), Axes3<1, 2, 3>>()?;
        Ok((y, ldj.try_add(layer_ldj)?))
    }

    fn try_inverse(
        &self,
        y: Tensor<Self::Out, E, D>,
        _ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {
        let shape = *y.shape();
        let slope = self
            .log_slope
            .clone()
            .try_exp()?
            .try_broadcast_like(&shape)?;
        let positive_part = y.clone().try_relu()?;
        let negative_part = y.try_sub(positive_part.clone())?;
        Ok(positive_part.try_add(negative_part.try_div(slope)?)?)
    }

    fn name(&self) -> String {
        "LeakyRelu".into()
    }
}

/// Between library layers: the chain checks every shape at compile time, yours included.
pub type Model = Chain<(
    Dequantization<1, 8, 8>,
    LeakyRelu<1, 8, 8, f64, Cpu>,
    CheckerboardCoupling<1, 8, 8, 16, false, f64, Cpu>,
    LeakyRelu<1, 8, 8, f64, Cpu>,
    CheckerboardCoupling<1, 8, 8, 16, true, f64, Cpu>,
)>;

/// What [`run`] measured.
#[derive(Debug)]
pub struct Report {
    /// `check_flow` on the layer alone (perturbed slopes, random input).
    pub check: dfdx_flows::testing::FlowCheck,
    /// Mean bits per dimension of the training batch before and after training.
    pub bpd_before: f64,
    /// After the Adam steps.
    pub bpd_after: f64,
    /// How far the first layer's slopes moved.
    pub slope_change: f64,
    /// Largest `|inverse(forward(x)) − x|` of the trained model on the batch (pixel values).
    pub round_trip: f64,
}

/// Images of 8×8 bright bars on a dark background: a toy distribution to learn.
fn toy_images(dev: &Cpu, n: usize) -> Tensor<Img<1, 8, 8>, f64, Cpu> {
    let values = (0..n * 64)
        .map(|i| {
            let (img, pixel) = (i / 64, i % 64);
            let bar = pixel % 8 == img % 8;
            if bar {
                200.0 + (pixel % 5) as f64
            } else {
                (pixel * 7 % 20) as f64
            }
        })
        .collect();
    dev.tensor_from_vec(values, Img::<1, 8, 8>::with_batch(n))
}

/// Checks the layer, trains the chain for `steps` Adam steps, and inverts it.
pub fn run(steps: usize) -> Result<Report, Box<dyn std::error::Error>> {
    let dev = Cpu::seed_from_u64(0);

    // The layer alone, with slopes off 1 so that it is not the identity.
    let mut layer = dev.build_module::<LeakyRelu<2, 3, 3, f64, Cpu>, f64>();
    perturb_params(&mut layer, 0.5)?;
    let x = dev.sample_normal_like(&Img::<2, 3, 3>::with_batch(2));
    let check = check_flow(&layer, &x)?;

    let mut model = ImageFlow::<Model>::build(&dev);
    let mut adam = Adam::new(1e-2);
    let batch = toy_images(&dev, 16);
    let slopes_before = model.flows.0 .1.log_slope.as_vec();
    // Fixed dequantization noise, so that the two evaluations compare like with like.
    let eval_noise = dev.sample_uniform_like(&(16 * 64,)).as_vec();
    let bpd = |model: &ImageFlow<Model>| -> Result<f64, FlowError<CpuError>> {
        let ctx = &mut FlowCtx::with_noise(eval_noise.clone());
        Ok(model.bpd(batch.clone(), ctx)?.array())
    };
    let bpd_before = bpd(&model)?;
    let mut grads = model.alloc_grads();
    for _ in 0..steps {
        let loss = model.bpd(batch.clone().traced(grads), &mut FlowCtx::default())?;
        grads = loss.backward();
        adam.update(&mut model, &grads)?;
        model.zero_grads(&mut grads);
    }
    let bpd_after = bpd(&model)?;
    let slope_change = model
        .flows
        .0
         .1
        .log_slope
        .as_vec()
        .iter()
        .zip(&slopes_before)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);

    // Exact inversion: encode, decode, compare pixels.
    let mut ctx = FlowCtx::recording();
    let (z, _) = model.encode(batch.clone(), &mut ctx)?;
    let back = model.sample(&dev, 16, Some(z), &mut ctx)?;
    let round_trip = back
        .as_vec()
        .iter()
        .zip(batch.as_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    Ok(Report {
        check,
        bpd_before,
        bpd_after,
        slope_change,
        round_trip,
    })
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = run(30)?;
    println!(
        "check_flow: round trip {:.1e}, log-det error {:.1e}, gradient error {:.1e} ({} entries)",
        report.check.round_trip,
        report.check.log_det,
        report.check.gradient,
        report.check.gradients_checked
    );
    println!(
        "30 Adam steps: {:.3} -> {:.3} bits per dimension; slopes moved by up to {:.3}",
        report.bpd_before, report.bpd_after, report.slope_change
    );
    println!(
        "inverse(forward(x)) - x: {:.1e} (pixel values)",
        report.round_trip
    );
    Ok(())
}
