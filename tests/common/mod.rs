//! Harness for driving the real `cairn` binary: a temp-dir fixture with a repository, a command
//! builder that shields the run from the host environment, and helpers to build and compare
//! file trees byte for byte and metadata for metadata.
//!
//! What a test needs from the machine (tools, root, mounts) is asked for through [`prereq`]; how
//! a test waits for another process, through [`wait`].

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

#[cfg(feature = "mount")]
pub mod faultfs;
pub mod prereq;
pub mod servers;
pub mod wait;

pub use prereq::*;
pub use wait::*;

/// The password every fixture repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";

/// A single cairn run longer than this is a hang (a FIFO opened for reading, a lost lock...).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub what: String,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Stdout's lines as raw bytes (paths may not be UTF-8).
    pub fn stdout_lines(&self) -> Vec<Vec<u8>> {
        self.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON value ({e}):\n{}",
                self.what,
                String::from_utf8_lossy(&self.stdout)
            )
        })
    }

    /// Stdout as JSON lines; every line must parse.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_lines()
            .iter()
            .map(|l| {
                serde_json::from_slice(l).unwrap_or_else(|e| {
                    panic!(
                        "{}: stdout line is not JSON ({e}): {}",
                        self.what,
                        String::from_utf8_lossy(l)
                    )
                })
            })
            .collect()
    }

    /// The one `{"message_type":"summary"}` line, which must be the last.
    pub fn summary(&self) -> serde_json::Value {
        let lines = self.json_lines();
        let summaries: Vec<_> = lines
            .iter()
            .filter(|v| v["message_type"] == "summary")
            .collect();
        assert_eq!(
            summaries.len(),
            1,
            "{}: exactly one summary line",
            self.what
        );
        let last = lines.last().expect("at least one line");
        assert_eq!(
            last["message_type"], "summary",
            "{}: summary is last",
            self.what
        );
        last.clone()
    }

    /// The `snapshot_id` of the JSON summary (a backup run with `--json`).
    #[track_caller]
    pub fn snapshot_id(&self) -> String {
        let id = self.summary()["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no snapshot_id in its summary", self.what))
            .to_string();
        assert!(is_hex_id(&id), "{}: snapshot id {id:?}", self.what);
        id
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "{} exited {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect(0)
    }

    /// Stdout and stderr together, for "is it named anywhere".
    pub fn output(&self) -> String {
        format!("{}\n{}", String::from_utf8_lossy(&self.stdout), self.stderr)
    }

    /// Whatever the exit code, the run ended on its own: no panic (exit 101), no signal.
    #[track_caller]
    pub fn assert_no_panic(&self) {
        assert!(
            self.code != 101 && !self.stderr.contains("panicked"),
            "{} panicked (exit {}):\n{}",
            self.what,
            self.code,
            self.stderr
        );
        assert!(
            self.code >= 0,
            "{} died of a signal:\n{}",
            self.what,
            self.stderr
        );
    }
}

/// A `cairn` invocation with a clean environment.
pub struct TestCommand {
    cmd: Command,
    what: String,
    /// Standard output is a pipe whose reader has already gone (`cairn ... | head` after head
    /// exited): every write fails with EPIPE.
    closed_stdout: bool,
}

