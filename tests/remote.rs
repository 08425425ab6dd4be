#![cfg(feature = "remote")]
//! The binary against real servers on loopback: OpenSSH's sshd for `sftp://` and Garage for
//! `s3:` (tests/common/servers.rs). On each: init, backup, incremental backup, byte-identical
//! restore, `check --read-data`, forget + prune, copy local ⇄ remote; the server killed
//! mid-backup; two clients backing up into one S3 repository at once.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::backend::{Backend, FileKind, Location, RemoteBackend, RemoteOptions, S3Credentials};
use common::servers::{self, Garage, Sshd};
use common::{
    assert_same_tree, random_bytes, restored, try_wait_until_every, write, Fixture, TestCommand,
    PASSWORD,
};
use serde_json::Value;

enum Server {
    Sftp(Sshd),
    S3(Garage),
}

impl Server {
    fn sftp() -> Server {
        Server::Sftp(Sshd::start())
    }

    fn s3() -> Server {
        Server::S3(Garage::start())
    }

    fn url(&self, name: &str) -> String {
        match self {
            Server::Sftp(s) => s.url(name),
            Server::S3(g) => g.url(name),
        }
    }

    fn apply(&self, cmd: TestCommand) -> TestCommand {
        match self {
            Server::Sftp(s) => s.apply(cmd),
            Server::S3(g) => g.apply(cmd),
        }
    }

    fn kill(&mut self) {
        match self {
            Server::Sftp(s) => s.kill(),
            Server::S3(g) => g.kill(),
        }
    }

    fn restart(&mut self) {
        match self {
            Server::Sftp(s) => s.restart(),
            Server::S3(g) => g.restart(),
        }
    }

    /// The library's view of a repository on this server, for counting what is stored.
    fn backend(&self, name: &str) -> RemoteBackend {
        match self {
            Server::Sftp(s) => {
                let path = std::env::var("PATH").unwrap_or_default();
                if !path.starts_with(&s.bin.display().to_string()) {
                    std::env::set_var("PATH", format!("{}:{path}", s.bin.display()));
                }
            }
            Server::S3(_) => {}
        }
        let s3 = S3Credentials {
            region: Some(Garage::REGION.into()),
            access_key_id: Some(Garage::KEY_ID.into()),
            secret_access_key: Some(Garage::SECRET.into()),
            session_token: None,
        };
        RemoteBackend::open(
            &Location::parse(&self.url(name)).expect("location"),
            RemoteOptions {
                s3,
                ..RemoteOptions::default()
            },
        )
        .expect("backend")
    }
}

