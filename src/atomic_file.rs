//! Atomic file writes: a file is either its old content or its new content, never half of the
//! new one, even if the process is killed while writing (checkpoints, metrics, pictures).
use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
/// Creates the parent directory if needed. On failure the temporary file is removed and `path`
/// keeps its previous content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let written = fs::create_dir_all(dir).and_then(|()| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fsync_dir(dir);
    Ok(())
}

/// Flushes a directory's entries (makes a rename in it durable). Not supported everywhere, so
/// best effort.
pub(crate) fn fsync_dir(path: &Path) {
    if let Ok(d) = fs::File::open(path) {
        let _ = d.sync_all();
    }
}