impl TestCommand {
    /// The binary with no repository, no password, and nothing inherited from `CAIRN_*`.
    pub fn bare() -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"CAIRN_") {
                cmd.env_remove(&k);
            }
        }
        // Deterministic times in human and JSON output.
        cmd.env("TZ", "UTC");
        cmd.arg("--no-progress");
        cmd.stdin(Stdio::null());
        TestCommand {
            cmd,
            what: "cairn --no-progress".into(),
            closed_stdout: false,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.what.push(' ');
        self.what.push_str(&a.as_ref().to_string_lossy());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Runs the command with at most `n` open descriptors (soft and hard limit, so the
    /// program cannot raise it).
    pub fn fd_limit(mut self, n: u64) -> Self {
        use std::os::unix::process::CommandExt;
        self.what.push_str(&format!(" (with ulimit -n {n})"));
        let lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: the closure only calls setrlimit, which is async-signal-safe, between fork
        // and exec.
        unsafe {
            self.cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self
    }

    /// Runs the command with at most `bytes` of address space (soft and hard limit): a run that
    /// would grow without bound fails to allocate (and dies, failing the test) instead of
    /// eating the machine's memory.
    pub fn mem_limit(mut self, bytes: u64) -> Self {
        use std::os::unix::process::CommandExt;
        self.what
            .push_str(&format!(" (with ulimit -v {})", bytes / 1024));
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: the closure only calls setrlimit, which is async-signal-safe, between fork
        // and exec.
        unsafe {
            self.cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    /// Feeds the file at `path` to the command's standard input (instead of nothing).
    pub fn stdin_file(mut self, path: impl AsRef<Path>) -> Self {
        let f = fs::File::open(path.as_ref()).expect("open the file for standard input");
        self.what
            .push_str(&format!(" < {}", path.as_ref().display()));
        self.cmd.stdin(f);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Standard output becomes a pipe nobody reads: its read end is closed before the command
    /// starts, as when `head` has exited. [`Run::stdout`] is then empty.
    pub fn closed_stdout(mut self) -> Self {
        self.what.push_str(" | (closed)");
        self.closed_stdout = true;
        self
    }

    /// Runs to completion (or panics after [`RUN_TIMEOUT`]), capturing both streams.
    pub fn run(mut self) -> Run {
        if self.closed_stdout {
            let mut fds = [0; 2];
            // SAFETY: pipe writes two new descriptors into the array it is given.
            assert_eq!(
                unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
                0,
                "pipe"
            );
            // SAFETY: both descriptors were just created and are owned here alone.
            let (read, write) = unsafe {
                use std::os::fd::FromRawFd;
                (
                    std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                    std::os::fd::OwnedFd::from_raw_fd(fds[1]),
                )
            };
            drop(read);
            self.cmd.stdout(Stdio::from(write));
        } else {
            self.cmd.stdout(Stdio::piped());
        }
        self.cmd.stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn cairn");
        let out = child.stdout.take();
        let mut err = child.stderr.take().expect("stderr");
        let out_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut out) = out {
                let _ = out.read_to_end(&mut v);
            }
            v
        });
        let err_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let status = wait_for_exit(&mut child, RUN_TIMEOUT, &self.what);
        let stdout = out_t.join().expect("stdout reader");
        let stderr = String::from_utf8_lossy(&err_t.join().expect("stderr reader")).into_owned();
        Run {
            // A signal death has no code; -1 never matches an expected exit code.
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            what: self.what,
        }
    }
}

/// Options for a repository made through the library in a test: 1 MiB packs and the
/// cheapest key derivation a key file may have.
pub fn quick_init_options() -> cairn::repo::InitOptions {
    cairn::repo::InitOptions {
        pack_size: 1 << 20,
        kdf: cairn::format::crypto::KdfParams {
            m_cost_kib: cairn::format::crypto::KdfParams::MIN_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        },
        ..cairn::repo::InitOptions::default()
    }
}

/// A temp dir holding a repository (`repo/`) and whatever a test puts next to it.
pub struct Fixture {
    pub tmp: TempDir,
    pub repo: PathBuf,
}

impl Fixture {
    /// A temp dir; `repo/` does not exist yet.
    pub fn empty() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("cairn-cli-")
            .tempdir()
            .expect("tempdir");
        let repo = tmp.path().join("repo");
        Fixture { tmp, repo }
    }

    /// Like [`Fixture::new`], with 1 MiB packs: a few megabytes of data span many packs.
    pub fn small_packs() -> Self {
        let f = Self::empty();
        f.cmd()
            .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
            .run()
            .ok();
        f
    }

    /// A temp dir with a repository at `repo/` opened by [`PASSWORD`].
    pub fn new() -> Self {
        let f = Self::empty();
        f.cmd().args(["init", "--kdf-memory-mib", "8"]).run().ok();
        f
    }

    /// `cairn -r REPO` with `CAIRN_PASSWORD` set.
    pub fn cmd(&self) -> TestCommand {
        self.cmd_without_password().env("CAIRN_PASSWORD", PASSWORD)
    }

    /// `cairn -r REPO` with no password source at all.
    pub fn cmd_without_password(&self) -> TestCommand {
        // Local caches (check's verification state) stay inside the fixture, not in $HOME.
        TestCommand::bare()
            .arg("-r")
            .arg(&self.repo)
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Backs up `paths` with `extra` arguments; returns the JSON summary.
    pub fn backup_json<P: AsRef<OsStr>>(&self, paths: &[P], extra: &[&str]) -> serde_json::Value {
        let run = self
            .cmd()
            .args(["--json", "backup"])
            .args(paths)
            .args(extra)
            .run();
        run.ok();
        run.summary()
    }

    /// Backs up `paths`; returns the new snapshot's id.
    pub fn backup<P: AsRef<OsStr>>(&self, paths: &[P], extra: &[&str]) -> String {
        let s = self.backup_json(paths, extra);
        let id = s["snapshot_id"].as_str().expect("snapshot_id").to_string();
        assert!(is_hex_id(&id), "snapshot id {id:?}");
        id
    }

    /// Restores the latest snapshot into `target`; the restore must exit 0.
    pub fn restore_latest(&self, target: &Path) {
        self.cmd()
            .args(["restore", "latest", "--target"])
            .arg(target)
            .run()
            .ok();
    }

    /// Every file in the repository, by path relative to it, with its bytes.
    pub fn repo_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for rel in walk(&self.repo) {
            let full = self.repo.join(&rel);
            if fs::symlink_metadata(&full).expect("lstat").is_file() {
                out.insert(rel, fs::read(&full).expect("read repo file"));
            }
        }
        out
    }

    /// Total size of every file in the repository.
    pub fn repo_bytes(&self) -> u64 {
        self.repo_files().values().map(|v| v.len() as u64).sum()
    }

    /// Pack files (`data/XX/<64 hex>`), by full path.
    pub fn packs(&self) -> BTreeSet<PathBuf> {
        self.repo_files()
            .keys()
            .filter(|p| p.starts_with("data"))
            .map(|p| self.repo.join(p))
            .collect()
    }
}

pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Deterministic pseudo-random bytes (SplitMix64): incompressible, reproducible.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(path: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create parent");
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs a helper program (mkfifo, mknod...), which must succeed.
pub fn sh(program: &str, args: &[&OsStr]) {
    let st = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(st.success(), "{program} {args:?} failed: {st}");
}

/// Sets a path's mtime (and atime) without following a symlink.
pub fn set_mtime(path: impl AsRef<Path>, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path.as_ref(), t, t)
        .unwrap_or_else(|e| panic!("set times on {}: {e}", path.as_ref().display()));
}

pub fn chmod(path: impl AsRef<Path>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path.as_ref(), fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every path below `root` (relative; `""` for the root itself), depth first, sorted by bytes.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::new()];
    fn rec(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<OsString> = fs::read_dir(root.join(rel))
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", root.join(rel).display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let child = rel.join(&n);
            out.push(child.clone());
            if fs::symlink_metadata(root.join(&child))
                .expect("lstat")
                .is_dir()
            {
                rec(root, &child, out);
            }
        }
    }
    rec(root, Path::new(""), &mut out);
    out
}

