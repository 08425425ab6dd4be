//! `cairn serve` behind a real OpenSSH sshd on loopback (tests/common/servers.rs), reached as
//! `-r ssh://HOST/PATH`: init, backups and byte-exact restores through it; an append-only
//! server (a forced command in `authorized_keys`) that refuses every deletion and overwrite,
//! whatever the client tries, and leaves the repository checking clean; `forget` and `prune`
//! failing through it and deleting nothing; malformed and oversized requests ending the session;
//! a dead server giving a clear error naming the host.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn::backend::{Backend, FileKind, Location, SshBackend, SshOptions};
use common::servers::{self, Sshd};
use common::{assert_same_entries, random_bytes, restored, write, TestCommand, PASSWORD};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// A temp dir for sources, restores and the client's cache, next to a running sshd.
struct Env {
    sshd: Sshd,
    tmp: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        Env {
            sshd: Sshd::start(),
            tmp: tempfile::Builder::new()
                .prefix("cairn-serve-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn url(&self, path: &Path) -> String {
        format!("ssh://{}{}", Sshd::HOST, path.display())
    }

    /// cairn against `repo` (a location), finding the test server's ssh configuration and,
    /// on the server, this cairn (`CAIRN_REMOTE_COMMAND`).
    fn cmd(&self, repo: &str) -> TestCommand {
        self.sshd.apply(
            TestCommand::bare()
                .arg("-r")
                .arg(repo)
                .env("CAIRN_PASSWORD", PASSWORD)
                .env("CAIRN_REMOTE_COMMAND", CAIRN)
                .env("XDG_CACHE_HOME", self.path("cache")),
        )
    }

    /// Makes the test key log in only to `cairn serve --append-only --repo PATH` (a forced
    /// command, as docs/cli.md tells servers to set it up).
    fn force_append_only(&self, repo: &Path) {
        let key = fs::read_to_string(self.sshd.dir.path().join("user_key.pub")).expect("key");
        fs::write(
            self.sshd.dir.path().join("authorized_keys"),
            format!(
                "command=\"{CAIRN} serve --append-only --repo {}\",restrict {}",
                repo.display(),
                key.trim()
            ),
        )
        .expect("authorized_keys");
    }

    /// The library's client for this server, with its ssh configuration.
    fn backend(&self, repo: &Path, retry_for: Duration) -> SshBackend {
        SshBackend::open(
            &Location::parse(&self.url(repo)).expect("location"),
            SshOptions {
                ssh_program: self.sshd.bin.join("ssh"),
                serve_program: CAIRN.into(),
                connections: 2,
                retry_for,
            },
        )
        .expect("backend")
    }
}

/// Every file of a repository with its bytes, lock files left out.
fn files(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    common::walk(repo)
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .filter(|p| repo.join(p).is_file())
        .map(|p| {
            let b = fs::read(repo.join(&p)).expect("read");
            (p, b)
        })
        .collect()
}

fn sources(e: &Env) -> (PathBuf, PathBuf) {
    let (a, b) = (e.path("src-a"), e.path("src-b"));
    write(a.join("one.bin"), random_bytes(1, 3 << 20));
    write(a.join("dir/two.txt"), b"two\n");
    write(b.join("three.bin"), random_bytes(3, 700_000));
    write(b.join("nested/deeper/four"), b"four");
    (a, b)
}

#[test]
fn init_backup_and_restore_through_cairn_serve_over_ssh_are_byte_exact() {
    if !servers::require_sshd() {
        return;
    }
    let e = Env::start();
    let repo = e.sshd.path("repo");
    let url = e.url(&repo);
    let (a, b) = sources(&e);
    e.cmd(&url)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    assert!(
        repo.join("config").is_file(),
        "the repository is on the server"
    );
    let first = e.cmd(&url).arg("backup").arg(&a).arg("--json").run();
    first.ok();
    write(a.join("dir/two.txt"), b"two, changed\n");
    e.cmd(&url).arg("backup").arg(&a).arg(&b).run().ok();
    let target = e.path("restore");
    e.cmd(&url)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&a, &restored(&target, &a));
    assert_same_entries(&b, &restored(&target, &b));
    e.cmd(&url).args(["check", "--read-data"]).run().ok();
    // The server is not append-only: forget and prune delete through it.
    e.cmd(&url)
        .args(["forget", &first.snapshot_id(), "--prune"])
        .run()
        .ok();
    assert_eq!(
        fs::read_dir(repo.join("snapshots")).expect("dir").count(),
        1
    );
    TestCommand::bare()
        .arg("-r")
        .arg(&repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["check", "--read-data"])
        .run()
        .ok();
}

