//! Repositories on an SFTP server or in an S3-compatible bucket, through OpenDAL.
//!
//! The same promise as the local backend (repo-format.md §10, §10.4): when `put` returns, the
//! object is stored whole under its final name and has been verified, and no partial object is
//! ever visible under a final name.
//!
//! - S3: one PUT per object (atomic on every S3 implementation) carrying `Content-MD5`, so the
//!   server refuses a body damaged on the way; the ETag it answers (the MD5 of what it stored)
//!   is compared with ours, or the stored size is checked where the ETag is not an MD5.
//! - SFTP: written under a temporary name (`.tmp-<random>`) in the final directory, read back
//!   and compared, then renamed to its final name.
//!
//! Every operation is retried with exponential backoff (0.25 s doubling to 10 s) while the
//! server fails in a way that may pass (refused or dropped connections, timeouts, 5xx,
//! throttling). `retry_for` (2 minutes by default, `--retry-timeout`) is one budget for the
//! whole command: it runs from the first of an unbroken series of failures, whatever operation
//! fails, so once the server has failed that long the operation gives up with an error naming
//! the server and the object, and every later one (removing the lock file, say) fails at once
//! instead of getting a budget of its own. Errors that retrying cannot fix (not found, access denied,
//! bad credentials, unknown host key) are returned at once.
//!
//! Bandwidth limits ([`Limits`]): a download is read as a stream and each piece waits for the
//! download limiter as it arrives (the server is held back by TCP flow control). An S3 upload
//! is sent as a stream whose pieces wait for the upload limiter (`paced_http.rs`); an SFTP
//! upload waits for its pieces to be granted before it is sent whole (OpenDAL's SFTP writer
//! takes the object as one buffer), so over a few seconds its rate is the limit's.
//!
//! SFTP goes through the system `ssh`, so `~/.ssh/config` applies (host aliases, ports, keys,
//! `UserKnownHostsFile`). cairn never sets a host-key policy of its own: OpenDAL insists on
//! passing `StrictHostKeyChecking`, so cairn passes the value the user's configuration gives
//! (`ssh -G`); with none, ssh's default `ask` in batch mode refuses an unknown host, and the
//! message says how to add its key.

use std::future::IntoFuture;
use std::io;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use opendal::{Buffer, ErrorKind as DalKind, Operator};

use super::location::Location;
use super::{
    temp_name, Backend, FileKind, Limits, ObjectTooLarge, RateLimiter, RemoteOptions, S3Credentials,
};
use crate::id::is_id_name;

/// A repository on an SFTP server or in an S3-compatible bucket (see the module
/// documentation; repo-format.md §10.4). Its blocking calls run on a small runtime of its own,
/// with at most [`RemoteOptions::connections`] operations in flight.
pub struct RemoteBackend {
    op: Operator,
    /// Drives OpenDAL's futures; blocking callers enter it with `block_on`.
    rt: tokio::runtime::Runtime,
    location: Location,
    opts: RemoteOptions,
    slots: Slots,
    /// SFTP: ssh's verdict on a first connection, asked once (see [`ssh_diagnose`]).
    preflight: std::sync::OnceLock<Option<(String, bool)>>,
    /// Since when every operation has failed (None: the last one succeeded). The retry budget
    /// (`retry_for`) runs from here and is shared by all operations of the command, so a dead
    /// server ends the command within it, lock removal included.
    failing_since: super::failing::FailingSince,
    /// Bandwidth limits (see the module documentation).
    limits: Limits,
}

/// The shortest attempt: an operation started with little budget left still gets this long.
const LAST_ATTEMPT: Duration = Duration::from_secs(5);

/// A counting semaphore: at most `connections` operations in flight.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.into())
}

impl RemoteBackend {
    /// Connects lazily: building the backend contacts no server.
    pub fn open(location: &Location, opts: RemoteOptions) -> io::Result<RemoteBackend> {
        let op = build_operator(location, "", &opts.s3)?;
        let connections = opts.connections.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-remote")
            .enable_all()
            .build()?;
        Ok(RemoteBackend {
            op,
            rt,
            location: location.clone(),
            opts: RemoteOptions {
                connections,
                ..opts
            },
            slots: Slots {
                free: Mutex::new(connections),
                freed: Condvar::new(),
            },
            preflight: std::sync::OnceLock::new(),
            failing_since: Default::default(),
            limits: Limits::default(),
        })
    }

