//! Real servers on loopback for the remote-backend tests: OpenSSH's sshd (SFTP) and Garage
//! (S3). Each test starts its own, in its own temp dir, on free ports; dropping it kills it.
//!
//! `.ci/run` installs both (Debian's openssh-server; `cargo install garage --locked`). Without
//! them these tests fail with a message saying what to install, unless
//! `CAIRN_SKIP_SERVER_TESTS=1` is set.

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::TestCommand;

/// True when the server tests are to be skipped (and say so).
pub fn skip(what: &str) -> bool {
    if std::env::var_os("CAIRN_SKIP_SERVER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped ({what}): CAIRN_SKIP_SERVER_TESTS=1");
        return true;
    }
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on 127.0.0.1:{port}: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
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

fn find(candidates: &[&str], install: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} not found: {install} (.ci/run does), or set CAIRN_SKIP_SERVER_TESTS=1",
                candidates[0]
            )
        })
}

/// OpenSSH's sshd on 127.0.0.1 with generated host and user keys, and an ssh client
/// configuration naming it by a host alias (`cairn-test-sftp`) with its port, user, identity
/// file and known-hosts file: cairn reaches it through the system `ssh`, which reads that
/// configuration exactly as it would read `~/.ssh/config`.
pub struct Sshd {
    child: Option<Child>,
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
        let sshd = find(
            &["/usr/sbin/sshd"],
            "install Debian's openssh-server (apt-get install openssh-server)",
        );
        let dir = tempfile::Builder::new()
            .prefix("cairn-sshd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        for (key, what) in [("host_key", "host key"), ("user_key", "user key")] {
            run_ok(
                Command::new("ssh-keygen")
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
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                d.join("ssh_config").display()
            ),
        )
        .expect("ssh wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
        let log = d.join("sshd.log");
        let mut s = Sshd {
            child: None,
            dir,
            port,
            bin,
            config,
            log,
        };
        s.spawn(&sshd);
        s
    }

    fn spawn(&mut self, sshd: &Path) {
        let log = fs::File::create(&self.log).expect("log");
        let mut child = Command::new(sshd)
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
        self.spawn(Path::new("/usr/sbin/sshd"));
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

    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("GARAGE_BIN") {
            return PathBuf::from(p);
        }
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let cargo_bin = format!("{home}/.cargo/bin/garage");
        find(
            &[&cargo_bin, "/usr/local/bin/garage", "/usr/bin/garage"],
            "install Garage (cargo install garage --locked)",
        )
    }

    pub fn start() -> Garage {
        let bin = Self::binary();
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
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(["bucket", "info", Self::BUCKET])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "garage bucket never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the garage CLI against this node.
    pub fn cli(&self, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .expect("garage cli");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            // The node may still be starting its RPC layer.
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "garage {args:?} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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
