//! Stream backups (`backup --stdin`, `backup --stdin-from-command`): a byte stream stored as one
//! file, as restic stores it.
//!
//! The snapshot holds a single regular file `/NAME` at its root, and records `["/NAME"]` as its
//! paths. The file has mode 0644, the backup's user and group, and the backup time as its mtime
//! and ctime (a stream has no metadata of its own). The stream goes through the same chunker,
//! dedup and pipeline as a file's content, chunk by chunk: it is never held in memory whole.
//! There is no parent (a stream cannot be compared with anything, so it is always read) and the
//! snapshot's mode is `full`.
//!
//! A stream that fails — a read error, or a command ([`CommandStream`]) that cannot start, exits
//! non-zero or is killed — makes no snapshot: its error ends the backup. Packs already written
//! are named in an index file, so the repository stays consistent and `prune` frees them.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::chunker::Chunker;
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::snapshot::tree::{ContentPart, Node, NodeKind, Timestamp, Tree};
use crate::snapshot::BackupMode;

use super::walk::Walker;
use super::{finish, run_pipeline, BackupOptions, BackupOutcome, BackupProgress, SnapshotBase};

/// The name a stream gets when none is given (restic's too).
pub const DEFAULT_NAME: &str = "stdin";

/// The longest file name accepted, in bytes: `NAME_MAX` on Linux, so a restore can create it.
pub const MAX_NAME_LEN: usize = 255;

/// How much of a failing command's error output its error message keeps: the last 4 KiB.
pub const STDERR_TAIL: usize = 4 << 10;

/// The permission bits of a stream's file (restic's too).
pub const STREAM_MODE: u32 = 0o644;

/// Checks that `name` can be a file name in a snapshot: not empty, at most [`MAX_NAME_LEN`]
/// bytes, no `/` or NUL, not `.` or `..`.
pub fn validate_name(name: &[u8]) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidInput(format!(
            "--stdin-filename {:?} {why}; give a plain file name such as \"db.sql\"",
            String::from_utf8_lossy(name)
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == b"." || name == b".." {
        return bad("is not a file name");
    }
    if name.contains(&b'/') {
        return bad("contains '/'");
    }
    if name.contains(&0) {
        return bad("contains a NUL byte");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!(
            "is {} bytes long, over the {MAX_NAME_LEN} a file name may have",
            name.len()
        ));
    }
    Ok(())
}

/// Backs up everything `stream` yields as the file `/name` of a new snapshot (see the module
/// documentation). `what` names the stream in messages ("standard input", "command `pg_dump`").
/// `opts.paths` and `opts.listed_paths` must be empty; `opts.mode`, `opts.parent` and the
/// exclusion rules do not apply.
pub fn backup_stream(
    repo: &mut Repository,
    opts: &BackupOptions,
    name: &[u8],
    what: &str,
    stream: &mut dyn Read,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    let start = Instant::now();
    validate_name(name)?;
    super::check_tags(&opts.tags)?;
    if !opts.paths.is_empty() || !opts.listed_paths.is_empty() {
        return Err(Error::InvalidInput(
            "a stream backup stores one stream; it takes no paths to back up".into(),
        ));
    }
    // No parent, no checkpoints (a partial stream cannot be resumed), recorded as full.
    let opts = BackupOptions {
        mode: BackupMode::Full,
        parent: None,
        force: false,
        checkpoint_every: None,
        ..opts.clone()
    };
    let snapshots = repo.snapshots()?;
    let mut path = b"/".to_vec();
    path.extend_from_slice(name);
    let path = String::from_utf8_lossy(&path).into_owned();
    let base = SnapshotBase {
        paths: vec![path.clone()],
        parent: None,
    };
    let run = run_pipeline(repo, &opts, &base, progress, None, false, |w| {
        let node = w.read_stream(name, &path, what, stream)?;
        w.store_tree(Tree { nodes: vec![node] })
    });
    finish(repo, &opts, &base, &snapshots, run, start)
}

