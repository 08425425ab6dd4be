//! `cairn serve`: a repository served over stdin/stdout, to run as an SSH forced command
//! (docs/serve-protocol.md). The server stores opaque objects in a local directory through
//! [`LocalBackend`], so every durability rule (temporary name, fsync, rename, directory fsync)
//! and every path rule (no links followed, names that cannot leave their directory) of a local
//! repository holds; it needs no password and never sees a key.
//!
//! **Append-only** ([`ServeOptions::append_only`]): new objects may be created, and nothing
//! stored may be deleted or replaced, with one exception, the lock files under `locks/` —
//! clients create one per command and remove it when done, and a lock holds no data. So a
//! client may `put` a new object (an object already stored under its name with the same length
//! is left as it is, the usual idempotent `put`; one of another length is refused, and the final
//! rename never replaces a file), and may `delete` a lock file; `replace`, every other `delete`
//! and `remove-temporaries` are refused with an error the client shows. `forget` and `prune`
//! therefore fail through an append-only server, and delete nothing: run them on the server's
//! machine, or through a server without `--append-only` reached with another key.
//!
//! A malformed request (an unknown operation or kind, a name that is not an object name, a
//! length over its bound, a stream cut inside a frame) gets an error response when the stream
//! still takes one, and ends the session: [`serve`] returns the error, it never panics.

pub mod protocol;

use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::backend::{Backend, FileKind, LocalBackend};
use protocol::{FrameError, Op, Request};

/// How a server treats its repository.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeOptions {
    /// Refuse deleting and replacing objects (lock files excepted; see the module
    /// documentation).
    pub append_only: bool,
}

/// Why a session ended other than by the client closing it between requests.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client sent something that is not a request of this protocol.
    #[error("malformed request, session ended: {0}")]
    Malformed(#[from] FrameError),
    /// The client speaks another protocol version.
    #[error("the client speaks cairn serve protocol version {0}; this server speaks version {v}", v = protocol::VERSION)]
    Version(u32),
    /// Writing a response failed (the client went away).
    #[error("writing to the client: {0}")]
    Io(#[from] io::Error),
}

/// Serves requests read from `input` with responses on `output` until the client closes the
/// stream between requests (Ok) or sends something malformed (an error, after an error
/// response when the stream takes one).
pub fn serve(
    backend: &LocalBackend,
    opts: ServeOptions,
    input: impl Read,
    output: impl Write,
) -> Result<(), ServeError> {
    let mut r = BufReader::with_capacity(1 << 16, input);
    let mut w = BufWriter::with_capacity(1 << 16, output);
    let flags = if opts.append_only {
        protocol::FLAG_APPEND_ONLY
    } else {
        0
    };
    let version = match protocol::read_client_hello(&mut r) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(()),
        Err(e) => return Err(ended_by(&mut w, e)),
    };
    protocol::write_server_hello(&mut w, flags)?;
    if version != protocol::VERSION {
        return Err(ServeError::Version(version));
    }
    loop {
        let req = match protocol::read_request(&mut r) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ended_by(&mut w, e)),
        };
        match answer(backend, opts, &req) {
            Ok(payload) => protocol::write_ok(&mut w, &payload)?,
            Err(e) => protocol::write_error(&mut w, &e)?,
        }
    }
}

/// Tells the client why its session ends (when it still listens) and returns that reason.
fn ended_by(w: &mut impl Write, e: FrameError) -> ServeError {
    let why = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("malformed request: {e}"),
    );
    let _ = protocol::write_error(w, &why);
    ServeError::Malformed(e)
}

/// An append-only server's refusal.
fn refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{what} is refused: the server is append-only (`cairn serve --append-only`), it \
             keeps every stored object; only lock files may be removed"
        ),
    )
}

/// Carries out one well-formed request; the payload of its success response.
fn answer(backend: &LocalBackend, opts: ServeOptions, req: &Request) -> io::Result<Vec<u8>> {
    let name = req.name.as_str();
    // read_request gives every op that names an object a kind.
    let kind = || {
        req.kind
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no object kind"))
    };
    match req.op {
        Op::Create => backend.create().map(|()| Vec::new()),
        Op::Put if opts.append_only => backend
            .put_new(kind()?, name, &req.payload)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    refused(&format!("storing different bytes under {}", kind_path(req)))
                }
                _ => e,
            })
            .map(|()| Vec::new()),
        Op::Put => backend
            .put(kind()?, name, &req.payload)
            .map(|()| Vec::new()),
        Op::Replace if opts.append_only => Err(refused(&format!("replacing {}", kind_path(req)))),
        Op::Replace => backend
            .replace(kind()?, name, &req.payload)
            .map(|()| Vec::new()),
        // The object's own bound applies whatever the client asks for.
        Op::Get => backend.get_at_most(kind()?, name, req.arg0.min(kind()?.max_len())),
        Op::GetRange => {
            let k = kind()?;
            let len = usize::try_from(req.arg1)
                .ok()
                .filter(|l| *l as u64 <= k.max_len())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "a range of {} bytes of {} is longer than any such object",
                            req.arg1,
                            k.path(name)
                        ),
                    )
                })?;
            backend.get_range(k, name, req.arg0, len)
        }
        Op::List => protocol::encode_list(&backend.list(kind()?)?),
        Op::Delete => {
            let k = kind()?;
            if opts.append_only && k != FileKind::Lock {
                return Err(refused(&format!("deleting {}", k.path(name))));
            }
            backend.delete(k, name).map(|()| Vec::new())
        }
        Op::RemoveTemporaries if opts.append_only => {
            Err(refused("removing temporary files (`prune`)"))
        }
        Op::RemoveTemporaries => backend
            .remove_temporaries()
            .map(|n| n.to_le_bytes().to_vec()),
    }
}

