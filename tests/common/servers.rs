//! Real servers on loopback for the remote-backend tests: OpenSSH's sshd (SFTP) and Garage
//! (S3). Each test starts its own, in its own temp dir, on free ports; dropping it kills it.
//!
//! `.ci/run` installs both (Debian's openssh-server; `cargo install garage --locked`). A test
//! asks first ([`require_sshd`], [`require_garage`]): where a server is not installed, or
//! `CAIRN_SKIP_SERVER_TESTS=1` asks to leave them out, it skips on a laptop and fails under
//! `CI=true` (see [`super::missing`]).

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{
    find_tool, find_tool_in, missing, require, require_tool, try_wait_until, try_wait_until_every,
    TestCommand,
};

/// False (after [`missing`]) when `CAIRN_SKIP_SERVER_TESTS=1` asks to leave the server tests
/// out: a way to save their minute on a laptop, refused under CI.
#[track_caller]
fn wanted() -> bool {
    if std::env::var_os("CAIRN_SKIP_SERVER_TESTS").is_some_and(|v| v == "1") {
        missing("CAIRN_SKIP_SERVER_TESTS=1 leaves out the tests against real servers");
        return false;
    }
    true
}

/// Whether the SFTP tests can run here: OpenSSH's sshd, ssh and ssh-keygen are installed. False
/// after [`missing`] (a skip on a laptop, a failure under CI).
#[track_caller]
pub fn require_sshd() -> bool {
    wanted()
        && require_tool("sshd", "openssh-server").is_some()
        && require_tool("ssh", "openssh-client").is_some()
        && require_tool("ssh-keygen", "openssh-client").is_some()
}

/// Whether the S3 tests can run here: Garage is installed ([`Garage::binary`]). False after
/// [`missing`] (a skip on a laptop, a failure under CI).
#[track_caller]
pub fn require_garage() -> bool {
    wanted() && require(Garage::binary()).is_some()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `child` listens on `port`; fails with its log if it exits first or never does.
fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let waited = try_wait_until(
        Duration::from_secs(30),
        &format!("{what} listening on 127.0.0.1:{port}"),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{what} exited ({status}) before listening: {}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
    if let Err(e) = waited {
        panic!("{e}: {}", fs::read_to_string(log).unwrap_or_default());
    }
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tool the caller made sure of ([`require_sshd`]); a panic naming it otherwise.
fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|e| panic!("{e}: check with require_sshd() first"))
}

