//! A repository served by `cairn serve` on another host, reached through the system `ssh`
//! (`ssh://[user@]host[:port]/path`; docs/serve-protocol.md).
//!
//! Each connection is one `ssh [-p PORT] [USER@]HOST <serve command> serve --repo PATH`
//! process speaking the protocol over its stdin and stdout, so `~/.ssh/config` applies (host
//! aliases, keys, known hosts) and a forced command in the server's `authorized_keys` takes
//! over (`command="cairn serve --append-only --repo /srv/cairn"`: then the server's path is
//! the one that counts). ssh runs in batch mode (it never asks for a password or a host key
//! on a terminal) with keep-alives, so a dead link ends within a minute. Up to
//! [`SshOptions::connections`] connections are opened as requests need them and kept for the
//! command's lifetime.
//!
//! The server makes every object durable before it answers (a local repository's temp →
//! fsync → rename → fsync), so a `put` that returns is stored whole. A connection that fails
//! (ssh cannot connect, the link drops, the server ends the session) is replaced and the request
//! sent again with exponential backoff (0.25 s doubling to 10 s), within one retry budget for
//! the whole command (`retry_for`, `--retry-timeout`), as for the other remote backends: every
//! request here may be sent twice (a `put` of a stored object of the same length is a no-op, a
//! `delete` of a missing one is not an error). What ssh reports that waiting cannot change (a
//! refused key, an unknown host key, an unknown host, a server that is not `cairn serve`) is
//! returned at once. An error the server answers (not found, refused by an append-only server)
//! is returned as it is, naming the location.

use std::io::{self, BufReader, BufWriter, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::limit::{PacedReader, PacedWriter};
use super::location::Location;
use super::{Backend, FileKind};
use crate::serve::protocol::{self, FrameError, Op};

/// How to reach a `cairn serve` through ssh.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// The ssh client to run (`ssh`, looked up in PATH).
    pub ssh_program: PathBuf,
    /// The program the host runs, put before `serve --repo PATH` in the command ssh sends
    /// (`cairn`; a shell command prefix such as `/opt/cairn/bin/cairn`).
    pub serve_program: String,
    /// Connections (ssh processes) open at once at most.
    pub connections: usize,
    /// How long to keep retrying while connections fail (one budget for the whole command).
    pub retry_for: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            ssh_program: "ssh".into(),
            serve_program: "cairn".into(),
            connections: 4,
            retry_for: Duration::from_secs(120),
        }
    }
}

/// The most of ssh's stderr kept per connection for messages.
const STDERR_KEEP: usize = 8 << 10;

/// One ssh process speaking the protocol.
struct Conn {
    child: Child,
    w: BufWriter<ChildStdin>,
    r: BufReader<ChildStdout>,
    /// The last [`STDERR_KEEP`] bytes ssh (and the server) wrote on stderr.
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Conn {
    fn stderr_text(&self) -> String {
        let b = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Nothing is in flight when a connection is dropped (between requests, or after it
        // failed): the server's session ends with ssh, and no object is half-stored.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection failure: what went wrong, and whether waiting may help.
struct Failure {
    why: String,
    transient: bool,
}

/// ssh's (and the server's) messages that waiting does not change.
const PERMANENT: [&str; 9] = [
    "Permission denied",
    "Host key verification failed",
    "Could not resolve hostname",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Bad configuration option",
    "command not found",
    "No such file or directory",
    "not speaking the cairn serve protocol",
    "protocol version",
];

/// A repository behind `cairn serve`, reached through ssh (see the module documentation).
pub struct SshBackend {
    location: Location,
    display: String,
    /// ssh's arguments up to and including the remote command.
    args: Vec<String>,
    opts: SshOptions,
    idle: Mutex<Vec<Conn>>,
    /// Connections open (idle or in use).
    open: Mutex<usize>,
    freed: Condvar,
    /// Since when every connection attempt has failed (the shared retry budget).
    failing_since: super::failing::FailingSince,
    /// Bandwidth limits: requests are written and answers read piece by piece.
    limits: super::Limits,
}

/// Single-quotes a word for the remote shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshBackend {
    /// Builds the backend for an `ssh://` location; nothing is contacted until first use.
    pub fn open(location: &Location, opts: SshOptions) -> io::Result<SshBackend> {
        let Location::Ssh {
            user,
            host,
            port,
            path,
        } = location
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{location} is not an ssh:// location"),
            ));
        };
        let mut args: Vec<String> = [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ]
        .map(String::from)
        .into();
        if let Some(p) = port {
            args.extend(["-p".into(), p.to_string()]);
        }
        args.push("--".into());
        args.push(match user {
            Some(u) => format!("{u}@{host}"),
            None => host.clone(),
        });
        args.push(format!(
            "{} serve --repo {}",
            opts.serve_program,
            shell_quote(path)
        ));
        Ok(SshBackend {
            display: location.to_string(),
            location: location.clone(),
            args,
            opts: SshOptions {
                connections: opts.connections.max(1),
                ..opts
            },
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            freed: Condvar::new(),
            failing_since: Default::default(),
            limits: super::Limits::default(),
        })
    }

