//! A nearest-class-mean classifier on pixels: `eval` asks it which class a class-conditional
//! model's samples look like, as a check that "draw me a 7" draws something nearer the training
//! 7s than the other digits. A deliberately simple judge (on MNIST's test images it is right
//! about four times in five), so that its verdict does not depend on a second trained model.

/// The mean image of each class of a labelled image set.
#[derive(Clone, Debug)]
pub struct NearestClassMean {
    /// `means[c]`: the mean pixel values of the images of class `c`.
    means: Vec<Vec<f64>>,
}

impl NearestClassMean {
    /// The class means of `pixels` (`labels.len()` images of equal size, one after the other)
    /// for classes `0..classes`. An error, not a panic, when the lengths do not fit, a label is
    /// `classes` or more, or a class has no image.
    pub fn fit(pixels: &[u8], labels: &[u8], classes: usize) -> Result<Self, String> {
        if labels.is_empty() || !pixels.len().is_multiple_of(labels.len()) {
            return Err(format!(
                "{} pixel values do not divide into {} images",
                pixels.len(),
                labels.len()
            ));
        }
        let size = pixels.len() / labels.len();
        let mut sums = vec![vec![0.0f64; size]; classes];
        let mut counts = vec![0usize; classes];
        for (image, &label) in pixels.chunks(size).zip(labels) {
            let class = usize::from(label);
            let sum = sums.get_mut(class).ok_or_else(|| {
                format!("label {label} is not one of the {classes} classes 0..{classes}")
            })?;
            for (s, &p) in sum.iter_mut().zip(image) {
                *s += f64::from(p);
            }
            counts[class] += 1;
        }
        if let Some(empty) = counts.iter().position(|&n| n == 0) {
            return Err(format!("class {empty} has no image to take a mean of"));
        }
        for (sum, n) in sums.iter_mut().zip(counts) {
            sum.iter_mut().for_each(|s| *s /= n as f64);
        }
        Ok(Self { means: sums })
    }

    /// The class whose mean is nearest `image` (squared Euclidean distance; the lower class on
    /// a tie). `image` has the size of the fitted images.
    pub fn classify(&self, image: &[u8]) -> usize {
        let distance = |mean: &[f64]| -> f64 {
            mean.iter()
                .zip(image)
                .map(|(m, &p)| (m - f64::from(p)).powi(2))
                .sum()
        };
        let mut best = (0, f64::INFINITY);
        for (class, mean) in self.means.iter().enumerate() {
            let d = distance(mean);
            if d < best.1 {
                best = (class, d);
            }
        }
        best.0
    }

    /// The fraction of `images` (one after the other) classified as their `labels`.
    pub fn accuracy(&self, pixels: &[u8], labels: &[usize]) -> f64 {
        if labels.is_empty() {
            return f64::NAN;
        }
        let size = pixels.len() / labels.len();
        let right = pixels
            .chunks(size)
            .zip(labels)
            .filter(|(image, &label)| self.classify(image) == label)
            .count();
        right as f64 / labels.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_go_to_the_class_of_the_nearest_mean() {
        // Class 0: bright left pixel, class 1: bright right pixel, two images each.
        let pixels = [200, 0, 255, 10, 0, 250, 20, 230];
        let judge = NearestClassMean::fit(&pixels, &[0, 0, 1, 1], 2).unwrap();
        assert_eq!(judge.classify(&[180, 30]), 0);
        assert_eq!(judge.classify(&[40, 160]), 1);
        assert_eq!(
            judge.accuracy(&[180, 30, 40, 160, 0, 255], &[0, 1, 0]),
            2.0 / 3.0
        );
    }

    #[test]
    fn bad_labels_and_sizes_are_errors() {
        assert!(NearestClassMean::fit(&[1, 2, 3], &[0, 1], 2)
            .unwrap_err()
            .contains("do not divide"));
        assert!(NearestClassMean::fit(&[1, 2], &[0, 2], 2)
            .unwrap_err()
            .contains("label 2"));
        assert!(NearestClassMean::fit(&[1, 2], &[0, 0], 2)
            .unwrap_err()
            .contains("class 1 has no image"));
    }
}
