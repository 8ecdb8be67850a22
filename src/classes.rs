//! Class labels for class-conditional flows.
//!
//! A class-conditional model is an [`ImageFlow<F, K>`](crate::ImageFlow) whose `K` is its
//! number of classes; its methods take the labels as [`Labels<K>`] (or one-hot tensors with `K`
//! columns), so labels for another number of classes do not compile. Inside the flow the labels
//! travel with the batch in [`FlowCtx::classes`](crate::FlowCtx::classes) as a [`ClassBatch`],
//! where class-conditional layers ([`ClassPrior`](crate::layers::ClassPrior),
//! [`ClassSplitPrior`](crate::layers::ClassSplitPrior),
//! [`ClassGlowCoupling`](crate::layers::ClassGlowCoupling)) read them with
//! [`FlowCtx::class_labels`](crate::FlowCtx::class_labels).
//!
//! Why the context and not a second input of every layer: the labels are per batch, not per
//! layer, and most layers ignore them, so the [`Flow`](crate::Flow) trait stays as it is and a
//! chain of conditional and unconditional layers is an ordinary [`Chain`](crate::Chain). The
//! number of classes is still checked twice: at compile time where the labels enter
//! ([`Labels<K>`] against the model's `K`), and by each conditional layer against its own `K`
//! (an error naming both, before anything is computed).
use crate::dtype::FlowDtype;
use dfdx::prelude::*;
use std::fmt;

/// The class of each image of a batch, each in `0..K`, for a model conditioned on `K` classes.
///
/// ```
/// use dfdx_flows::classes::Labels;
///
/// let digits = Labels::<10>::new(vec![3, 1, 4]).unwrap();
/// assert_eq!(digits.as_slice(), &[3, 1, 4]);
/// assert!(Labels::<10>::new(vec![10]).is_err()); // only 0..=9
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels<const K: usize> {
    labels: Vec<usize>,
}

/// A label outside `0..K`, or a one-hot row that is not one-hot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// `label` (at `index`) is not one of the `classes` classes `0..classes`.
    OutOfRange {
        /// Position of the label.
        index: usize,
        /// The label found.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// Row `row` of a one-hot tensor does not hold exactly one 1 and otherwise 0.
    NotOneHot {
        /// The row.
        row: usize,
    },
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::OutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at index {index} is not a class of this model (0..={})",
                classes.saturating_sub(1)
            ),
            LabelError::NotOneHot { row } => write!(
                f,
                "row {row} of the one-hot labels is not one 1 and otherwise 0"
            ),
        }
    }
}

impl std::error::Error for LabelError {}

impl<const K: usize> Labels<K> {
    /// The labels, each checked to be in `0..K`.
    pub fn new(labels: Vec<usize>) -> Result<Self, LabelError> {
        match labels.iter().position(|&l| l >= K) {
            Some(index) => Err(LabelError::OutOfRange {
                index,
                label: labels[index],
                classes: K,
            }),
            None => Ok(Self { labels }),
        }
    }

    /// `n` images of class `class`.
    pub fn repeat(class: usize, n: usize) -> Result<Self, LabelError> {
        Self::new(vec![class; n])
    }

    /// Labels as MNIST's label files hold them (one byte each).
    pub fn from_bytes(labels: &[u8]) -> Result<Self, LabelError> {
        Self::new(labels.iter().map(|&l| usize::from(l)).collect())
    }

    /// The labels of one-hot rows: `K` columns, each row one 1 and otherwise 0.
    pub fn from_one_hot<E: FlowDtype, D: Device<E>>(
        one_hot: &Tensor<(usize, Const<K>), E, D>,
    ) -> Result<Self, LabelError> {
        if one_hot.shape().0 == 0 {
            // dfdx 0.13's `as_vec` fails on an empty tensor.
            return Ok(Self { labels: Vec::new() });
        }
        let values = one_hot.as_vec();
        let labels = values
            .chunks(K.max(1))
            .enumerate()
            .map(|(row, r)| {
                let ones: Vec<usize> = (0..r.len()).filter(|&i| r[i] == E::one()).collect();
                let zeros = r.iter().filter(|&&v| v == E::zero()).count();
                match ones.as_slice() {
                    [class] if zeros + 1 == K => Ok(*class),
                    _ => Err(LabelError::NotOneHot { row }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { labels })
    }

    /// The labels.
    pub fn as_slice(&self) -> &[usize] {
        &self.labels
    }

    /// The number of labels (images).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The class labels a [`FlowCtx`](crate::FlowCtx) carries to the class-conditional layers of a
/// flow: the number of classes they are for and one label per image. Made from [`Labels`], so
/// every label is in range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassBatch {
    classes: usize,
    labels: Vec<usize>,
}

impl<const K: usize> From<Labels<K>> for ClassBatch {
    fn from(labels: Labels<K>) -> Self {
        Self {
            classes: K,
            labels: labels.labels,
        }
    }
}

impl<const K: usize> From<&Labels<K>> for ClassBatch {
    fn from(labels: &Labels<K>) -> Self {
        labels.clone().into()
    }
}

impl ClassBatch {
    /// The number of classes the labels are for.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// One label per image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The labels of images `start..start + len` (for checks that run images one at a time).
    pub fn slice(&self, start: usize, len: usize) -> Self {
        Self {
            classes: self.classes,
            labels: self.labels[start.min(self.labels.len())..]
                .iter()
                .take(len)
                .copied()
                .collect(),
        }
    }
}

/// The rows `labels` of a per-class table `(K, N)` as a batch `(batch, N)`, with the tape `T`
/// (the gradient of each row goes to the table's row of that class).
pub(crate) fn class_rows<const K: usize, const N: usize, E, D, T>(
    table: &Tensor<Rank2<K, N>, E, D>,
    labels: &[usize],
) -> Result<Tensor<(usize, Const<N>), E, D, T>, D::Err>
where
    E: FlowDtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let index = table
        .device()
        .try_tensor_from_vec(labels.to_vec(), (labels.len(),))?;
    table.retaped::<T>().try_gather(index)
}