    /// Paces requests by `limits.upload` and answers by `limits.download`.
    pub fn with_limits(mut self, limits: super::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The host, for messages.
    fn host(&self) -> &str {
        match &self.location {
            Location::Ssh { host, .. } => host,
            _ => "",
        }
    }

    /// Starts ssh and exchanges hellos.
    fn connect(&self) -> Result<Conn, Failure> {
        let mut child = Command::new(&self.opts.ssh_program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure {
                why: format!("cannot run {}: {e}", self.opts.ssh_program.display()),
                transient: false,
            })?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    if k.len() > STDERR_KEEP {
                        let cut = k.len() - STDERR_KEEP;
                        k.drain(..cut);
                    }
                }
            });
        }
        let (Some(w), Some(r)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Failure {
                why: "ssh started without pipes".into(),
                transient: false,
            });
        };
        let mut conn = Conn {
            child,
            w: BufWriter::with_capacity(1 << 16, w),
            r: BufReader::with_capacity(1 << 16, r),
            stderr,
        };
        let hello = protocol::write_client_hello(&mut conn.w)
            .map_err(FrameError::Io)
            .and_then(|()| protocol::read_server_hello(&mut conn.r));
        match hello {
            Ok((protocol::VERSION, _flags)) => Ok(conn),
            Ok((v, _)) => Err(Failure {
                why: format!(
                    "the server speaks cairn serve protocol version {v}; this cairn speaks \
                     version {}: install the same cairn release on both sides",
                    protocol::VERSION
                ),
                transient: false,
            }),
            Err(e) => Err(self.failed(conn, e)),
        }
    }

    /// What a connection that failed with `e` died of: ssh's own words when it said some.
    fn failed(&self, mut conn: Conn, e: FrameError) -> Failure {
        // ssh has usually exited by now; give its stderr a moment to arrive.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(Some(_)) = conn.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(20));
        let said = conn.stderr_text();
        let said = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let why = match (&e, said.is_empty()) {
            (FrameError::BadMagic(_), _) => format!(
                "{e}: the host did not start `cairn serve` (is cairn installed there and in the \
                 PATH of non-interactive ssh sessions? does a shell start-up file print \
                 something?){}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" ssh said: {said}")
                }
            ),
            (_, true) => format!("the connection to {} ended: {e}", self.host()),
            (_, false) => format!("the connection to {} ended: {said}", self.host()),
        };
        let transient = !PERMANENT.iter().any(|p| why.contains(p));
        Failure { why, transient }
    }

    /// A connection for one request: an idle one, a new one while fewer than `connections`
    /// are open, else the next one freed.
    fn take(&self) -> Result<Conn, Failure> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return Ok(c);
            }
            if *open < self.opts.connections {
                *open += 1;
                drop(open);
                let c = self.connect();
                if c.is_err() {
                    self.release(None);
                }
                return c;
            }
            open = self.freed.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a connection to the pool, or (None) counts a dropped one as closed.
    fn release(&self, conn: Option<Conn>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match conn {
            Some(c) => self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c),
            None => *open = open.saturating_sub(1),
        }
        self.freed.notify_one();
    }

    /// One exchange on one connection: Ok(the server's answer), or the connection's failure.
    fn exchange(
        &self,
        op: Op,
        kind: Option<FileKind>,
        name: &str,
        args: [u64; 2],
        payload: &[u8],
        limit: u64,
    ) -> Result<io::Result<Vec<u8>>, Failure> {
        let mut conn = self.take()?;
        let answer = match (
            self.limits.upload.as_deref(),
            self.limits.download.as_deref(),
        ) {
            (None, None) => protocol::write_request(&mut conn.w, op, kind, name, args, payload)
                .map_err(FrameError::Io)
                .and_then(|()| protocol::read_response(&mut conn.r, limit)),
            (up, down) => {
                let mut w = PacedWriter::new(&mut conn.w, up);
                protocol::write_request(&mut w, op, kind, name, args, payload)
                    .map_err(FrameError::Io)
                    .and_then(|()| match down {
                        Some(l) => {
                            protocol::read_response(&mut PacedReader::new(&mut conn.r, l), limit)
                        }
                        None => protocol::read_response(&mut conn.r, limit),
                    })
            }
        };
        match answer {
            // The server ends a session after refusing a malformed request: not reused.
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidInput => {
                drop(conn);
                self.release(None);
                Ok(Err(e))
            }
            Ok(a) => {
                self.release(Some(conn));
                Ok(a)
            }
            Err(e) => {
                let f = self.failed(conn, e);
                self.release(None);
                Err(f)
            }
        }
    }

    /// Sends one request, again on a new connection while connections fail and the retry
    /// budget lasts; the server's answer (its error naming the location).
    fn call(
        &self,
        op: Op,
        kind: Option<FileKind>,
        name: &str,
        args: [u64; 2],
        payload: &[u8],
        limit: u64,
    ) -> io::Result<Vec<u8>> {
        let what = match kind {
            Some(k) => format!("{} {}", op_name(op), k.path(name)),
            None => op_name(op).to_string(),
        };
        // Larger than any object: the server would refuse it before reading it, and end the
        // session; no use sending it (again and again).
        if payload.len() as u64 > protocol::max_object_len() {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "{what} on {}: {} bytes are more than any object can be ({} bytes at most)",
                    self.display,
                    payload.len(),
                    protocol::max_object_len()
                ),
            ));
        }
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let failing = self.failing_since.failing_for().unwrap_or_default();
            if failing > self.opts.retry_for {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what} not tried: the connection to {} has failed for {:.1}s, more \
                         than --retry-timeout",
                        self.display,
                        failing.as_secs_f64()
                    ),
                ));
            }
            let started = Instant::now();
            match self.exchange(op, kind, name, args, payload, limit) {
                Ok(answer) => {
                    self.failing_since.record(true, started);
                    return answer.map_err(|e| {
                        io::Error::new(e.kind(), format!("{what} on {}: {e}", self.display))
                    });
                }
                Err(f) => {
                    self.failing_since.record(false, started);
                    let elapsed = self.failing_since.failing_for().unwrap_or_default();
                    if !f.transient {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("{what} on {}: {}", self.display, f.why),
                        ));
                    }
                    if elapsed + delay > self.opts.retry_for {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!(
                                "gave up after {:.1}s and {attempts} attempts: {} keeps failing \
                                 ({what}): {}. What was stored completely stays valid: the \
                                 repository can be read, and the next run continues",
                                elapsed.as_secs_f64(),
                                self.display,
                                f.why
                            ),
                        ));
                    }
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Create => "create",
        Op::Put => "put",
        Op::Replace => "replace",
        Op::Get => "get",
        Op::GetRange => "read range of",
        Op::List => "list",
        Op::Delete => "delete",
        Op::RemoveTemporaries => "remove temporary files",
    }
}

