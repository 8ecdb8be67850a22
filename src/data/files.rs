//! Where the MNIST files are: the data directory (`--data`, `$MNIST_DIR`, `data/mnist`), the
//! four files' names and checksums, and finding them (gzipped or raw). No network: downloading
//! is [`fetch`](super::fetch), behind the `download` feature.
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Directory used when neither `--data DIR` nor `$MNIST_DIR` is given.
pub const DEFAULT_DATA_DIR: &str = "data/mnist";
/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "MNIST_DIR";
/// One file to fetch: its standard name (without `.gz`) and the MD5 and size of its
/// uncompressed content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Standard name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub name: Cow<'static, str>,
    /// MD5 of the uncompressed file, lowercase hex.
    pub md5: Cow<'static, str>,
    /// Size of the uncompressed file in bytes.
    pub size: u64,
}

impl FileSpec {
    const fn known(name: &'static str, md5: &'static str, size: u64) -> Self {
        FileSpec {
            name: Cow::Borrowed(name),
            md5: Cow::Borrowed(md5),
            size,
        }
    }
}

/// The four MNIST files (train images, train labels, test images, test labels, in this order)
/// with the MD5 and size of the original uncompressed IDX files.
pub static MNIST_FILES: [FileSpec; 4] = [
    FileSpec::known(
        "train-images-idx3-ubyte",
        "6bbc9ace898e44ae57da46a324031adb",
        47_040_016,
    ),
    FileSpec::known(
        "train-labels-idx1-ubyte",
        "a25bea736e30d166cdddb491f175f624",
        60_008,
    ),
    FileSpec::known(
        "t10k-images-idx3-ubyte",
        "2646ac647ad5339dbf082846283269ea",
        7_840_016,
    ),
    FileSpec::known(
        "t10k-labels-idx1-ubyte",
        "27ae3e4e09519cfbb04c329615203637",
        10_008,
    ),
];

/// The data directory: `explicit` (the CLI's `--data DIR`) if given, else `$MNIST_DIR` if set
/// and not empty, else [`DEFAULT_DATA_DIR`] (relative to the working directory).
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    choose_data_dir(explicit, std::env::var_os(DATA_DIR_ENV))
}

pub(crate) fn choose_data_dir(explicit: Option<&Path>, env: Option<OsString>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// The file `name` in `dir`: `NAME.gz` if it exists, else `NAME` (raw) if it exists.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The files of `files` that [`find_file`] does not find in `dir`.
pub fn missing_files<'a>(dir: &Path, files: &'a [FileSpec]) -> Vec<&'a FileSpec> {
    files
        .iter()
        .filter(|f| find_file(dir, &f.name).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let explicit = Path::new("/flag");
        assert_eq!(
            choose_data_dir(Some(explicit), Some("/env".into())),
            PathBuf::from("/flag")
        );
        assert_eq!(
            choose_data_dir(None, Some("/env".into())),
            PathBuf::from("/env")
        );
        assert_eq!(
            choose_data_dir(None, Some("".into())),
            PathBuf::from(DEFAULT_DATA_DIR)
        );
        assert_eq!(choose_data_dir(None, None), PathBuf::from(DEFAULT_DATA_DIR));
    }
}
