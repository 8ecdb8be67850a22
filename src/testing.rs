//! Helpers for testing flows, one's own layers included (feature `test-util`).
//!
//! [`check_flow`] runs the three checks every flow layer should pass, in `f64` on a small
//! batch: the inverse undoes the forward pass, the log-determinant equals the one of a
//! brute-force Jacobian, and every parameter's gradient matches finite differences.
//! [`perturb_params`] moves parameters off their initial values first, so that layers that
//! start as the identity (a coupling's zero-initialised last convolution) are tested as what
//! they become.
//!
//! Add the feature in your crate's dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! dfdx-flows = { version = "0.1", default-features = false, features = ["test-util"] }
//! ```
use crate::classes::ClassBatch;
use crate::dtype::FlowDtype;
use crate::flow::{Flow, FlowCtx, FlowDevice, ImgShape};
use crate::params::named_gradients;
use dfdx::nn::tensor_collection::{RecursiveWalker, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;
use rand_distr::Uniform;

/// Adds `U(−scale, scale)` noise to every trainable tensor, so that zero-initialised layers
/// (each coupling's final convolution) stop being the identity. For tests and fixtures.
pub fn perturb_params<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    model: &mut M,
    scale: f64,
) -> Result<(), D::Err> {
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut Perturb { scale },
    })?;
    Ok(())
}

struct Perturb {
    scale: f64,
}

impl<E: FlowDtype, D: FlowDevice<E>> TensorVisitor<E, D> for Perturb {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &mut Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
        if opts.do_gradient_update {
            let s = E::from_f64(self.scale).unwrap();
            let noise = t.device().try_sample_like(t.shape(), Uniform::new(-s, s))?;
            *t = t.clone().try_add(noise)?;
        }
        Ok(None)
    }
}

/// Tolerances and effort of [`check_flow_with`]; [`Default`] gives [`check_flow`]'s.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Largest `|inverse(forward(x)) − x|` accepted (default `1e-9`).
    pub round_trip: f64,
    /// Largest relative difference `|ldj − brute| / max(1, |brute|)` between the
    /// log-determinant and the brute-force one (default `1e-6`). The brute-force Jacobian
    /// takes central differences with step `1e-5`.
    pub log_det: f64,
    /// Largest relative difference between a parameter's gradient and its central difference
    /// (default `1e-5`).
    pub gradient: f64,
    /// Entries checked per parameter tensor (default 4, spread over the tensor).
    pub entries_per_tensor: usize,
    /// Whether to compare the log-determinant with a brute-force Jacobian (default `true`).
    /// Needs as many output values as input values; turn it off for a layer whose input is
    /// discrete (a dequantization layer).
    pub log_det_check: bool,
    /// The class of each image of the batch, for a class-conditional layer (default `None`);
    /// every pass gets the labels of the images it runs.
    pub classes: Option<ClassBatch>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            round_trip: 1e-9,
            log_det: 1e-6,
            gradient: 1e-5,
            entries_per_tensor: 4,
            log_det_check: true,
            classes: None,
        }
    }
}

/// What [`check_flow`] measured (each at or under its tolerance when it returns `Ok`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowCheck {
    /// Largest `|inverse(forward(x)) − x|`.
    pub round_trip: f64,
    /// Largest relative error of the log-determinant (0 if not checked).
    pub log_det: f64,
    /// Largest relative error of a parameter gradient (0 for a layer without parameters).
    pub gradient: f64,
    /// Parameter entries whose gradient was checked.
    pub gradients_checked: usize,
}

/// Checks a flow layer (or a whole flow) on the batch `x`, in `f64`, with
/// [`CheckOptions::default`]: see [`check_flow_with`].
///
/// ```
/// use dfdx::prelude::*;
/// use dfdx_flows::prelude::*;
/// use dfdx_flows::testing::{check_flow, perturb_params};
///
/// let dev = Cpu::seed_from_u64(0);
/// let mut layer = dev.build_module::<CheckerboardCoupling<1, 4, 4, 4, false, f64, Cpu>, f64>();
/// perturb_params(&mut layer, 0.3).unwrap();
/// let x = dev.sample_normal_like(&Img::<1, 4, 4>::with_batch(2));
/// let report = check_flow(&layer, &x).unwrap();
/// assert!(report.round_trip < 1e-9 && report.gradients_checked > 0);
/// ```
pub fn check_flow<F, D>(flow: &F, x: &Tensor<F::In, f64, D>) -> Result<FlowCheck, String>
where
    F: Flow<f64, D> + Clone,
    D: FlowDevice<f64>,
{
    check_flow_with(flow, x, &CheckOptions::default())
}