    /// Paces uploads by `limits.upload` and downloads by `limits.download`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        if let (Some(up), false) = (&limits.upload, self.is_sftp()) {
            let paced = super::paced_http::PacedHttp::new(up.clone());
            let client = opendal::raw::HttpClient::with(paced);
            self.op = self
                .op
                .clone()
                .layer(opendal::layers::HttpClientLayer::new(client));
        }
        self.limits = limits;
        self
    }

    /// SFTP: waits, piece by piece, until `n` bytes may be sent (an S3 body is paced as it
    /// is sent, by its HTTP client).
    fn pace_upload(&self, n: usize) {
        if !self.is_sftp() {
            return;
        }
        if let Some(l) = self.limits.upload.as_deref() {
            let mut left = n;
            while left > 0 {
                let piece = left.min(l.piece());
                l.take(piece);
                left -= piece;
            }
        }
    }

    /// Reads `range` of `path` (None: all of it; `len`: the bytes expected) in one request,
    /// streamed and paced piece by piece as it arrives under a download limit.
    fn read_range(
        &self,
        what: &str,
        path: &str,
        range: Option<std::ops::Range<u64>>,
        len: usize,
    ) -> io::Result<Buffer> {
        match (&self.limits.download, range) {
            (None, Some(r)) => {
                self.run(what, path, len, || self.op.read_with(path).range(r.clone()))
            }
            (None, None) => self.run(what, path, len, || self.op.read(path)),
            (Some(l), r) => self.run(what, path, len, || {
                read_paced(&self.op, path, r.clone(), l.clone())
            }),
        }
    }

    fn is_sftp(&self) -> bool {
        matches!(self.location, Location::Sftp { .. })
    }

    /// Runs one operation with retries; see the module documentation.
    fn run<T, F, Fut>(&self, what: &str, path: &str, bytes: usize, f: F) -> io::Result<T>
    where
        F: Fn() -> Fut,
        Fut: IntoFuture<Output = opendal::Result<T>>,
    {
        if let Location::Sftp { endpoint, .. } = &self.location {
            // A wrong host key, user or key fails at once with ssh's words, instead of after
            // the connection pool's timeout.
            let verdict = self
                .preflight
                .get_or_init(|| ssh_diagnose(endpoint, self.opts.retry_for));
            if let Some((why, false)) = verdict {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{what} {path} on {}: {why}", self.location),
                ));
            }
        }
        let _slot = self.slots.acquire();
        // A transfer may take its time on a slow link: one extra second per MiB, and under a
        // bandwidth limit the time its bytes take at the limit with every connection sharing it.
        let limited = [&self.limits.upload, &self.limits.download]
            .into_iter()
            .flatten()
            .map(|l| l.time_for(bytes as u64) * self.opts.connections as u32)
            .max()
            .unwrap_or_default();
        let allowance = Duration::from_secs((bytes >> 20) as u64) + limited;
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // The budget left: what the failures so far (of any operation) have not used. Spent:
            // the command is giving up, and nothing more is tried (the lock file's removal
            // does not get a budget of its own).
            let failing = self.failing_since.failing_for().unwrap_or_default();
            if failing > self.opts.retry_for {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what} {path} not tried: the server {} has failed for {}, more than \
                         --retry-timeout",
                        self.location,
                        human(failing)
                    ),
                ));
            }
            let left = self.opts.retry_for.saturating_sub(failing);
            let per_attempt = left.max(LAST_ATTEMPT) + allowance;
            let started = Instant::now();
            let outcome = self
                .rt
                .block_on(async { tokio::time::timeout(per_attempt, f().into_future()).await });
            let (kind, mut message, mut retry) = match outcome {
                Ok(Ok(v)) => {
                    self.failing_since.record(true, started);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    let retry = retryable(&e);
                    (io_kind(&e), describe(&e), retry)
                }
                Err(_) => (
                    io::ErrorKind::TimedOut,
                    format!("no answer within {}", human(per_attempt)),
                    true,
                ),
            };
            // OpenDAL's SFTP connection pool reports a failed ssh connection only as a pool
            // timeout: ask ssh itself what is wrong (and whether waiting can help).
            if let Location::Sftp { endpoint, .. } = &self.location {
                if retry && (message.contains("connection request") || message.contains("ssh")) {
                    let left = self
                        .opts
                        .retry_for
                        .saturating_sub(self.failing_since.failing_for().unwrap_or_default());
                    if let Some((why, transient)) = ssh_diagnose(endpoint, left) {
                        message = why;
                        retry = transient;
                    }
                }
            }
            if !retry {
                // An answer (not found, denied): the server is there.
                self.failing_since
                    .record(!matches!(kind, io::ErrorKind::TimedOut), started);
                return Err(io::Error::new(
                    kind,
                    format!("{what} {path} on {}: {message}", self.location),
                ));
            }
            self.failing_since.record(false, started);
            let elapsed = self.failing_since.failing_for().unwrap_or_default();
            if elapsed + delay > self.opts.retry_for {
                return Err(io::Error::new(
                    kind,
                    format!(
                        "gave up after {} and {attempts} attempts: the server {} keeps failing \
                         ({what} {path}): {message}. What was stored completely stays valid: \
                         the repository can be read, and the next run continues",
                        human(elapsed),
                        self.location
                    ),
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    fn stat_len(&self, path: &str) -> io::Result<Option<u64>> {
        match self.run("stat", path, 0, || self.op.stat(path)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_s3(&self, path: &str, body: Buffer) -> io::Result<()> {
        use md5::{Digest, Md5};
        let data = body.to_bytes();
        let data = &data[..];
        let meta = self.run("write", path, data.len(), || {
            self.op.write(path, body.clone())
        })?;
        let ours = hex::encode(Md5::digest(data));
        match meta
            .etag()
            .map(|e| e.trim_matches('"').to_ascii_lowercase())
        {
            Some(etag) if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) => {
                if etag != ours {
                    let _ = self.run("delete", path, 0, || self.op.delete(path));
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} stored {path} with MD5 {etag}, not the {ours} that was sent",
                            self.location
                        ),
                    ));
                }
            }
            // No MD5 ETag (some servers, encryption with KMS): check what was stored by size.
            _ => self.verify_len(path, data.len())?,
        }
        Ok(())
    }

    fn verify_len(&self, path: &str, want: usize) -> io::Result<()> {
        match self.stat_len(path)? {
            Some(n) if n == want as u64 => Ok(()),
            got => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} stored {path} with {} bytes, not the {want} that were sent",
                    self.location,
                    got.map_or("no".to_string(), |n| n.to_string())
                ),
            )),
        }
    }

    fn put_sftp(&self, path: &str, body: Buffer) -> io::Result<()> {
        let data = body.to_bytes();
        let data = &data[..];
        let tmp = match path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{}", temp_name()),
            None => temp_name(),
        };
        let result = (|| {
            self.pace_upload(data.len());
            self.run("write", &tmp, data.len(), || {
                self.op.write(&tmp, body.clone())
            })?;
            let back = self.read_range("read back", &tmp, None, data.len())?;
            if back.len() != data.len() || back.to_bytes() != data {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} gave back {} bytes for {tmp} that differ from the {} written",
                        self.location,
                        back.len(),
                        data.len()
                    ),
                ));
            }
            match self.run("rename", &tmp, 0, || self.op.rename(&tmp, path)) {
                Ok(()) => Ok(true),
                // A retried rename whose first attempt went through, or a concurrent writer of
                // the same content-named object: what matters is the final object (the
                // temporary file may still be there).
                Err(e) => match self.stat_len(path) {
                    Ok(Some(n)) if n == data.len() as u64 => Ok(false),
                    _ => Err(e),
                },
            }
        })();
        if !matches!(result, Ok(true)) {
            let _ = self.run("delete", &tmp, 0, || self.op.delete(&tmp));
        }
        result.map(|_| ())
    }

    fn list_dir(&self, dir: &str, recursive: bool) -> io::Result<Vec<(String, u64)>> {
        let prefix = format!("{dir}/");
        let entries = match self.run("list", &prefix, 0, || {
            self.op.list_with(&prefix).recursive(recursive)
        }) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| {
                let name = e.path().rsplit('/').next().unwrap_or_default().to_string();
                (name, e.metadata().content_length())
            })
            .collect())
    }
}