#[test]
fn an_append_only_server_refuses_every_deletion_and_overwrite_and_the_repository_stays_intact() {
    if !servers::require_sshd() {
        return;
    }
    let e = Env::start();
    let repo = e.sshd.path("guarded");
    e.force_append_only(&repo);
    // The forced command decides the path: the client's is not the one served.
    let url = e.url(Path::new("/somewhere/else"));
    let (a, b) = sources(&e);
    e.cmd(&url)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    assert!(
        repo.join("config").is_file(),
        "init went to the forced path"
    );
    let first = e.cmd(&url).arg("backup").arg(&a).arg("--json").run();
    first.ok();
    e.cmd(&url).arg("backup").arg(&b).run().ok();
    let before = files(&repo);

    // The library's client tries everything a compromised machine could.
    let client = e.backend(&repo, Duration::from_secs(5));
    let mut tried = 0;
    for kind in FileKind::ALL {
        if kind == FileKind::Lock {
            continue;
        }
        for (name, size) in client.list(kind).expect("list") {
            let refused = |r: io::Result<()>, what: &str| {
                let err = r.expect_err(&format!("{what} {} was allowed", kind.path(&name)));
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
                let msg = err.to_string();
                assert!(msg.contains("append-only"), "{msg}");
                assert!(msg.contains(&kind.path(&name)), "{msg}");
            };
            refused(client.delete(kind, &name), "deleting");
            refused(client.replace(kind, &name, b"garbage"), "replacing");
            refused(client.put(kind, &name, b"garbage"), "overwriting");
            // Same length, other bytes: refused too, not a silent no-op.
            refused(
                client.put(kind, &name, &vec![0x55; size as usize]),
                "overwriting (same length)",
            );
            tried += 1;
        }
    }
    assert!(
        tried >= 6,
        "config, keys, a pack, an index, two snapshots: {tried}"
    );
    let e2 = client.remove_temporaries().expect_err("a deletion");
    assert_eq!(e2.kind(), io::ErrorKind::PermissionDenied, "{e2}");
    // Lock files are the exception: created and removed.
    let lock = "ab".repeat(32);
    client.put(FileKind::Lock, &lock, b"lock").expect("a lock");
    client.delete(FileKind::Lock, &lock).expect("its removal");
    drop(client);

    // forget and prune through it fail clearly and delete nothing.
    let id = first.snapshot_id();
    for args in [
        vec!["forget", id.as_str()],
        vec!["forget", "--keep-last", "1", "--prune"],
        vec!["prune"],
    ] {
        let run = e.cmd(&url).args(&args).run();
        assert_ne!(run.code, 0, "{args:?} succeeded: {}", run.output());
        run.assert_no_panic();
        assert!(
            run.stderr.contains("append-only"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(files(&repo), before, "the repository changed");

    // The repository checks clean on the server, and restores byte for byte through it.
    TestCommand::bare()
        .arg("-r")
        .arg(&repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["check", "--read-data"])
        .run()
        .ok();
    let target = e.path("restore");
    e.cmd(&url)
        .args(["restore", &id, "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&a, &restored(&target, &a));
    e.cmd(&url)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&b, &restored(&target, &b));
    // And backups go on.
    write(a.join("new"), b"new");
    e.cmd(&url).arg("backup").arg(&a).run().ok();
}

#[test]
fn a_dead_server_is_a_clear_error_naming_the_host_within_the_retry_budget() {
    if !servers::require_sshd() {
        return;
    }
    let mut e = Env::start();
    let repo = e.sshd.path("repo");
    let url = e.url(&repo);
    e.cmd(&url)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    e.sshd.kill();
    let started = Instant::now();
    let run = e
        .cmd(&url)
        .args(["--retry-timeout", "3s", "snapshots"])
        .run();
    assert_ne!(run.code, 0);
    run.assert_no_panic();
    assert!(run.stderr.contains(Sshd::HOST), "{}", run.stderr);
    assert!(run.stderr.contains("gave up"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(60));

    // A host key ssh cannot verify is refused at once, with ssh's words.
    e.sshd.restart();
    let unknown = format!("ssh://localhost:{}{}", e.sshd.port, repo.display());
    let started = Instant::now();
    let run = e
        .cmd(&unknown)
        .args(["--retry-timeout", "10m", "snapshots"])
        .run();
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("Host key verification failed"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn malformed_and_oversized_requests_through_ssh_end_the_session_and_change_nothing() {
    use cairn::serve::protocol::{self, Op};
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !servers::require_sshd() {
        return;
    }
    let e = Env::start();
    let repo = e.sshd.path("guarded");
    e.force_append_only(&repo);
    let url = e.url(&repo);
    e.cmd(&url)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    let before = files(&repo);
    let id = "cd".repeat(32);
    // An unknown op; a snapshot announced as 2^64-1 bytes and never sent; a name that would
    // leave its directory.
    let mut unknown = Vec::new();
    protocol::write_client_hello(&mut unknown).expect("hello");
    unknown.extend_from_slice(&[42, 6, 0]);
    let mut huge = Vec::new();
    protocol::write_client_hello(&mut huge).expect("hello");
    protocol::write_request(
        &mut huge,
        Op::Put,
        Some(FileKind::Snapshot),
        &id,
        [0, 0],
        b"",
    )
    .expect("request");
    let at = huge.len() - 8;
    huge[at..].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut escape = Vec::new();
    protocol::write_client_hello(&mut escape).expect("hello");
    protocol::write_request(
        &mut escape,
        Op::Put,
        Some(FileKind::Snapshot),
        "../../../../tmp/x",
        [0, 0],
        b"x",
    )
    .expect("request");
    for (input, expect) in [
        (unknown, "unknown operation 42"),
        (huge, "more than"),
        (escape, "not an object name"),
    ] {
        let mut child = Command::new(e.sshd.bin.join("ssh"))
            .args([Sshd::HOST, "ignored"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&input)
            .expect("write");
        let out = child.wait_with_output().expect("ssh");
        // The server's exit status, passed on by ssh: the session ended with an error.
        assert_eq!(out.status.code(), Some(1), "{expect}");
        let mut r = &out.stdout[..];
        protocol::read_server_hello(&mut r).expect("hello");
        let answer = protocol::read_response(&mut r, 0)
            .expect("a response")
            .expect_err("an error");
        assert_eq!(answer.kind(), io::ErrorKind::InvalidInput);
        assert!(answer.to_string().contains(expect), "{answer}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("malformed request"), "{said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    assert_eq!(files(&repo), before);
}