/// A temp dir for sources, restores and the local cache; commands against one remote repository.
struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::Builder::new()
                .prefix("cairn-remote-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn cmd(&self, server: &Server, repo: &str) -> TestCommand {
        server.apply(
            TestCommand::bare()
                .arg("-r")
                .arg(repo)
                .env("CAIRN_PASSWORD", PASSWORD)
                .env("XDG_CACHE_HOME", self.path("cache")),
        )
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// A small tree of every size class: a multi-chunk file, small files, a compressible file.
fn make_source(dir: &Path, seed: u64) {
    write(dir.join("big.bin"), random_bytes(seed, 3 << 20));
    write(dir.join("text.txt"), "hello remote world\n".repeat(20_000));
    for i in 0..40u64 {
        write(
            dir.join(format!("docs/note-{i}.txt")),
            random_bytes(seed * 1000 + i, 100 + (i as usize) * 97),
        );
    }
    fs::create_dir_all(dir.join("empty-dir")).expect("dir");
}

/// Restores `selector` (plus `extra` arguments) with `cmd` into a new directory `name` of the
/// fixture and asserts it is byte- and metadata-identical to `source`.
fn restores_as(
    e: &Env,
    cmd: TestCommand,
    selector: &str,
    extra: &[&str],
    source: &Path,
    name: &str,
) {
    let target = e.path(name);
    cmd.args(["restore", selector])
        .args(extra)
        .arg("--target")
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(source, &restored(&target, source));
}

fn full_cycle(server: &Server) {
    let e = Env::new();
    let url = server.url("repo");
    let src = e.path("src");
    make_source(&src, 1);

    let init = e
        .cmd(server, &url)
        .args(["init", "--kdf-memory-mib", "8", "--json"])
        .run();
    init.ok();

    let first = e
        .cmd(server, &url)
        .arg("backup")
        .arg(&src)
        .arg("--json")
        .run();
    first.ok();
    let first = first.summary();
    let snap1 = first["snapshot_id"].as_str().expect("id").to_string();
    assert_eq!(u(&first, "files_new"), 42);

    // Incremental: one file grows, one is new; nothing else is read.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(src.join("text.txt"))
        .expect("open");
    std::io::Write::write_all(&mut f, b"one more line\n").expect("append");
    drop(f);
    write(src.join("docs/new.txt"), "new file\n");
    let second = e
        .cmd(server, &url)
        .arg("backup")
        .arg(&src)
        .arg("--json")
        .run();
    second.ok();
    let second = second.summary();
    assert_eq!(u(&second, "files_changed"), 1);
    assert_eq!(u(&second, "files_new"), 1);
    assert!(
        u(&second, "bytes_read") < 500_000,
        "an incremental backup read {} bytes",
        u(&second, "bytes_read")
    );
    let snap2 = second["snapshot_id"].as_str().expect("id").to_string();

    // The local cache holds index files, snapshots and tree packs, each under its hash name.
    let cache_root = e.path("cache").join("cairn");
    let repo_cache = fs::read_dir(&cache_root)
        .expect("cache dir")
        .flatten()
        .map(|d| d.path())
        .find(|p| p.join("index").is_dir())
        .expect("a repository cache");
    for sub in ["index", "snapshots", "data"] {
        let files: Vec<_> = fs::read_dir(repo_cache.join(sub))
            .unwrap_or_else(|_| panic!("cache/{sub}"))
            .flatten()
            .collect();
        assert!(!files.is_empty(), "nothing cached in {sub}/");
        for f in files {
            let bytes = fs::read(f.path()).expect("read");
            assert_eq!(
                hex::encode(blake3::hash(&bytes).as_bytes()),
                f.file_name().to_string_lossy(),
                "cached file is what the repository holds"
            );
        }
    }
    // `ls` and `diff` work from the cache; deleting it only costs a download.
    let ls = e.cmd(server, &url).args(["ls", "latest"]).run();
    ls.ok();
    assert!(ls.stdout().contains("note-7.txt"), "{}", ls.stdout());
    let diff = e.cmd(server, &url).args(["diff", &snap1, &snap2]).run();
    diff.ok();
    assert!(diff.stdout().contains("text.txt"), "{}", diff.stdout());
    fs::remove_dir_all(&cache_root).expect("remove cache");
    e.cmd(server, &url).args(["ls", "latest"]).run().ok();
    e.cmd(server, &url)
        .args(["snapshots", "--no-cache"])
        .run()
        .ok();

    // Restore is byte-identical.
    restores_as(&e, e.cmd(server, &url), "latest", &[], &src, "out");

    e.cmd(server, &url)
        .args(["check", "--read-data"])
        .run()
        .ok();

    // forget + prune: the first snapshot's unique data (the old text.txt) goes.
    let forget = e
        .cmd(server, &url)
        .args(["forget", "--keep-last", "1", "--prune", "--json"])
        .run();
    forget.ok();
    let snaps = e.cmd(server, &url).args(["snapshots", "--json"]).run();
    snaps.ok();
    let list = snaps.json();
    assert_eq!(list.as_array().expect("array").len(), 1, "{list}");
    e.cmd(server, &url)
        .args(["check", "--read-data"])
        .run()
        .ok();
    restores_as(&e, e.cmd(server, &url), "latest", &[], &src, "out2");

    // copy local → remote: a local repository's snapshot arrives and restores from the server.
    let local = Fixture::new();
    let src2 = e.path("src2");
    make_source(&src2, 2);
    local.backup(&[&src2], &[]);
    let copied = server
        .apply(local.cmd())
        .args(["copy", "--to", &url, "--json"])
        .env("CAIRN_TO_PASSWORD", PASSWORD)
        .run();
    copied.ok();
    let summary = copied.summary();
    assert_eq!(u(&summary, "snapshots_copied"), 1);
    let dest_id = copied
        .json_lines()
        .iter()
        .find(|l| l["action"] == "copied")
        .and_then(|l| l["destination"].as_str().map(String::from))
        .expect("copied snapshot id");
    restores_as(&e, e.cmd(server, &url), &dest_id, &[], &src2, "out3");

    // copy remote → local, into a repository with the remote's chunker parameters.
    let back = Fixture::empty();
    server
        .apply(back.cmd())
        .args([
            "init",
            "--kdf-memory-mib",
            "8",
            "--copy-chunker-params-from",
            &url,
        ])
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .run()
        .ok();
    e.cmd(server, &url)
        .args(["copy", "--to"])
        .arg(&back.repo)
        .env("CAIRN_TO_PASSWORD", PASSWORD)
        .run()
        .ok();
    back.cmd().args(["check", "--read-data"]).run().ok();
    // Both snapshots the remote held arrive and restore as their sources.
    let snaps = back.cmd().args(["snapshots", "--json"]).run();
    snaps.ok();
    let list = snaps.json();
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2, "{list:?}");
    for (i, snap) in list.iter().enumerate() {
        let id = snap["id"].as_str().expect("id");
        let source = PathBuf::from(snap["paths"][0].as_str().expect("path"));
        assert!(source == src || source == src2, "{source:?}");
        restores_as(&e, back.cmd(), id, &[], &source, &format!("back-{i}"));
    }
}