/// Reads `range` of `path` (None: all of it) in one request as a stream, each piece waiting
/// for `limit` as it arrives: while it waits the connection is not read, and TCP holds the
/// server back.
async fn read_paced(
    op: &Operator,
    path: &str,
    range: Option<std::ops::Range<u64>>,
    limit: std::sync::Arc<RateLimiter>,
) -> opendal::Result<Buffer> {
    use futures_util::TryStreamExt;
    let reader = op.reader(path).await?;
    let mut stream = match range {
        Some(r) => reader.into_stream(r).await?,
        None => reader.into_stream(..).await?,
    };
    let mut pieces = Vec::new();
    while let Some(piece) = stream.try_next().await? {
        let wait = limit.reserve(piece.len());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        pieces.push(piece);
    }
    Ok(pieces.into_iter().flatten().collect())
}

/// Reads `range` of `path` in one request, copying each piece into `out` as it arrives (no
/// buffer of the whole range besides the caller's, which it reuses from read to read), each
/// piece waiting for `limit` first. Returns the bytes read; more than `out` holds is an error.
async fn stream_into(
    op: &Operator,
    path: &str,
    range: std::ops::Range<u64>,
    out: &std::cell::RefCell<&mut [u8]>,
    limit: Option<&RateLimiter>,
) -> opendal::Result<usize> {
    use futures_util::TryStreamExt;
    let mut stream = op.reader(path).await?.into_stream(range).await?;
    let mut at = 0;
    while let Some(piece) = stream.try_next().await? {
        if let Some(l) = limit {
            let wait = l.reserve(piece.len());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let mut out = out.borrow_mut();
        for chunk in piece {
            let end = at + chunk.len();
            let Some(dst) = out.get_mut(at..end) else {
                return Err(opendal::Error::new(
                    DalKind::Unexpected,
                    "the server sent more bytes than the range asked for",
                ));
            };
            dst.copy_from_slice(&chunk);
            at = end;
        }
    }
    Ok(at)
}

/// The OpenDAL operator for a location. S3 is configured from `s3` alone: OpenDAL's own
/// loading of AWS variables and files is turned off, so the library reads no environment.
fn build_operator(
    location: &Location,
    sftp_root_override: &str,
    s3: &S3Credentials,
) -> io::Result<Operator> {
    let op = match location {
        Location::Local(_) => return Err(invalid("a local path is not a remote location")),
        Location::Ssh { .. } => {
            return Err(invalid(format!(
                "{location} is served by `cairn serve`, not an SFTP server or a bucket"
            )))
        }
        Location::Sftp { endpoint, path } => {
            let root = if sftp_root_override.is_empty() {
                path.as_str()
            } else {
                sftp_root_override
            };
            // The user's own host-key policy (~/.ssh/config), never a stricter or looser one of
            // cairn's: OpenDAL always passes one to ssh, so it is the one ssh would apply.
            let b = opendal::services::Sftp::default()
                .endpoint(endpoint)
                .root(root)
                .known_hosts_strategy(SshView::of(endpoint).strategy);
            Operator::new(b).map(|b| b.finish())
        }
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            let region = s3.region.as_deref().unwrap_or("us-east-1");
            let mut b = opendal::services::S3::default()
                .endpoint(endpoint)
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(region)
                .checksum_algorithm("md5")
                .disable_config_load()
                .disable_ec2_metadata();
            if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                b = b.access_key_id(id).secret_access_key(secret);
            }
            if let Some(token) = &s3.session_token {
                b = b.session_token(token);
            }
            Operator::new(b).map(|b| b.finish())
        }
    };
    op.map_err(|e| invalid(format!("{location}: {e}")))
}

