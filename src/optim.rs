//! Adam with state we own, so that a resumed run continues exactly where it stopped.
//!
//! dfdx's `Adam` keeps its step count and moments private (docs/ARCHITECTURE.md, dfdx fact 10), so they cannot be
//! checkpointed. This one keeps them on the host in f64 (1.7 M parameters: 27 MB), in the
//! visiting order of the model's trainable tensors, and saves them by tensor name.
use crate::dtype::FlowDtype;
use crate::flow::FlowDevice;
use crate::params::named_gradients;
use dfdx::nn::tensor_collection::{RecursiveWalker, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Adam (Kingma & Ba), PyTorch's defaults: β₁ = 0.9, β₂ = 0.999, ε = 1e-8, no weight decay.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Updates applied so far.
    pub step: u64,
    /// Per trainable tensor, in visiting order: name, first and second moments.
    pub state: Vec<AdamSlot>,
}

/// The moments of one trainable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamSlot {
    /// The tensor's name in the model.
    pub name: String,
    /// First moment.
    pub m: Vec<f64>,
    /// Second moment.
    pub v: Vec<f64>,
}

/// What [`Adam::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The parameters were updated.
    Applied,
    /// A gradient was NaN or infinite: nothing was changed.
    SkippedNonFinite,
}

struct Applier<'a> {
    adam: &'a mut Adam,
    grads: std::vec::IntoIter<(String, Vec<f64>)>,
    /// Trainable tensors visited so far: the state is in visiting order, so the slot of the
    /// next tensor is at this index unless the state came from elsewhere (then by name).
    visited: usize,
}

/// Elements below which the update runs on one thread (rayon's overhead is larger).
const PARALLEL_UPDATE_MIN: usize = 1 << 14;

impl<E: FlowDtype, D: FlowDevice<E>> TensorVisitor<E, D> for Applier<'_> {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &mut Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let (name, g) = self
            .grads
            .next()
            .expect("one gradient per trainable tensor");
        let a = &mut *self.adam;
        let visited = self.visited;
        self.visited += 1;
        let index = match a.state.get(visited) {
            Some(slot) if slot.name == name => visited,
            _ => a
                .state
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| {
                    a.state.push(AdamSlot {
                        name,
                        m: vec![0.0; g.len()],
                        v: vec![0.0; g.len()],
                    });
                    a.state.len() - 1
                }),
        };
        let slot = &mut a.state[index];
        let t_step = a.step as i32;
        let (beta1, beta2, lr, eps) = (a.beta1, a.beta2, a.lr, a.eps);
        let bias1 = 1.0 - beta1.powi(t_step);
        let bias2 = 1.0 - beta2.powi(t_step);
        let mut values = vec![E::default(); g.len()];
        t.copy_into(&mut values);
        let update = |((p, m), v): ((&mut E, &mut f64), &mut f64), g: &f64| {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            let step = lr * (*m / bias1) / ((*v / bias2).sqrt() + eps);
            *p = E::from_f64(p.to_f64().unwrap() - step).unwrap();
        };
        if g.len() >= PARALLEL_UPDATE_MIN {
            values
                .par_iter_mut()
                .zip(slot.m.par_iter_mut())
                .zip(slot.v.par_iter_mut())
                .zip(g.par_iter())
                .for_each(|(p, g)| update(p, g));
        } else {
            let params = values
                .iter_mut()
                .zip(slot.m.iter_mut())
                .zip(slot.v.iter_mut());
            params.zip(&g).for_each(|(p, g)| update(p, g));
        }
        t.copy_from(&values);
        Ok(None)
    }
}

impl Adam {
    /// A fresh optimizer with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            state: Vec::new(),
        }
    }

    /// One Adam step on every trainable tensor of `model` with `grads`. If any gradient is not
    /// finite, nothing changes (not even the step count) and the outcome says so.
    pub fn update<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
        &mut self,
        model: &mut M,
        grads: &Gradients<E, D>,
    ) -> Result<UpdateOutcome, D::Err> {
        self.update_clipped(model, grads, None)
    }

    /// [`Adam::update`] with the gradients first scaled down, all by the same factor, so that
    /// their global L2 norm (over every trainable tensor) is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`); `None` does not clip.
    pub fn update_clipped<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
        &mut self,
        model: &mut M,
        grads: &Gradients<E, D>,
        max_norm: Option<f64>,
    ) -> Result<UpdateOutcome, D::Err> {
        let mut collected = named_gradients(&*model, grads)?;
        if collected
            .iter()
            .any(|(_, g)| g.iter().any(|v| !v.is_finite()))
        {
            return Ok(UpdateOutcome::SkippedNonFinite);
        }
        if let Some(max_norm) = max_norm {
            let norm = global_norm(&collected);
            if norm > max_norm {
                let scale = max_norm / norm;
                for (_, g) in &mut collected {
                    g.iter_mut().for_each(|v| *v *= scale);
                }
            }
        }
        self.step += 1;
        let mut applier = Applier {
            adam: self,
            grads: collected.into_iter(),
            visited: 0,
        };
        M::iter_tensors(&mut RecursiveWalker {
            m: model,
            f: &mut applier,
        })?;
        Ok(UpdateOutcome::Applied)
    }
}

