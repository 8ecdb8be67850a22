//! Walking a model's tensors: names and shapes, gradients by name.
use crate::dtype::FlowDtype;
use crate::flow::FlowDevice;
use dfdx::nn::tensor_collection::{RecursiveWalker, TensorVisitor, ViewTensorName, ViewTensorRef};
use dfdx::prelude::*;

/// One named tensor of a model: its checkpoint name, shape, and whether it is trained.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorEntry {
    /// Name, equal to the PyTorch `state_dict` key, e.g. `flows.1.network.nn.0.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// `false` for buffers such as coupling masks.
    pub trainable: bool,
}

struct NameCollector(Vec<TensorEntry>);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for NameCollector {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
        self.0.push(TensorEntry {
            name,
            shape: t.shape().concrete().into_iter().collect(),
            trainable: opts.do_gradient_update,
        });
        Ok(None)
    }
}

/// Lists every tensor of a model (parameters and buffers) in visiting order.
///
/// ```
/// use dfdx::prelude::*;
/// use dfdx_flows::{params::tensor_entries, prelude::*};
/// let dev: Cpu = Default::default();
/// let model = simple_flow::<f32, _>(&dev).unwrap();
/// let names = tensor_entries(&model);
/// assert!(names.iter().any(|t| t.name == "flows.8.network.nn.8.bias" && t.shape == [2]));
/// ```
pub fn tensor_entries<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    model: &M,
) -> Vec<TensorEntry> {
    let mut collector = NameCollector(Vec::new());
    let walked = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut collector,
    });
    walked.expect("listing tensors does not allocate");
    collector.0
}

struct GradCollector<'a, E: Dtype, D: Storage<E>> {
    grads: &'a Gradients<E, D>,
    out: Vec<(String, Vec<f64>)>,
}

impl<E: FlowDtype, D: FlowDevice<E>> TensorVisitor<E, D> for GradCollector<'_, E, D> {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
        if opts.do_gradient_update {
            // `copy_into` copies the storage (parameters and their gradients are contiguous);
            // `as_vec` would walk the tensor index by index.
            let mut g = vec![E::default(); t.shape().num_elements()];
            self.grads.get(t).copy_into(&mut g);
            self.out
                .push((name, g.into_iter().map(|v| v.to_f64().unwrap()).collect()));
        }
        Ok(None)
    }
}

/// The gradient of every trainable tensor of `model` in `grads`, by checkpoint name, as f64,
/// in visiting order (what [`Adam`](crate::optim::Adam) updates with; also for comparing
/// gradients with another implementation's).
pub fn named_gradients<E: FlowDtype, D: FlowDevice<E>, M: TensorCollection<E, D>>(
    model: &M,
    grads: &Gradients<E, D>,
) -> Result<Vec<(String, Vec<f64>)>, D::Err> {
    let mut collector = GradCollector {
        grads,
        out: Vec::new(),
    };
    M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut collector,
    })?;
    Ok(collector.out)
}