fn kind_path(req: &Request) -> String {
    req.kind.map_or_else(String::new, |k| k.path(&req.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{read_response, write_request};

    const A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Runs a server over `input`; its responses, and how the session ended.
    fn session(
        b: &LocalBackend,
        append_only: bool,
        input: &[u8],
    ) -> (Vec<u8>, Result<(), ServeError>) {
        let mut out = Vec::new();
        let r = serve(b, ServeOptions { append_only }, input, &mut out);
        (out, r)
    }

    fn hello() -> Vec<u8> {
        let mut v = Vec::new();
        protocol::write_client_hello(&mut v).expect("test");
        v
    }

    fn req(v: &mut Vec<u8>, op: Op, kind: Option<FileKind>, name: &str, p: &[u8]) {
        write_request(v, op, kind, name, [u64::MAX, 0], p).expect("test");
    }

    fn repo() -> (tempfile::TempDir, LocalBackend) {
        let t = tempfile::tempdir().expect("test");
        let b = LocalBackend::new(t.path().join("repo"));
        b.create().expect("test");
        (t, b)
    }

    /// The responses after the server's hello, in order.
    fn responses(out: &[u8], n: usize) -> Vec<io::Result<Vec<u8>>> {
        let mut r = out;
        protocol::read_server_hello(&mut r).expect("hello");
        (0..n)
            .map(|_| read_response(&mut r, u64::MAX).expect("a response"))
            .collect()
    }

    #[test]
    fn append_only_creates_and_refuses_deleting_or_replacing_anything_but_locks() {
        let (_t, b) = repo();
        b.put(FileKind::Snapshot, A, b"snapshot").expect("test");
        b.put(FileKind::Config, "config", b"config").expect("test");
        let mut input = hello();
        let new = A.replace('0', "a");
        req(&mut input, Op::Put, Some(FileKind::Pack), &new, b"new pack");
        req(
            &mut input,
            Op::Put,
            Some(FileKind::Snapshot),
            A,
            b"snapshot",
        );
        req(
            &mut input,
            Op::Put,
            Some(FileKind::Snapshot),
            A,
            b"forgery!",
        );
        req(
            &mut input,
            Op::Replace,
            Some(FileKind::Config),
            "config",
            b"x",
        );
        req(&mut input, Op::Delete, Some(FileKind::Snapshot), A, b"");
        req(&mut input, Op::RemoveTemporaries, None, "", b"");
        req(&mut input, Op::Put, Some(FileKind::Lock), A, b"lock");
        req(&mut input, Op::Delete, Some(FileKind::Lock), A, b"");
        let (out, end) = session(&b, true, &input);
        end.expect("a clean end");
        let r = responses(&out, 8);
        assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
        for (i, e) in r[2..6].iter().enumerate() {
            let e = e.as_ref().expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{i}: {e}");
            assert!(e.to_string().contains("append-only"), "{e}");
        }
        assert!(r[6].is_ok() && r[7].is_ok(), "{r:?}");
        assert_eq!(b.get(FileKind::Snapshot, A).expect("test"), b"snapshot");
        assert_eq!(b.get(FileKind::Config, "config").expect("test"), b"config");
        assert_eq!(b.get(FileKind::Pack, &new).expect("test"), b"new pack");
        assert!(b.list(FileKind::Lock).expect("test").is_empty());

        // Without --append-only the same requests all succeed.
        let (out, end) = session(&b, false, &input);
        end.expect("a clean end");
        assert!(responses(&out, 8).iter().all(Result::is_ok));
        assert!(b.list(FileKind::Snapshot).expect("test").is_empty());
        assert_eq!(b.get(FileKind::Config, "config").expect("test"), b"x");
    }

    #[test]
    fn a_malformed_request_ends_the_session_with_an_error_and_nothing_stored() {
        let (_t, b) = repo();
        let mut input = hello();
        req(&mut input, Op::Put, Some(FileKind::Index), A, b"index");
        input.extend_from_slice(&[99, 0, 0]);
        req(
            &mut input,
            Op::Put,
            Some(FileKind::Index),
            &A.replace('1', "2"),
            b"x",
        );
        let (out, end) = session(&b, false, &input);
        assert!(matches!(end, Err(ServeError::Malformed(_))), "{end:?}");
        let r = responses(&out, 2);
        assert!(r[0].is_ok());
        let e = r[1].as_ref().expect_err("malformed");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("unknown operation 99"), "{e}");
        assert_eq!(b.list(FileKind::Index).expect("test").len(), 1);

        // A stranger's bytes instead of a hello; a stream cut inside a request.
        let (_, end) = session(&b, false, b"SSH-2.0-OpenSSH\r\n");
        assert!(matches!(end, Err(ServeError::Malformed(_))));
        let mut cut = hello();
        req(
            &mut cut,
            Op::Put,
            Some(FileKind::Index),
            &A.replace('1', "3"),
            b"payload",
        );
        cut.truncate(cut.len() - 2);
        let (_, end) = session(&b, false, &cut);
        assert!(matches!(
            end,
            Err(ServeError::Malformed(FrameError::Truncated(_)))
        ));
        assert_eq!(b.list(FileKind::Index).expect("test").len(), 1);
        // An empty stream is a client that went away: a clean end.
        session(&b, false, b"").1.expect("clean");
    }

    #[test]
    fn every_random_byte_stream_ends_without_a_panic() {
        let (_t, b) = repo();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            let mut input = hello();
            let len = (i * 7) % 300;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(seed as u8);
            }
            // Mostly small op and kind bytes, to get past the first checks.
            if input.len() > 14 {
                input[12] %= 9;
                input[13] %= 10;
            }
            let _ = session(&b, i % 2 == 0, &input);
        }
    }
}