impl Backend for SshBackend {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn create(&self) -> io::Result<()> {
        self.call(Op::Create, None, "", [0, 0], &[], 0).map(drop)
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.call(Op::Put, Some(kind), name, [0, 0], data, 0)
            .map(drop)
    }

    fn replace(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.call(Op::Replace, Some(kind), name, [0, 0], data, 0)
            .map(drop)
    }

    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let limit = limit.min(kind.max_len());
        match self.call(Op::Get, Some(kind), name, [limit, 0], &[], limit) {
            // The server's FileTooLarge names the object; keep its structured form here.
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                Err(super::ObjectTooLarge::error(kind, name, limit, None))
            }
            r => r,
        }
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let got = self.call(
            Op::GetRange,
            Some(kind),
            name,
            [offset, len as u64],
            &[],
            len as u64,
        )?;
        if got.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} on {}: {} bytes at {offset} asked for, {} answered",
                    kind.path(name),
                    self.display,
                    len,
                    got.len()
                ),
            ));
        }
        Ok(got)
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let b = self.call(
            Op::List,
            Some(kind),
            "",
            [0, 0],
            &[],
            protocol::MAX_LIST_BYTES,
        )?;
        protocol::decode_list(kind, &b).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("list {}/ on {}: {e}", kind.dir(), self.display),
            )
        })
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.call(Op::Delete, Some(kind), name, [0, 0], &[], 0)
            .map(drop)
    }

    fn remove_temporaries(&self) -> io::Result<u64> {
        let b = self.call(Op::RemoveTemporaries, None, "", [0, 0], &[], 8)?;
        let a: [u8; 8] = b.as_slice().try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "remove temporary files on {}: a malformed answer",
                    self.display
                ),
            )
        })?;
        Ok(u64::from_le_bytes(a))
    }

    fn connections(&self) -> usize {
        self.opts.connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_command_line_quotes_the_path_and_keeps_the_host_from_being_an_option() {
        let loc = Location::parse("ssh://me@nas:2222/srv/it's here").expect("test");
        let b = SshBackend::open(&loc, SshOptions::default()).expect("test");
        let n = b.args.len();
        assert_eq!(
            &b.args[n - 5..],
            [
                "-p",
                "2222",
                "--",
                "me@nas",
                r"cairn serve --repo '/srv/it'\''s here'"
            ]
        );
        assert!(b.args.contains(&"BatchMode=yes".to_string()));
        let loc = Location::parse("ssh://nas/srv/repo").expect("test");
        let b = SshBackend::open(&loc, SshOptions::default()).expect("test");
        assert!(!b.args.contains(&"-p".to_string()));
        assert_eq!(b.location(), "ssh://nas/srv/repo");
    }

    #[test]
    fn a_missing_ssh_program_is_an_error_naming_it_at_once() {
        let loc = Location::parse("ssh://nas/srv/repo").expect("test");
        let b = SshBackend::open(
            &loc,
            SshOptions {
                ssh_program: "/nonexistent/ssh".into(),
                ..SshOptions::default()
            },
        )
        .expect("test");
        let started = Instant::now();
        let e = b.list(FileKind::Snapshot).expect_err("no ssh");
        assert!(e.to_string().contains("/nonexistent/ssh"), "{e}");
        assert!(e.to_string().contains("ssh://nas/srv/repo"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_peer_that_is_not_cairn_serve_is_named_and_not_retried() {
        let loc = Location::parse("ssh://nas/srv/repo").expect("test");
        // `echo` prints its arguments and exits: a host whose shell says something else.
        let b = SshBackend::open(
            &loc,
            SshOptions {
                ssh_program: "echo".into(),
                retry_for: Duration::from_secs(600),
                ..SshOptions::default()
            },
        )
        .expect("test");
        let started = Instant::now();
        let e = b.get(FileKind::Config, "config").expect_err("not cairn");
        assert!(e.to_string().contains("did not start `cairn serve`"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