/// The L2 norm of all gradients together.
pub fn global_norm(grads: &[(String, Vec<f64>)]) -> f64 {
    grads
        .iter()
        .flat_map(|(_, g)| g.iter())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises Σ (w − target)² with `adam` for `steps` steps from `start` and checks every
    /// step against the update rule written out by hand (PyTorch's defaults, learning rate
    /// `lr`).
    fn check_against_the_rule<const N: usize>(start: &[f64], target: f64, lr: f64, steps: i32) {
        check_clipped_against_the_rule::<N>(start, target, lr, steps, None);
    }

    /// As `check_against_the_rule`, with the gradient clipped to the global norm `max_norm`;
    /// returns the final weights.
    fn check_clipped_against_the_rule<const N: usize>(
        start: &[f64],
        target: f64,
        lr: f64,
        steps: i32,
        max_norm: Option<f64>,
    ) -> Vec<f64> {
        let dev: Cpu = Default::default();
        let mut w: Tensor<Rank1<N>, f64, Cpu> = dev.zeros();
        w.copy_from(start);
        let mut adam = Adam::new(lr);
        let (mut expect, mut m, mut v) = (start.to_vec(), vec![0.0f64; N], vec![0.0f64; N]);
        for t in 1..=steps {
            let loss = (w.leaky_trace() - target).square().sum();
            let grads = loss.backward();
            assert_eq!(
                adam.update_clipped(&mut w, &grads, max_norm).unwrap(),
                UpdateOutcome::Applied
            );
            let norm = expect
                .iter()
                .map(|e| (2.0 * (e - target)).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = max_norm.map_or(1.0, |max| (max / norm).min(1.0));
            for i in 0..N {
                let g = 2.0 * (expect[i] - target) * scale;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                expect[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
            for (got, want) in w.as_vec().iter().zip(&expect) {
                assert!((got - want).abs() < 1e-12, "step {t}: {got} vs {want}");
            }
        }
        assert_eq!(adam.step, steps as u64);
        w.as_vec()
    }

    /// Clipping scales every gradient by the same factor, only when their global norm is above
    /// the limit: Adam's first step does not change (it is scale-invariant), the later ones do.
    #[test]
    fn clipping_follows_the_rule_and_changes_the_trajectory() {
        let start = [0.0, 1.0, -2.0];
        let clipped = check_clipped_against_the_rule::<3>(&start, 3.0, 0.5, 6, Some(4.0));
        let free = check_clipped_against_the_rule::<3>(&start, 3.0, 0.5, 6, None);
        let far = check_clipped_against_the_rule::<3>(&start, 3.0, 0.5, 6, Some(1e6));
        assert!(
            clipped.iter().zip(&free).any(|(a, b)| (a - b).abs() > 1e-6),
            "{clipped:?} vs {free:?}"
        );
        assert_eq!(far, free, "a limit above every norm changes nothing");
    }

    #[test]
    fn matches_the_adam_update_rule() {
        check_against_the_rule::<2>(&[0.0, 1.0], 3.0, 0.1, 5);
    }

    /// Tensors of at least `PARALLEL_UPDATE_MIN` values take the parallel path: same rule.
    #[test]
    fn large_tensors_follow_the_same_rule() {
        const N: usize = PARALLEL_UPDATE_MIN + 5;
        let start: Vec<f64> = (0..N).map(|i| (i % 17) as f64 * 0.25).collect();
        check_against_the_rule::<N>(&start, 1.0, 0.01, 3);
    }

    #[test]
    fn skips_non_finite_gradients() {
        let dev: Cpu = Default::default();
        let mut w: Tensor<Rank1<2>, f64, Cpu> = dev.tensor([0.0, 1.0]);
        let mut adam = Adam::new(0.1);
        let loss = w.leaky_trace().ln().sum(); // d/dw ln(w) at 0 is infinite
        let grads = loss.backward();
        assert_eq!(
            adam.update(&mut w, &grads).unwrap(),
            UpdateOutcome::SkippedNonFinite
        );
        assert_eq!(w.array(), [0.0, 1.0]);
        assert_eq!(adam.step, 0);
    }
}