/// Messages of servers and of ssh that waiting does not change.
const PERMANENT: [&str; 9] = [
    "Permission denied",
    "Host key verification failed",
    "Could not resolve hostname",
    "No such file or directory",
    "Bad configuration option",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AccessDenied",
];

/// What the user's ssh configuration says about a destination (`ssh -G`, which reads
/// `~/.ssh/config` and `/etc/ssh/ssh_config` exactly as a connection would, without
/// connecting).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SshView {
    /// OpenDAL's name for the `StrictHostKeyChecking` in force: `yes` → strict, `accept-new`
    /// → add, `no` → accept; ssh's default `ask` is strict too, since cairn runs ssh in batch
    /// mode, where `ask` refuses an unknown host.
    strategy: &'static str,
    host: String,
    port: String,
    user: String,
    /// The first `UserKnownHostsFile`.
    known_hosts: String,
}

impl SshView {
    fn of(endpoint: &str) -> SshView {
        let out = std::process::Command::new("ssh")
            .args(["-G", endpoint])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        let text = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            _ => String::new(),
        };
        Self::parse(&text, endpoint)
    }

    /// Reads `ssh -G` output (`keyword value` lines, keywords in lower case).
    fn parse(text: &str, endpoint: &str) -> SshView {
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim().to_string())
        };
        let strategy = match get("stricthostkeychecking").as_deref() {
            Some("accept-new") => "add",
            Some("false" | "no" | "off") => "accept",
            _ => "strict",
        };
        let fallback_host = endpoint
            .strip_prefix("ssh://")
            .unwrap_or(endpoint)
            .rsplit('@')
            .next()
            .unwrap_or(endpoint)
            .to_string();
        SshView {
            strategy,
            host: get("hostname").unwrap_or(fallback_host),
            port: get("port").unwrap_or_else(|| "22".into()),
            user: get("user").unwrap_or_default(),
            known_hosts: get("userknownhostsfile")
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        }
    }

    /// What to tell a user whose ssh refused the server's host key (`err`: ssh's stderr).
    fn host_key_advice(&self, err: &str) -> Option<String> {
        if !err.contains("Host key verification failed") {
            return None;
        }
        let (host, port, file) = (&self.host, &self.port, &self.known_hosts);
        let entry = if port == "22" {
            host.clone()
        } else {
            format!("[{host}]:{port}")
        };
        if err.contains("IDENTIFICATION HAS CHANGED") {
            return Some(format!(
                "Host key verification failed: the host key of {entry} is not the one recorded \
                 in {file}. It may have changed (a reinstalled server) or someone may be \
                 intercepting the connection; cairn does not connect. Ask the server's \
                 administrator for the new key's fingerprint; if it is right, remove the old \
                 entry (`ssh-keygen -f {file} -R '{entry}'`) and add the new one"
            ));
        }
        let login = if self.user.is_empty() {
            host.clone()
        } else {
            format!("{}@{host}", self.user)
        };
        Some(format!(
            "Host key verification failed: ssh does not know the host key of {entry} (no entry \
             in {file}), and cairn never accepts an unknown host by itself. Check the key's \
             fingerprint with the server's administrator, then add it: \
             `ssh-keyscan -p {port} {host} >> {file}`, or connect once with \
             `ssh -p {port} {login}` and answer yes"
        ))
    }
}