#[test]
fn sftp_full_cycle() {
    if !servers::require_sshd() {
        return;
    }
    full_cycle(&Server::sftp());
}

#[test]
fn s3_full_cycle() {
    if !servers::require_garage() {
        return;
    }
    full_cycle(&Server::s3());
}

/// Packs stored so far in a repository on the server (through the library).
fn pack_count(server: &Server, name: &str) -> usize {
    server
        .backend(name)
        .list(FileKind::Pack)
        .map(|l| l.len())
        .unwrap_or(0)
}

/// Waits until the repository "repo" on the server satisfies `done(packs, index files)`.
fn wait_for(server: &Server, child: &mut std::process::Child, done: impl Fn(usize, usize) -> bool) {
    let (mut packs, mut indexes) = (0, 0);
    // Each look opens a connection: every 50 ms, not at the default pace.
    let every = Duration::from_millis(50);
    let waited = try_wait_until_every(
        every,
        Duration::from_secs(120),
        "the backup's progress",
        || {
            let b = server.backend("repo");
            packs = b.list(FileKind::Pack).map(|l| l.len()).unwrap_or(0);
            indexes = b.list(FileKind::Index).map(|l| l.len()).unwrap_or(0);
            if done(packs, indexes) {
                return true;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the backup ended ({status}) too early ({packs} packs, {indexes} index files)"
                );
            }
            false
        },
    );
    assert!(
        waited.is_ok(),
        "the backup never got there ({packs} packs, {indexes} index files)"
    );
}