impl Walker<'_> {
    /// Reads, chunks and queues `stream` to its end; returns its file node.
    fn read_stream(
        &mut self,
        name: &[u8],
        path: &str,
        what: &str,
        stream: &mut dyn Read,
    ) -> Result<Node> {
        let mut node = Node::new(name.to_vec(), NodeKind::File);
        node.mode = STREAM_MODE;
        node.uid = self.opts.uid;
        node.gid = self.opts.gid;
        node.user = self.names.user(node.uid);
        node.group = self.names.group(node.gid);
        let t = Timestamp(
            self.opts.time_ns.div_euclid(1_000_000_000),
            self.opts.time_ns.rem_euclid(1_000_000_000) as u32,
        );
        node.mtime = t;
        node.ctime = t;
        node.links = 1;
        self.progress.file_started(std::path::Path::new(path));
        let failed = |source: io::Error| Error::Stream {
            what: what.to_string(),
            source,
        };
        let chunker = Chunker::new(stream, self.repo.config().chunker, self.keys.chunker_seed());
        for chunk in chunker {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // A Ctrl-C reaches the command too: its death is then the interruption.
                    self.tick()?;
                    return Err(failed(e));
                }
            };
            self.tick()?;
            let len = chunk.len() as u64;
            let id = self.keys.chunk_id(&chunk);
            self.store(BlobKind::Data, id, chunk)?;
            node.content.push(ContentPart(Some(id), len));
            node.size += len;
            self.summary.bytes_read += len;
            self.progress.bytes_done(len);
        }
        self.summary.total_files += 1;
        self.summary.files_new += 1;
        self.summary.total_bytes_processed += node.size;
        self.progress.file_done(node.size);
        Ok(node)
    }
}

/// A command's standard output as a stream (`backup --stdin-from-command`). The command runs
/// directly (no shell) with standard input from `/dev/null`; its error output is copied to a
/// sink of the caller's choice as it comes, and its last [`STDERR_TAIL`] bytes are kept. At the
/// end of its output the command is waited for: a command that exited non-zero or was killed
/// turns the end of the stream into an error naming its status and the end of its error output,
/// so the backup that reads it fails.
pub struct CommandStream {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
    finished: bool,
}

impl CommandStream {
    /// Starts `program` with `args`; its error output is copied to `stderr_sink`.
    pub fn spawn(
        program: &OsStr,
        args: &[OsString],
        stderr_sink: Box<dyn Write + Send>,
    ) -> Result<CommandStream> {
        let shown = program.to_string_lossy().into_owned();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Stream {
                what: format!("command `{shown}`"),
                source: io::Error::new(e.kind(), format!("could not start it: {e}")),
            })?;
        let (Some(stdout), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::InvalidInput(format!(
                "command `{shown}`: its output pipes were not set up"
            )));
        };
        let stderr = std::thread::spawn(move || copy_keeping_tail(err, stderr_sink));
        Ok(CommandStream {
            child,
            stdout,
            stderr: Some(stderr),
            finished: false,
        })
    }

    /// Waits for the command after its output ended; an error unless it exited 0.
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        let status = self.child.wait()?;
        // The command has exited; its error output ends when the last process holding it does.
        let tail = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(CommandFailed::new(status, tail)))
    }
}

impl Read for CommandStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for CommandStream {
    /// A backup that ends before the command's output does (Ctrl-C, a full disk) stops the
    /// command and reaps it.
    fn drop(&mut self) {
        if !self.finished {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

impl AsRawFd for CommandStream {
    /// The command's standard output.
    fn as_raw_fd(&self) -> RawFd {
        self.stdout.as_raw_fd()
    }
}

/// How long a [`Cancellable`] read waits for data before it looks at its flag again, in ms.
const WAIT_SLICE_MS: i32 = 100;

/// A stream whose reads wake every 100 ms to see whether `cancel` was set (Ctrl-C
/// sent to cairn alone, by a supervisor): a stream that has nothing to say then ends the backup
/// ([`Error::Interrupted`]) instead of holding it until it speaks.
pub struct Cancellable<R> {
    inner: R,
    cancel: Arc<AtomicBool>,
}

impl<R: Read + AsRawFd> Cancellable<R> {
    /// Reads `inner` until `cancel` is set.
    pub fn new(inner: R, cancel: Arc<AtomicBool>) -> Self {
        Cancellable { inner, cancel }
    }
}

impl<R: Read + AsRawFd> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                // Not ErrorKind::Interrupted: readers retry that; the backup sees the flag.
                return Err(io::Error::other("interrupted"));
            }
            let mut p = libc::pollfd {
                fd: self.inner.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let rc = unsafe { libc::poll(&mut p, 1, WAIT_SLICE_MS) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc > 0 {
                return self.inner.read(buf);
            }
        }
    }
}

/// Copies `src` to `sink` until its end, keeping its last [`STDERR_TAIL`] bytes. A sink that
/// fails (a closed terminal) stops being written to; the tail is still kept.
fn copy_keeping_tail(mut src: impl Read, mut sink: Box<dyn Write + Send>) -> Vec<u8> {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL);
    let mut buf = [0u8; 8192];
    let mut sink_ok = true;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if sink_ok {
            sink_ok = sink
                .write_all(&buf[..n])
                .and_then(|()| sink.flush())
                .is_ok();
        }
        let keep = &buf[n.saturating_sub(STDERR_TAIL)..n];
        let over = (tail.len() + keep.len()).saturating_sub(STDERR_TAIL);
        tail.drain(..over);
        tail.extend(keep);
    }
    tail.into()
}