/// OpenSSH's sshd on 127.0.0.1 with generated host and user keys, and an ssh client
/// configuration naming it by a host alias (`cairn-test-sftp`) with its port, user, identity
/// file and known-hosts file: cairn reaches it through the system `ssh`, which reads that
/// configuration exactly as it would read `~/.ssh/config`.
pub struct Sshd {
    child: Option<Child>,
    /// The sshd program.
    program: PathBuf,
    pub dir: TempDir,
    pub port: u16,
    /// Directory with the `ssh` wrapper that points the client at this configuration; goes
    /// first in PATH.
    pub bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Sshd {
    pub const HOST: &'static str = "cairn-test-sftp";

    pub fn start() -> Sshd {
        // sshd re-executes itself, so it needs its absolute path.
        let sshd = tool("sshd");
        let dir = tempfile::Builder::new()
            .prefix("cairn-sshd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        for (key, what) in [("host_key", "host key"), ("user_key", "user key")] {
            run_ok(
                Command::new(tool("ssh-keygen"))
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(d.join(key)),
                what,
            );
        }
        fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        // sshd's privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxSessions 64\nMaxStartups 64\n",
                host = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )
        .expect("sshd_config");
        let host_pub = fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}\n"),
        )
        .expect("known_hosts");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        fs::write(
            d.join("ssh_config"),
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
                 IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n\
                 Host 127.0.0.1\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
                 LogLevel ERROR\n",
                alias = Self::HOST,
                key = d.join("user_key").display(),
                kh = d.join("known_hosts").display(),
            ),
        )
        .expect("ssh_config");
        let bin = d.join("bin");
        fs::create_dir(&bin).expect("bin");
        let wrapper = bin.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} -F {} \"$@\"\n",
                tool("ssh").display(),
                d.join("ssh_config").display()
            ),
        )
        .expect("ssh wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
        let log = d.join("sshd.log");
        let mut s = Sshd {
            child: None,
            program: sshd,
            dir,
            port,
            bin,
            config,
            log,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = fs::File::create(&self.log).expect("log");
        let mut child = Command::new(&self.program)
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        wait_for_port(self.port, &mut child, "sshd", &self.log);
        self.child = Some(child);
    }

    /// A directory on the "server" (this machine) for a repository.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("srv").join(name)
    }

    /// The repository URL of `path(name)`, through the host alias.
    pub fn url(&self, name: &str) -> String {
        format!("sftp://{}{}", Self::HOST, self.path(name).display())
    }

    /// The user the tests log in as.
    pub fn user() -> String {
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    }

    /// Kills the server (SIGKILL) and its per-connection processes: every connection drops
    /// at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Environment for cairn (and ssh) to reach this server.
    pub fn apply(&self, cmd: TestCommand) -> TestCommand {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single-node Garage cluster on 127.0.0.1 with one bucket (`cairn`) and one key allowed to
/// use it.
pub struct Garage {
    child: Option<Child>,
    pub dir: TempDir,
    pub s3_port: u16,
    config: PathBuf,
    log: PathBuf,
    bin: PathBuf,
}

impl Garage {
    pub const BUCKET: &'static str = "cairn";
    pub const KEY_ID: &'static str = "GK0123456789abcdef01234567";
    pub const SECRET: &'static str =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    pub const REGION: &'static str = "garage";

    /// The garage program: `GARAGE_BIN`, else where `cargo install` or a package puts it.
    pub fn binary() -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os("GARAGE_BIN") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("GARAGE_BIN={} is not a file", p.display()))
            };
        }
        // `cargo install` puts it in ~/.cargo/bin, which PATH may lack.
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        find_tool_in("garage", &[PathBuf::from(home).join(".cargo/bin")])
            .map_err(|e| format!("{e} (cargo install garage --locked; or set GARAGE_BIN)"))
    }

    pub fn start() -> Garage {
        let bin =
            Self::binary().unwrap_or_else(|e| panic!("{e}: check with require_garage() first"));
        let dir = tempfile::Builder::new()
            .prefix("cairn-garage-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).expect("random");
        let config = d.join("garage.toml");
        fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"{region}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = d.join("meta").display(),
                data = d.join("data").display(),
                secret = hex::encode(secret),
                region = Self::REGION,
            ),
        )
        .expect("garage.toml");
        let log = d.join("garage.log");
        let mut g = Garage {
            child: None,
            dir,
            s3_port: s3,
            config,
            log,
            bin,
        };
        g.spawn();
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", Self::BUCKET]);
        g.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "cairn",
            Self::KEY_ID,
            Self::SECRET,
        ]);
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            Self::BUCKET,
            "--key",
            "cairn",
        ]);
        g.wait_ready();
        g
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start garage");
        wait_for_port(self.s3_port, &mut child, "garage", &self.log);
        self.child = Some(child);
    }

    /// Waits until the S3 API answers requests for the bucket (layout changes take a moment).
    fn wait_ready(&self) {
        let ready = try_wait_until_every(
            Duration::from_millis(100),
            Duration::from_secs(30),
            "the garage bucket to become ready",
            || {
                Command::new(&self.bin)
                    .arg("-c")
                    .arg(&self.config)
                    .args(["bucket", "info", Self::BUCKET])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        if let Err(e) = ready {
            panic!("{e}");
        }
    }

    /// Runs the garage CLI against this node, again until it succeeds: the node may still be
    /// starting its RPC layer.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut last = None;
        let what = format!("garage {args:?}");
        let every = Duration::from_millis(200);
        let ran = try_wait_until_every(every, Duration::from_secs(30), &what, || {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .expect("garage cli");
            let ok = out.status.success();
            last = Some(out);
            ok
        });
        let out = last.expect("garage ran at least once");
        if let Err(e) = ran {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The repository URL for a prefix in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{prefix}", self.endpoint(), Self::BUCKET)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// Credentials and region for cairn (and restic).
    pub fn apply(&self, cmd: TestCommand) -> TestCommand {
        cmd.env("AWS_ACCESS_KEY_ID", Self::KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", Self::SECRET)
            .env("AWS_DEFAULT_REGION", Self::REGION)
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILLs a process and all its descendants (sshd's per-connection children outlive it).
fn kill_tree(pid: u32) {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces; split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut doomed = vec![pid];
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    for p in doomed {
        unsafe {
            libc::kill(p as i32, libc::SIGKILL);
        }
    }
}