/// Runs `ssh -s DEST sftp` as OpenDAL would and returns ssh's own complaint, and whether
/// waiting may help; None when ssh connects fine. The user's host-key settings apply as they
/// are; batch mode only makes ssh refuse, never ask, where it cannot verify a host.
fn ssh_diagnose(endpoint: &str, limit: Duration) -> Option<(String, bool)> {
    use std::process::{Command, Stdio};
    let secs = limit.as_secs().clamp(1, 30);
    let mut child = Command::new("ssh")
        .args(["-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("ConnectTimeout={secs}"))
        .args(["-s", endpoint, "sftp"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < Duration::from_secs(secs + 5) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some((
                    format!("ssh {endpoint} did not connect within {secs}s"),
                    true,
                ));
            }
        }
    };
    if status.success() {
        return None;
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let transient = !PERMANENT.iter().any(|p| err.contains(p));
    if let Some(advice) = SshView::of(endpoint).host_key_advice(&err) {
        return Some((advice, false));
    }
    let why = err
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("ssh failed")
        .to_string();
    Some((why, transient))
}

/// OpenDAL's error with its root cause (the refused connection, the server's answer), without
/// the request context it carries.
fn describe(e: &opendal::Error) -> String {
    let mut root: Option<String> = None;
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        root = Some(s.to_string());
        cur = s.source();
    }
    match root {
        Some(r) => format!("{} ({})", r, e.kind()),
        None => e.to_string(),
    }
}

/// Whether waiting and trying again can help.
fn retryable(e: &opendal::Error) -> bool {
    match e.kind() {
        DalKind::NotFound
        | DalKind::PermissionDenied
        | DalKind::ConfigInvalid
        | DalKind::Unsupported
        | DalKind::IsADirectory
        | DalKind::NotADirectory
        | DalKind::AlreadyExists
        | DalKind::IsSameFile
        | DalKind::ConditionNotMatch
        | DalKind::RangeNotSatisfied => false,
        _ => {
            // ssh's own verdicts on authentication and host keys do not change by waiting.
            let m = e.to_string();
            !PERMANENT.iter().any(|s| m.contains(s))
        }
    }
}

fn io_kind(e: &opendal::Error) -> io::ErrorKind {
    match e.kind() {
        DalKind::NotFound => io::ErrorKind::NotFound,
        DalKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        DalKind::AlreadyExists => io::ErrorKind::AlreadyExists,
        DalKind::RangeNotSatisfied => io::ErrorKind::UnexpectedEof,
        DalKind::ConfigInvalid | DalKind::Unsupported => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn create(&self) -> io::Result<()> {
        if let Location::Sftp { path, .. } = &self.location {
            // The repository directory itself, from the server's root.
            let top = build_operator(&self.location, "/", &self.opts.s3)?;
            let rel = format!("{}/", path.trim_start_matches('/'));
            self.run("create directory", path, 0, || top.create_dir(&rel))?;
        }
        let existing = match self.run("list", "/", 0, || self.op.list("/")) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        if existing.iter().any(|e| {
            let p = e.path().trim_matches('/');
            !p.is_empty()
        }) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the location is not empty",
            ));
        }
        if self.is_sftp() {
            for kind in FileKind::LAYOUT_DIRS {
                let dir = format!("{}/", kind.dir());
                self.run("create directory", &dir, 0, || self.op.create_dir(&dir))?;
            }
        }
        Ok(())
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.put_owned(kind, name, data.to_vec()).map(|_| ())
    }

    fn put_owned(&self, kind: FileKind, name: &str, data: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        let path = kind.path(name);
        match self.stat_len(&path)? {
            Some(n) if n == data.len() as u64 => return Ok(Some(data)),
            // A damaged leftover under a content-hash name: it can only be wrong, replace it.
            Some(_) => self.run("delete", &path, 0, || self.op.delete(&path))?,
            None => {}
        }
        // The buffer becomes the request body as it is: no copy of the object.
        let body = Buffer::from(data);
        if self.is_sftp() {
            self.put_sftp(&path, body)?;
        } else {
            self.put_s3(&path, body)?;
        }
        Ok(None)
    }

    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let path = kind.path(name);
        // The size first, so an object larger than the bound is never transferred; then exactly
        // that many bytes (an object replaced meanwhile yields at most those, and fails its hash).
        let size = self
            .stat_len(&path)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{path} not found")))?;
        if size > limit {
            return Err(ObjectTooLarge::error(kind, name, limit, Some(size)));
        }
        if size == 0 {
            // S3 refuses any range of an empty object; a zero-length file is just that.
            return Ok(Vec::new());
        }
        let b = self.read_range("read", &path, Some(0..size), size as usize)?;
        if b.len() as u64 > limit {
            return Err(ObjectTooLarge::error(kind, name, limit, None));
        }
        Ok(b.to_vec())
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(kind, name, offset, len, &mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }

    fn get_range_into<'b>(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        let path = kind.path(name);
        // Grown, never shrunk: a reused buffer is not zeroed again for every read.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let out = std::cell::RefCell::new(&mut buf[..len]);
        let end = offset + len as u64;
        let got = self.run("read", &path, len, || {
            stream_into(
                &self.op,
                &path,
                offset..end,
                &out,
                self.limits.download.as_deref(),
            )
        })?;
        if got != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: {got} bytes at {offset}, wanted {len}"),
            ));
        }
        Ok(&buf[..len])
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let mut out: Vec<(String, u64)> = match kind {
            FileKind::Config => {
                return Ok(self
                    .stat_len("config")?
                    .map(|n| ("config".to_string(), n))
                    .into_iter()
                    .collect())
            }
            k if k.fans_out() => self.list_dir(k.dir(), true)?,
            k => self.list_dir(k.dir(), false)?,
        };
        out.retain_mut(|(name, _)| match kind {
            FileKind::KeyCopy => match name.strip_suffix(".copy") {
                Some(n) if is_id_name(n) => {
                    *name = n.to_string();
                    true
                }
                _ => false,
            },
            _ => is_id_name(name),
        });
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let path = kind.path(name);
        match self.run("delete", &path, 0, || self.op.delete(&path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn remove_temporaries(&self) -> io::Result<u64> {
        if !self.is_sftp() {
            return Ok(0); // an S3 PUT is atomic: there are no temporary objects
        }
        let entries = self.run("list", "/", 0, || self.op.list_with("/").recursive(true))?;
        let mut freed = 0;
        for e in entries {
            let path = e.path().to_string();
            let base = path.rsplit('/').next().unwrap_or_default();
            if e.metadata().is_file() && base.starts_with(".tmp-") {
                freed += e.metadata().content_length();
                self.run("delete", &path, 0, || self.op.delete(&path))?;
            }
        }
        Ok(freed)
    }

    fn connections(&self) -> usize {
        self.opts.connections
    }

    fn is_remote(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP server that answers every request 404 and keeps each request's head.
    fn recording_server() -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let heads = std::sync::Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                kept.lock()
                    .expect("test")
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (format!("http://{addr}"), heads)
    }

    #[test]
    fn s3_requests_are_signed_with_the_credentials_given_and_never_with_the_environments() {
        let (url, heads) = recording_server();
        let loc = Location::parse(&format!("s3:{url}/bucket/repo")).expect("location");
        let opts = |s3| RemoteOptions {
            connections: 1,
            retry_for: Duration::from_secs(5),
            s3,
            ..RemoteOptions::default()
        };
        // What the library must not read: credentials and a region in its environment.
        let env = [
            ("AWS_ACCESS_KEY_ID", "KEYFROMENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret from env"),
            ("AWS_SESSION_TOKEN", "TOKENFROMENV"),
            ("AWS_REGION", "env-region-1"),
            ("AWS_DEFAULT_REGION", "env-region-2"),
        ];
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let unsigned = RemoteBackend::open(&loc, opts(S3Credentials::default())).expect("open");
        let refused = unsigned.get(FileKind::Config, "config");
        let given = RemoteBackend::open(
            &loc,
            opts(S3Credentials {
                region: Some("given-region-1".into()),
                access_key_id: Some("KEYGIVEN".into()),
                secret_access_key: Some("secret given".into()),
                session_token: None,
            }),
        )
        .expect("open");
        let asked = given.get(FileKind::Config, "config");
        for (k, _) in env {
            std::env::remove_var(k);
        }
        let e = refused.expect_err("no credentials");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let e = asked.expect_err("nothing is stored");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let heads = heads.lock().expect("test");
        // Only the second backend reached the server, signed with what it was given.
        assert!(!heads.is_empty());
        for h in heads.iter() {
            assert!(h.contains("Credential=KEYGIVEN/"), "{h}");
            assert!(h.contains("/given-region-1/s3/aws4_request"), "{h}");
            assert!(!h.contains("FROMENV") && !h.contains("env-region"), "{h}");
        }
    }

    #[test]
    fn the_users_host_key_policy_is_the_one_passed_on() {
        let view = |v: &str| {
            SshView::parse(
                &format!("user me\nhostname nas\nport 2222\nstricthostkeychecking {v}\nuserknownhostsfile /h/kh /h/kh2\n"),
                "nas-alias",
            )
        };
        assert_eq!(view("true").strategy, "strict");
        assert_eq!(view("ask").strategy, "strict");
        assert_eq!(view("accept-new").strategy, "add");
        assert_eq!(view("false").strategy, "accept");
        let v = view("ask");
        assert_eq!(
            (v.host.as_str(), v.port.as_str(), v.known_hosts.as_str()),
            ("nas", "2222", "/h/kh")
        );
        // No answer from ssh -G: refuse unknown hosts.
        let none = SshView::parse("", "ssh://me@host:22");
        assert_eq!((none.strategy, none.host.as_str()), ("strict", "host:22"));
    }

    #[test]
    fn an_unknown_host_key_is_refused_with_how_to_add_it_and_a_changed_one_is_not_to_be_added() {
        let v = SshView::parse(
            "user me\nhostname nas\nport 2222\nuserknownhostsfile /h/kh\n",
            "nas",
        );
        let unknown = v
            .host_key_advice("Host key verification failed.")
            .expect("advice");
        assert!(
            unknown.contains("ssh-keyscan -p 2222 nas >> /h/kh"),
            "{unknown}"
        );
        assert!(unknown.contains("ssh -p 2222 me@nas"), "{unknown}");
        let changed = v
            .host_key_advice(
                "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
            )
            .expect("advice");
        assert!(!changed.contains("ssh-keyscan"), "{changed}");
        assert!(
            changed.contains("ssh-keygen -f /h/kh -R '[nas]:2222'"),
            "{changed}"
        );
        assert!(v
            .host_key_advice("Permission denied (publickey).")
            .is_none());
    }
}