/// Why a command's stream failed: how it ended and the end of its error output. It is the
/// inner error of the [`Error::Stream`] a failing [`CommandStream`] ends a backup with.
#[derive(Debug)]
pub struct CommandFailed {
    /// How it ended: "exited with status 3", "was killed by signal 9 (SIGKILL)".
    pub how: String,
    /// The last [`STDERR_TAIL`] bytes (at most) of its error output.
    pub stderr_tail: Vec<u8>,
}

impl CommandFailed {
    fn new(status: ExitStatus, stderr_tail: Vec<u8>) -> Self {
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
            (None, None) => format!("ended abnormally ({status})"),
        };
        CommandFailed { how, stderr_tail }
    }
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; no snapshot was made", self.how)?;
        let text = String::from_utf8_lossy(&self.stderr_tail);
        match text.trim_end() {
            "" => write!(f, " (it wrote nothing to its error output)"),
            t => write!(f, "; its error output ended with:\n{t}"),
        }
    }
}

impl std::error::Error for CommandFailed {}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_that_are_not_one_plain_file_name_are_refused() {
        let long = vec![b'a'; MAX_NAME_LEN + 1];
        for bad in [&b""[..], b".", b"..", b"a/b", b"/x", b"x/", b"a\0b", &long] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
        let max = vec![b'a'; MAX_NAME_LEN];
        for good in [
            &b"stdin"[..],
            b"db.sql",
            b"...",
            b".hidden",
            b"\xff\xfe",
            b"a b#c",
            &max,
        ] {
            assert!(validate_name(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn the_error_output_tail_keeps_only_the_last_bytes() {
        let mut input = Vec::new();
        for i in 0..5000u32 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let tail = copy_keeping_tail(&input[..], Box::new(io::sink()));
        assert_eq!(tail.len(), STDERR_TAIL);
        assert_eq!(&tail[..], &input[input.len() - STDERR_TAIL..]);
        let short = copy_keeping_tail(&b"oops\n"[..], Box::new(io::sink()));
        assert_eq!(short, b"oops\n");
    }

    #[test]
    fn a_command_that_fails_ends_its_stream_with_an_error_holding_its_status_and_stderr() {
        let args: Vec<OsString> = ["-c", "printf data; echo broken >&2; exit 3"]
            .iter()
            .map(OsString::from)
            .collect();
        let mut s =
            CommandStream::spawn(OsStr::new("sh"), &args, Box::new(io::sink())).expect("sh starts");
        let mut out = Vec::new();
        let err = s
            .read_to_end(&mut out)
            .expect_err("a failing command is an error");
        assert_eq!(out, b"data");
        let msg = err.to_string();
        assert!(msg.contains("exited with status 3"), "{msg}");
        assert!(msg.contains("broken"), "{msg}");

        let args: Vec<OsString> = ["-c", "printf ok"].iter().map(OsString::from).collect();
        let mut s =
            CommandStream::spawn(OsStr::new("sh"), &args, Box::new(io::sink())).expect("sh starts");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("exit 0 is success");
        assert_eq!(out, b"ok");
    }
}