fn killed_mid_backup(mut server: Server) {
    let e = Env::new();
    let url = server.url("repo");
    let src = e.path("src");
    // 96 MiB of incompressible data in 1 MiB packs: dozens of uploads to interrupt.
    for i in 0..24u64 {
        write(
            src.join(format!("part-{i}.bin")),
            random_bytes(100 + i, 4 << 20),
        );
    }
    e.cmd(&server, &url)
        .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
        .run()
        .ok();
    let mut child = {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args([
            "--no-progress",
            "--json",
            "--retry-timeout",
            "20s",
            "-r",
            &url,
        ])
        .args(["backup", "--checkpoint-interval", "1s"])
        .arg(&src)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", e.path("cache"))
        .env("AWS_ACCESS_KEY_ID", Garage::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", Garage::SECRET)
        .env("AWS_DEFAULT_REGION", Garage::REGION)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Server::Sftp(s) = &server {
            c.env(
                "PATH",
                format!(
                    "{}:{}",
                    s.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
        }
        c.spawn().expect("spawn backup")
    };
    // Lock files work without OS locks: prune is refused while the backup runs.
    wait_for(&server, &mut child, |packs, _| packs >= 2);
    let prune = e.cmd(&server, &url).arg("prune").run();
    prune.expect(11);
    assert!(
        prune.stderr.contains("backup"),
        "names the holder: {}",
        prune.stderr
    );
    // Kill the server once a good part has been uploaded and indexed (every second).
    wait_for(&server, &mut child, |packs, indexes| {
        packs >= 16 && indexes >= 2
    });
    server.kill();
    let killed = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let waited = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The retry budget bounds the whole command: the failed upload and then the removal of
    // the lock file on the dead server do not get 20 s each (issue 21: within
    // `--retry-timeout` plus 15 s).
    assert!(
        waited < std::time::Duration::from_secs(20 + 15),
        "the backup ended {waited:?} after the server died: {stderr}"
    );
    assert!(
        stderr.contains("stays valid"),
        "the error says the repository stays valid: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean failure, not a crash: {stderr}"
    );
    assert!(
        stderr.contains("gave up after") && stderr.contains(&url),
        "the error names the server and says it gave up: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    server.restart();
    let packs_before = pack_count(&server, "repo");
    // The repository is consistent: check passes (unindexed uploads are only reported).
    let check = e.cmd(&server, &url).args(["check", "--read-data"]).run();
    check.ok();
    // The next backup sends only what had not been uploaded and indexed.
    let next = e
        .cmd(&server, &url)
        .arg("backup")
        .arg(&src)
        .arg("--json")
        .run();
    next.ok();
    let next = next.summary();
    let total = 96u64 << 20;
    eprintln!(
        "{packs_before} packs on the server after the kill; the next backup stored {} of {total} bytes",
        u(&next, "data_added_stored")
    );
    // At least the 16 packs of 1 MiB known before the kill are not sent again (less the few
    // not yet indexed when the server died).
    assert!(
        u(&next, "data_added_stored") < total - (8 << 20),
        "the second backup stored {} of {total} bytes again",
        u(&next, "data_added_stored")
    );
    restores_as(&e, e.cmd(&server, &url), "latest", &[], &src, "out");
    e.cmd(&server, &url)
        .args(["check", "--read-data"])
        .run()
        .ok();
}

#[test]
fn sftp_server_killed_mid_backup() {
    if !servers::require_sshd() {
        return;
    }
    killed_mid_backup(Server::sftp());
}

#[test]
fn s3_server_killed_mid_backup() {
    if !servers::require_garage() {
        return;
    }
    killed_mid_backup(Server::s3());
}

#[test]
fn s3_two_clients_back_up_concurrently_and_share_data() {
    if !servers::require_garage() {
        return;
    }
    let server = Server::s3();
    let e = Env::new();
    let url = server.url("shared");
    e.cmd(&server, &url)
        .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
        .run()
        .ok();
    // Each client: 8 MiB both have, 2 MiB of its own.
    let shared = random_bytes(7, 8 << 20);
    for who in ["alice", "bob"] {
        write(e.path(&format!("{who}/shared.bin")), &shared);
        let seed = if who == "alice" { 8 } else { 9 };
        write(
            e.path(&format!("{who}/own.bin")),
            random_bytes(seed, 2 << 20),
        );
    }
    let runs: Vec<common::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = ["alice", "bob"]
            .iter()
            .map(|who| {
                let cmd = e
                    .cmd(&server, &url)
                    .args(["backup", "--host", who, "--json"])
                    .arg(e.path(who))
                    // Each client its own cache, as on two machines.
                    .env("XDG_CACHE_HOME", e.path(&format!("cache-{who}")));
                s.spawn(move || cmd.run())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    for r in &runs {
        r.ok();
    }
    for who in ["alice", "bob"] {
        let name = format!("out-{who}");
        restores_as(
            &e,
            e.cmd(&server, &url),
            "latest",
            &["--host", who],
            &e.path(who),
            &name,
        );
    }
    // Racing writers may both have stored a shared blob; prune keeps one copy.
    let before: u64 = server
        .backend("shared")
        .list(FileKind::Pack)
        .expect("list")
        .iter()
        .map(|(_, size)| size)
        .sum();
    e.cmd(&server, &url).arg("prune").run().ok();
    let stored: u64 = server
        .backend("shared")
        .list(FileKind::Pack)
        .expect("list")
        .iter()
        .map(|(_, size)| size)
        .sum();
    let unique = (8 + 2 + 2) << 20;
    eprintln!("packs: {before} bytes after both backups, {stored} after prune");
    assert!(
        stored < unique + (unique / 10),
        "{stored} bytes of packs for {unique} bytes of distinct data"
    );
    e.cmd(&server, &url)
        .args(["check", "--read-data"])
        .run()
        .ok();
    // A later client finds the shared data already there.
    write(e.path("carol/shared.bin"), &shared);
    let carol = e
        .cmd(&server, &url)
        .args(["backup", "--host", "carol", "--json"])
        .arg(e.path("carol"))
        .run();
    carol.ok();
    assert!(u(&carol.summary(), "data_added_stored") < 100_000);
}