/// Where `restore latest --target target` puts an absolute source path.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").expect("absolute source path"))
}

fn type_name(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else if t.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

/// Extended attributes of a path (not following symlinks), sorted; empty where unsupported.
pub fn xattrs(path: &Path) -> Vec<(OsString, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut v: Vec<_> = names
        .map(|n| {
            let val = xattr::get(path, &n).expect("getxattr").unwrap_or_default();
            (n, val)
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `copy` holds exactly the entries of `orig`, with identical type, content,
/// permission bits, owner, mtime (to the nanosecond), link count, symlink target, device
/// number and extended attributes, and the same hard-link groups.
pub fn assert_same_tree(orig: &Path, copy: &Path) {
    compare_trees(orig, copy, true);
}

/// Like [`assert_same_tree`], but the two roots' own metadata may differ (a restore target
/// directory is the user's, not the snapshot's).
pub fn assert_same_entries(orig: &Path, copy: &Path) {
    compare_trees(orig, copy, false);
}

fn compare_trees(orig: &Path, copy: &Path, check_root: bool) {
    let a = walk(orig);
    let b = walk(copy);
    let show = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&a), show(&b), "the restored tree has other entries");
    let mut groups_a: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut groups_b: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for rel in &a {
        if !check_root && rel.as_os_str().is_empty() {
            continue;
        }
        let (pa, pb) = (orig.join(rel), copy.join(rel));
        let ma = fs::symlink_metadata(&pa).expect("lstat original");
        let mb = fs::symlink_metadata(&pb).expect("lstat restored");
        let at = rel.display();
        assert_eq!(type_name(&ma), type_name(&mb), "{at}: type");
        if !ma.file_type().is_symlink() {
            assert_eq!(
                format!("{:o}", ma.mode() & 0o7777),
                format!("{:o}", mb.mode() & 0o7777),
                "{at}: permission bits"
            );
        }
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{at}: owner");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{at}: mtime"
        );
        assert_eq!(ma.nlink(), mb.nlink(), "{at}: link count");
        assert_eq!(xattrs(&pa), xattrs(&pb), "{at}: extended attributes");
        let t = ma.file_type();
        if t.is_file() {
            assert_eq!(ma.len(), mb.len(), "{at}: size");
            // Compared without printing megabytes of bytes on failure.
            let (ca, cb) = (fs::read(&pa).expect("read"), fs::read(&pb).expect("read"));
            if ca != cb {
                let first = ca.iter().zip(&cb).position(|(x, y)| x != y);
                panic!("{at}: content differs (first difference at byte {first:?})");
            }
        }
        if t.is_symlink() {
            assert_eq!(
                fs::read_link(&pa).expect("readlink"),
                fs::read_link(&pb).expect("readlink"),
                "{at}: symlink target"
            );
        }
        if t.is_char_device() || t.is_block_device() {
            assert_eq!(ma.rdev(), mb.rdev(), "{at}: device number");
        }
        if !t.is_dir() {
            groups_a
                .entry((ma.dev(), ma.ino()))
                .or_default()
                .push(rel.clone());
            groups_b
                .entry((mb.dev(), mb.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let sets = |g: BTreeMap<(u64, u64), Vec<PathBuf>>| -> BTreeSet<Vec<PathBuf>> {
        g.into_values().collect()
    };
    assert_eq!(
        sets(groups_a),
        sets(groups_b),
        "hard-link groups (paths sharing an inode) differ"
    );
}
