//! What the trainer learns from and validates on: images, and for a class-conditional model
//! the class of each.
use super::TrainError;
use crate::classes::{ClassBatch, Labels};

/// Images for [`train`](super::train) and [`evaluate_bpd`](super::evaluate_bpd): pixel values
/// `0..=255`, image after image, and for a class-conditional model
/// ([`ImageFlow<F, K>`](crate::ImageFlow) with `K > 0` classes) one label per image.
///
/// `&[u8]` and `&Vec<u8>` convert into unlabelled images, which is all an unconditional model
/// needs; [`Images::labelled`] pairs pixels with labels (an unconditional model ignores them).
///
/// ```
/// use dfdx_flows::train::Images;
/// let pixels = vec![0u8; 2 * 784];
/// let labels = vec![3u8, 7];
/// let plain: Images = (&pixels).into();
/// let with_classes = Images::labelled(&pixels, &labels);
/// assert_eq!(with_classes.labels, Some(&labels[..]));
/// assert!(plain.labels.is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Images<'a> {
    /// Pixel values `0..=255`, image after image.
    pub pixels: &'a [u8],
    /// The class of each image (`0..K`), or `None`.
    pub labels: Option<&'a [u8]>,
}

impl<'a> Images<'a> {
    /// Images without labels.
    pub fn unlabelled(pixels: &'a [u8]) -> Self {
        Self {
            pixels,
            labels: None,
        }
    }

    /// Images with the class of each (checked when training starts: one label per image, each
    /// below the model's number of classes).
    pub fn labelled(pixels: &'a [u8], labels: &'a [u8]) -> Self {
        Self {
            pixels,
            labels: Some(labels),
        }
    }

    /// The first `n` images (and their labels), all of them if there are fewer.
    pub(crate) fn first(self, n: usize, numel: usize) -> Self {
        let n = n.min(self.pixels.len() / numel.max(1));
        Self {
            pixels: &self.pixels[..n * numel],
            labels: self.labels.map(|l| &l[..n.min(l.len())]),
        }
    }

    /// Checks, before any work, that a model on `K` classes has what it needs: for `K > 0` one
    /// label per image, each below `K`. `what` names the images in the error ("training").
    pub(crate) fn check_labels<const K: usize>(
        &self,
        numel: usize,
        what: &str,
    ) -> Result<(), TrainError> {
        if K == 0 {
            return Ok(());
        }
        let images = self.pixels.len() / numel.max(1);
        let Some(labels) = self.labels else {
            return Err(TrainError::Data(format!(
                "the model is conditioned on {K} classes, but the {what} images have no labels: \
                 give them with `Images::labelled(pixels, labels)`"
            )));
        };
        if labels.len() != images {
            return Err(TrainError::Data(format!(
                "{} labels for {images} {what} images: give one label per image",
                labels.len()
            )));
        }
        if let Some((i, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= K)
        {
            return Err(TrainError::Data(format!(
                "label {label} of {what} image {i} is not a class of this model (0..{K})"
            )));
        }
        Ok(())
    }

    /// The classes of the images `indices` for a model on `K` classes, to put in the batch's
    /// [`FlowCtx`](crate::FlowCtx); `None` for an unconditional model (`K = 0`).
    pub(crate) fn classes_of<const K: usize>(
        &self,
        indices: impl IntoIterator<Item = usize>,
    ) -> Result<Option<ClassBatch>, TrainError> {
        if K == 0 {
            return Ok(None);
        }
        let labels = self.labels.unwrap_or(&[]);
        let batch: Vec<usize> = indices
            .into_iter()
            .map(|i| labels.get(i).map_or(K, |&l| usize::from(l)))
            .collect();
        // `check_labels` ran first; a failure here is a bug, reported rather than panicking.
        Labels::<K>::new(batch)
            .map(|l| Some(l.into()))
            .map_err(|e| TrainError::Data(e.to_string()))
    }
}

impl<'a> From<&'a [u8]> for Images<'a> {
    fn from(pixels: &'a [u8]) -> Self {
        Self::unlabelled(pixels)
    }
}

impl<'a> From<&'a Vec<u8>> for Images<'a> {
    fn from(pixels: &'a Vec<u8>) -> Self {
        Self::unlabelled(pixels)
    }
}