/// Checks a flow layer on the batch `x`, in `f64`:
///
/// 1. `inverse(forward(x)) == x` within `opts.round_trip` (latents that split layers take off
///    are recorded and handed back);
/// 2. each image's log-determinant against `log |det J|` of a brute-force Jacobian (central
///    differences), within `opts.log_det`;
/// 3. the gradient of `L = Σ z·w + Σ ldj` (fixed random `w`) with respect to
///    `opts.entries_per_tensor` entries of every trainable tensor against central differences,
///    within `opts.gradient`.
///
/// Every pass gets the same dequantization noise (0.5), so layers that draw noise are
/// deterministic here. Returns what was measured, or a message that names the failed check.
pub fn check_flow_with<F, D>(
    flow: &F,
    x: &Tensor<F::In, f64, D>,
    opts: &CheckOptions,
) -> Result<FlowCheck, String>
where
    F: Flow<f64, D> + Clone,
    D: FlowDevice<f64>,
{
    let dev = x.device().clone();
    let batch = x.shape().concrete()[0];
    let (n_in, n_out) = (F::In::NUMEL, F::Out::NUMEL);
    if batch == 0 {
        return Err("check_flow needs at least one image".into());
    }
    let xs = x.as_vec();
    // The context of a pass over images `start..start + batch` of `x`.
    let ctx = |start: usize, batch: usize| FlowCtx {
        dequant_noise: Some(vec![0.5; batch * n_in]),
        record_latents: true,
        classes: opts.classes.as_ref().map(|c| c.slice(start, batch)),
        ..FlowCtx::default()
    };
    let fail = |what: &'static str| move |e: crate::FlowError<D::Err>| format!("{what}: {e}");
    let forward =
        |f: &F, values: &[f64], start: usize, n: usize| -> Result<(Vec<f64>, Vec<f64>), String> {
            let x = dev
                .try_tensor_from_vec(values.to_vec(), F::In::with_batch(n))
                .map_err(|e| format!("{e}"))?;
            let ldj = dev.try_zeros_like(&(n,)).map_err(|e| format!("{e}"))?;
            let (z, ldj) = f
                .try_forward(x, ldj, &mut ctx(start, n))
                .map_err(fail("forward"))?;
            Ok((z.as_vec(), ldj.as_vec()))
        };
    let mut report = FlowCheck::default();

    // 1. Round trip, with the split-off latents handed back.
    let mut recorded = ctx(0, batch);
    let zero = dev.try_zeros_like(&(batch,)).map_err(|e| format!("{e}"))?;
    let (z, ldj) = flow
        .try_forward(x.clone(), zero, &mut recorded)
        .map_err(fail("forward"))?;
    let (zs, ldjs) = (z.as_vec(), ldj.as_vec());
    let back = flow
        .try_inverse(z, &mut recorded)
        .map_err(fail("inverse"))?
        .as_vec();
    report.round_trip = max_abs_diff(&back, &xs);
    if report.round_trip.is_nan() || report.round_trip > opts.round_trip {
        return Err(format!(
            "inverse(forward(x)) differs from x by {:e} (tolerance {:e})",
            report.round_trip, opts.round_trip
        ));
    }

    // 2. Log-determinant against the brute-force Jacobian, image by image.
    if opts.log_det_check {
        if n_in != n_out {
            return Err(format!(
                "the log-determinant check needs as many outputs as inputs per image \
                 ({n_out} vs {n_in}); turn it off with `log_det_check: false`"
            ));
        }
        for b in 0..batch {
            let image = &xs[b * n_in..(b + 1) * n_in];
            let mut jac = vec![0.0; n_in * n_in];
            let h = 1e-5;
            for j in 0..n_in {
                let (mut plus, mut minus) = (image.to_vec(), image.to_vec());
                plus[j] += h;
                minus[j] -= h;
                let (zp, _) = forward(flow, &plus, b, 1)?;
                let (zm, _) = forward(flow, &minus, b, 1)?;
                for i in 0..n_in {
                    jac[i * n_in + j] = (zp[i] - zm[i]) / (2.0 * h);
                }
            }
            let brute = log_abs_det(jac, n_in);
            let err = (ldjs[b] - brute).abs() / brute.abs().max(1.0);
            report.log_det = report.log_det.max(err);
            if err.is_nan() || err > opts.log_det {
                return Err(format!(
                    "image {b}: log-determinant {} but the brute-force Jacobian gives {brute} \
                     (relative error {err:e}, tolerance {:e})",
                    ldjs[b], opts.log_det
                ));
            }
        }
    }

    // 3. Parameter gradients against central differences.
    let weights: Vec<f64> = {
        let w: Tensor<(usize,), f64, D> =
            crate::prior::standard_normal(&dev, &(zs.len(),)).map_err(|e| format!("{e}"))?;
        w.as_vec()
    };
    let loss = |f: &F| -> Result<f64, String> {
        let (z, ldj) = forward(f, &xs, 0, batch)?;
        Ok(z.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>() + ldj.iter().sum::<f64>())
    };
    let grads = {
        let mut grads = flow.try_alloc_grads().map_err(|e| format!("{e}"))?;
        let xt = x.clone().traced(grads);
        let ldj = dev
            .try_zeros_like(&(batch,))
            .map_err(|e| format!("{e}"))?
            .retaped::<OwnedTape<f64, D>>();
        let (z, ldj) = flow
            .try_forward(xt, ldj, &mut ctx(0, batch))
            .map_err(fail("forward"))?;
        let w = dev
            .try_tensor_from_vec(weights.clone(), F::Out::with_batch(batch))
            .map_err(|e| format!("{e}"))?;
        let objective = z
            .try_mul(w)
            .and_then(|zw| zw.try_sum::<Rank0, _>())
            .and_then(|a| a.try_add(ldj.try_sum::<Rank0, _>()?))
            .map_err(|e| format!("{e}"))?;
        grads = objective.try_backward().map_err(|e| format!("{e}"))?;
        named_gradients(flow, &grads).map_err(|e| format!("{e}"))?
    };
    for (tensor, (name, analytic)) in grads.iter().enumerate() {
        let n = analytic.len();
        let mut entries: Vec<usize> = (0..opts.entries_per_tensor)
            .map(|k| k * n.saturating_sub(1) / opts.entries_per_tensor.saturating_sub(1).max(1))
            .collect();
        entries.dedup();
        for index in entries.into_iter().filter(|&i| i < n) {
            let h = 1e-6;
            let nudged = |delta: f64| -> Result<f64, String> {
                let mut f = flow.clone();
                F::iter_tensors(&mut RecursiveWalker {
                    m: &mut f,
                    f: &mut Nudge {
                        tensor,
                        seen: 0,
                        index,
                        delta,
                    },
                })
                .map_err(|e| format!("{e}"))?;
                loss(&f)
            };
            let numeric = (nudged(h)? - nudged(-h)?) / (2.0 * h);
            let err = (analytic[index] - numeric).abs()
                / analytic[index].abs().max(numeric.abs()).max(1.0);
            report.gradient = report.gradient.max(err);
            report.gradients_checked += 1;
            if err.is_nan() || err > opts.gradient {
                return Err(format!(
                    "gradient of `{name}`[{index}]: {} but finite differences give {numeric} \
                     (relative error {err:e}, tolerance {:e})",
                    analytic[index], opts.gradient
                ));
            }
        }
    }
    Ok(report)
}

/// Adds `delta` to one entry of the `tensor`-th trainable tensor.
struct Nudge {
    tensor: usize,
    seen: usize,
    index: usize,
    delta: f64,
}

impl<D: FlowDevice<f64>> TensorVisitor<f64, D> for Nudge {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = f64;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f64, D>,
        t: &mut Tensor<S, f64, D>,
    ) -> Result<Option<Tensor<S, f64, D>>, Self::Err> {
        if opts.do_gradient_update {
            if self.seen == self.tensor {
                let mut values = t.as_vec();
                values[self.index] += self.delta;
                *t = t.device().try_tensor_from_vec(values, *t.shape())?;
            }
            self.seen += 1;
        }
        Ok(None)
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() { f64::NAN } else { m.max(d) })
}

/// `log |det A|` of the `n×n` row-major matrix `a`, by LU decomposition with partial pivoting.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut log_det = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        if a[pivot * n + col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..n {
                a.swap(col * n + k, pivot * n + k);
            }
        }
        let p = a[col * n + col];
        log_det += p.abs().ln();
        for row in col + 1..n {
            let factor = a[row * n + col] / p;
            for k in col..n {
                a[row * n + k] -= factor * a[col * n + k];
            }
        }
    }
    log_det
}
