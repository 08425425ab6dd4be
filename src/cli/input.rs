//! Bounded reads of what a user, or someone else, hands cairn: password files and the output of
//! password commands, exclude files, plan files, local state files.
//!
//! Every read stops at a bound its caller states next to the call (README "Input bounds"), so a
//! file like `/dev/zero`, a huge sparse file or a command that never stops writing ends in a
//! clear error instead of eating memory. Files are opened without blocking (a FIFO whose writer
//! has not come yet reads as empty instead of hanging in `open`), and every wait for a slow
//! writer — a FIFO, a pipe, a command — wakes regularly to notice Ctrl-C.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context};

/// How long one wait for input lasts before cairn looks for a Ctrl-C again, in ms.
const WAIT_SLICE_MS: i32 = 100;
/// Bytes asked of the kernel per read.
const READ_STEP: usize = 16 * 1024;

static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes waits for input end (with [`cairn::Error::Interrupted`]) once `flag` is set (Ctrl-C).
pub fn stop_on(flag: Arc<AtomicBool>) {
    let _ = INTERRUPT.set(flag);
}

pub fn interrupted() -> bool {
    INTERRUPT.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Why a bounded read stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// End of file (or of the pipe): everything is in the buffer.
    Eof,
    /// A line end was read; the buffer holds the line before it (without the `\n`).
    Line,
    /// More than the bound came; the buffer holds the first `limit + 1` bytes.
    Limit,
}

/// What kind of file an input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    /// A FIFO or a pipe (`<(pass show x)` is one).
    Pipe,
    Terminal,
    /// A character or block device that is not a terminal (`/dev/zero`, `/dev/urandom`).
    Device,
    Other,
}

/// Opens `path` for reading without blocking in `open` and refuses a directory; `what` names
/// the file in messages ("password file").
pub fn open(path: &Path, what: &str) -> anyhow::Result<(File, Kind)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {what} {}", path.display()))?;
    let t = f
        .metadata()
        .with_context(|| format!("reading {what} {}", path.display()))?
        .file_type();
    let kind = if t.is_dir() {
        bail!("{what} {} is a directory, not a file", path.display());
    } else if t.is_file() {
        Kind::Regular
    } else if t.is_fifo() || t.is_socket() {
        Kind::Pipe
    } else if t.is_char_device() || t.is_block_device() {
        // SAFETY: isatty only inspects the descriptor, which `f` keeps open.
        if unsafe { libc::isatty(f.as_raw_fd()) } == 1 {
            Kind::Terminal
        } else {
            Kind::Device
        }
    } else {
        Kind::Other
    };
    Ok((f, kind))
}

/// Reads a whole file of at most `limit` bytes; `what` names it in messages.
pub fn read_file(path: &Path, limit: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let (mut f, _) = open(path, what)?;
    if let Ok(m) = f.metadata() {
        if m.is_file() && m.len() > limit as u64 {
            bail!(
                "{what} {} is {} bytes; cairn reads at most {} of a {what}",
                path.display(),
                m.len(),
                super::output::size(limit as u64)
            );
        }
    }
    let mut buf = Vec::new();
    match read_bounded(&mut f, limit, false, &mut buf)
        .with_context(|| format!("reading {what} {}", path.display()))?
    {
        End::Limit => bail!(
            "{what} {} holds more than {}, the most cairn reads of a {what}",
            path.display(),
            super::output::size(limit as u64)
        ),
        End::Eof | End::Line => Ok(buf),
    }
}

/// Reads from `src` into `buf` until end of file, until a line end when `line` is set, or
/// until more than `limit` bytes came — whichever is first (see [`End`]). A source that has
/// nothing to read yet (a non-blocking FIFO, pipe or terminal) is waited for in slices, so a
/// Ctrl-C ends the wait with [`cairn::Error::Interrupted`].
///
/// `buf` gets `limit + 1` bytes of capacity up front and never grows past it, so a secret read
/// into a zeroizing buffer is never copied by a reallocation.
pub fn read_bounded(
    src: &mut (impl Read + AsRawFd),
    limit: usize,
    line: bool,
    buf: &mut Vec<u8>,
) -> anyhow::Result<End> {
    buf.clear();
    buf.reserve_exact(limit + 1);
    loop {
        if interrupted() {
            return Err(cairn::Error::Interrupted.into());
        }
        let start = buf.len();
        let end = (start + READ_STEP).min(limit + 1);
        buf.resize(end, 0);
        match src.read(&mut buf[start..end]) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(End::Eof);
            }
            Ok(n) => {
                buf.truncate(start + n);
                if line {
                    if let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
                        buf[start + i..].fill(0);
                        buf.truncate(start + i);
                        return Ok(End::Line);
                    }
                }
                if buf.len() > limit {
                    return Ok(End::Limit);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buf.truncate(start);
                wait_readable(src.as_raw_fd())?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(e.into());
            }
        }
    }
}

/// Waits up to one slice for `fd` to have something to read (or to be closed).
fn wait_readable(fd: i32) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let rc = unsafe { libc::poll(&mut p, 1, WAIT_SLICE_MS) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Puts a descriptor (a child's stdout) in non-blocking mode.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller keeps open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The largest exclude file read: 16 MiB, some 200 000 patterns of typical length.
pub const MAX_EXCLUDE_FILE: usize = 16 << 20;

/// The patterns of `--exclude` and of each `--exclude-file` (one per line, blank lines and
/// `#` comments skipped), as `backup` and `rewrite` read them.
pub fn exclude_patterns(exclude: &[String], files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut patterns = exclude.to_vec();
    for f in files {
        let bytes = read_file(f, MAX_EXCLUDE_FILE, "exclude file")?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "exclude file {} is not UTF-8 text (byte {} is not)",
                super::output::esc(f),
                e.utf8_error().valid_up_to()
            )
        })?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8], limit: usize, line: bool) -> (Vec<u8>, End) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, data).expect("write");
        let (mut f, kind) = open(&p, "test file").expect("open");
        assert_eq!(kind, Kind::Regular);
        let mut buf = Vec::new();
        let end = read_bounded(&mut f, limit, line, &mut buf).expect("read");
        (buf, end)
    }

    #[test]
    fn a_line_read_stops_at_the_first_line_end() {
        assert_eq!(read(b"pw\nrest", 10, true), (b"pw".to_vec(), End::Line));
        assert_eq!(read(b"pw", 10, true), (b"pw".to_vec(), End::Eof));
        assert_eq!(read(b"\npw", 10, true), (Vec::new(), End::Line));
    }

    #[test]
    fn a_read_stops_one_byte_past_its_bound() {
        let (buf, end) = read(&[b'x'; 100_000], 40_000, true);
        assert_eq!((buf.len(), end), (40_001, End::Limit));
        // Exactly the bound, no line end: the whole of it.
        let (buf, end) = read(&[b'x'; 40_000], 40_000, true);
        assert_eq!((buf.len(), end), (40_000, End::Eof));
        let (buf, end) = read(&[b'x'; 40_000], 40_000, false);
        assert_eq!((buf.len(), end), (40_000, End::Eof));
    }

    #[test]
    fn a_read_never_grows_its_buffer_past_the_bound() {
        let (buf, _) = read(&[b'x'; 100_000], 40_000, false);
        assert!(buf.capacity() <= 40_001 + 64, "capacity {}", buf.capacity());
    }
}
