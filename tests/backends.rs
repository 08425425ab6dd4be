#![cfg(feature = "remote")]
//! One conformance suite for every storage backend: memory, local directory, SFTP (a real sshd
//! on loopback), `cairn serve` through that sshd (`ssh://`) and S3 (a real Garage node on
//! loopback). Whatever the repository code assumes of a backend (repo-format.md §10) is checked
//! here, the same way on each.

mod common;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::backend::{
    Backend, FileKind, LocalBackend, Location, MemBackend, SshBackend, SshOptions,
};
use cairn::backend::{RemoteBackend, RemoteOptions, S3Credentials};
use common::servers::{self, Garage, Sshd};

fn name(seed: u8) -> String {
    hex::encode(blake3::hash(&[seed]).as_bytes())
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    common::random_bytes(seed, len)
}

/// The whole contract, on an empty location.
fn conformance(b: &dyn Backend) {
    // create: an empty location becomes a repository layout; nothing is listed yet.
    b.create().expect("create");
    for kind in FileKind::ALL {
        assert!(
            b.list(kind).expect("list").is_empty(),
            "{kind:?} listed on a new location"
        );
    }

    // put / get for every kind, each under its own name; missing objects are NotFound.
    let kinds = [
        FileKind::Key,
        FileKind::KeyCopy,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
        FileKind::Drill,
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let data = bytes(i as u64, 1000 + i * 37);
        b.put(*kind, &name(i as u8), &data).expect("put");
        assert_eq!(b.get(*kind, &name(i as u8)).expect("get"), data, "{kind:?}");
        let missing = b.get(*kind, &name(200)).expect_err("a missing object");
        assert_eq!(
            missing.kind(),
            io::ErrorKind::NotFound,
            "{kind:?}: {missing}"
        );
    }
    b.put(FileKind::Config, "config", b"config bytes")
        .expect("put config");
    assert_eq!(
        b.get(FileKind::Config, "config").expect("get config"),
        b"config bytes"
    );
    assert_eq!(
        b.list(FileKind::Config).expect("list config"),
        vec![("config".to_string(), 12)]
    );

    // Listing: each kind lists exactly its own objects with their sizes (a key's copy is listed
    // by the key's id, and only as a copy).
    for (i, kind) in kinds.iter().enumerate() {
        assert_eq!(
            b.list(*kind).expect("list"),
            vec![(name(i as u8), 1000 + i as u64 * 37)],
            "{kind:?}"
        );
    }

    // A location that holds something cannot be created again.
    let again = b.create().expect_err("create over a repository");
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");

    // Storing an existing name again (same content, same length) is a no-op.
    let pack = name(2);
    b.put(FileKind::Pack, &pack, &bytes(2, 1074))
        .expect("put again");
    assert_eq!(b.list(FileKind::Pack).expect("list").len(), 1);

    // Ranges: exact bytes inside, an error past the end.
    let data = bytes(2, 1074);
    assert_eq!(
        b.get_range(FileKind::Pack, &pack, 100, 200).expect("range"),
        &data[100..300]
    );
    assert_eq!(
        b.get_range(FileKind::Pack, &pack, 1070, 4).expect("tail"),
        &data[1070..]
    );
    assert!(
        b.get_range(FileKind::Pack, &pack, 1070, 10).is_err(),
        "a range past the end"
    );

    // A large object (many network packets, several MiB) round-trips byte for byte.
    let big = bytes(99, 6 << 20);
    let big_name = hex::encode(blake3::hash(&big).as_bytes());
    b.put(FileKind::Pack, &big_name, &big).expect("put big");
    assert_eq!(b.get(FileKind::Pack, &big_name).expect("get big"), big);
    assert_eq!(
        b.get_range(FileKind::Pack, &big_name, 5 << 20, 4096)
            .expect("range big"),
        &big[5 << 20..(5 << 20) + 4096]
    );
    // A reader's buffer reused from read to read (as restore does): each read gives exactly
    // its range, whatever the buffer held or how long it has grown; a short object an error.
    let mut buf = Vec::new();
    let got = b
        .get_range_into(FileKind::Pack, &big_name, 1000, 3 << 20, &mut buf)
        .expect("range into");
    assert_eq!(got, &big[1000..1000 + (3 << 20)]);
    let got = b
        .get_range_into(FileKind::Pack, &big_name, 7, 5000, &mut buf)
        .expect("smaller range into the same buffer");
    assert_eq!(got, &big[7..5007]);
    assert!(
        b.get_range_into(FileKind::Pack, &big_name, (6 << 20) - 10, 20, &mut buf)
            .is_err(),
        "a range past the end, into a buffer"
    );

    // Tree packs go through the same storage (a cache may sit in front).
    let tree = bytes(7, 3000);
    let tree_name = hex::encode(blake3::hash(&tree).as_bytes());
    b.put_tree_pack(&tree_name, &tree).expect("put tree pack");
    assert_eq!(
        b.get_tree_range(&tree_name, 10, 20).expect("tree range"),
        &tree[10..30]
    );

    // Concurrent writers of different objects: all stored whole, all listed.
    let before = b.list(FileKind::Pack).expect("list").len();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            s.spawn(move || {
                for j in 0..4u64 {
                    let data = bytes(1000 + t * 10 + j, 20_000 + (t * 4 + j) as usize);
                    let n = hex::encode(blake3::hash(&data).as_bytes());
                    b.put(FileKind::Pack, &n, &data).expect("concurrent put");
                }
            });
        }
    });
    let listed = b.list(FileKind::Pack).expect("list");
    assert_eq!(listed.len(), before + 32);
    for (n, size) in &listed {
        let got = b.get(FileKind::Pack, n).expect("get listed");
        assert_eq!(got.len() as u64, *size, "listed size of {n}");
        // Every pack stored by content hash is whole under its final name.
        if *n != pack {
            assert_eq!(
                hex::encode(blake3::hash(&got).as_bytes()),
                *n,
                "content of {n}"
            );
        }
    }
    // Two writers of the same content-named object at once: one object, whole.
    let same = bytes(4242, 50_000);
    let same_name = hex::encode(blake3::hash(&same).as_bytes());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                b.put(FileKind::Pack, &same_name, &same)
                    .expect("racing put")
            });
        }
    });
    assert_eq!(b.get(FileKind::Pack, &same_name).expect("get"), same);

    // Whole reads are bounded: an object over the bound is refused (FileTooLarge, naming it),
    // one at the bound is read; `get` applies each kind's own bound; a zero-length object reads
    // as empty.
    let lock = name(5);
    let len = 1000 + 5 * 37;
    let e = b
        .get_at_most(FileKind::Lock, &lock, len as u64 - 1)
        .expect_err("over the bound");
    assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
    assert!(e.to_string().contains(&format!("locks/{lock}")), "{e}");
    assert_eq!(
        b.get_at_most(FileKind::Lock, &lock, len as u64)
            .expect("at the bound")
            .len(),
        len
    );
    let big_lock = bytes(77, (64 << 10) + 100);
    let big_lock_name = hex::encode(blake3::hash(&big_lock).as_bytes());
    b.put(FileKind::Lock, &big_lock_name, &big_lock)
        .expect("put a large lock");
    let e = b
        .get(FileKind::Lock, &big_lock_name)
        .expect_err("larger than any lock file");
    assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
    b.delete(FileKind::Lock, &big_lock_name).expect("delete");
    let empty = name(9);
    b.put(FileKind::Index, &empty, b"").expect("put empty");
    assert!(b
        .get(FileKind::Index, &empty)
        .expect("get empty")
        .is_empty());
    b.delete(FileKind::Index, &empty).expect("delete");

    // Writers leave no temporary files behind; removing them finds nothing.
    assert_eq!(b.remove_temporaries().expect("remove temporaries"), 0);

    // delete: gone from get and list; deleting again is not an error.
    b.delete(FileKind::Snapshot, &name(4)).expect("delete");
    assert_eq!(
        b.get(FileKind::Snapshot, &name(4))
            .expect_err("deleted")
            .kind(),
        io::ErrorKind::NotFound
    );
    assert!(b.list(FileKind::Snapshot).expect("list").is_empty());
    b.delete(FileKind::Snapshot, &name(4))
        .expect("delete a missing object");
}

#[test]
fn memory_backend_conforms() {
    conformance(&MemBackend::new());
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance(&LocalBackend::new(dir.path().join("repo")));
}

/// `cairn serve` through a real sshd, reached as `ssh://`: the same contract (the server is
/// not append-only; tests/serve.rs covers what an append-only one refuses).
#[test]
fn ssh_serve_backend_conforms() {
    if !servers::require_sshd() {
        return;
    }
    let sshd = Sshd::start();
    let url = format!("ssh://{}{}", Sshd::HOST, sshd.path("conformance").display());
    let b = SshBackend::open(
        &Location::parse(&url).expect("location"),
        SshOptions {
            ssh_program: sshd.bin.join("ssh"),
            serve_program: env!("CARGO_BIN_EXE_cairn").into(),
            connections: 4,
            retry_for: Duration::from_secs(30),
        },
    )
    .expect("backend");
    conformance(&b);
    assert_eq!(b.location(), url);
}

fn remote(url: &str, retry_for: Duration) -> Arc<RemoteBackend> {
    let loc = Location::parse(url).expect("location");
    Arc::new(
        RemoteBackend::open(
            &loc,
            RemoteOptions {
                connections: 4,
                retry_for,
                s3: s3_credentials(),
                ..RemoteOptions::default()
            },
        )
        .expect("open remote"),
    )
}

/// The ssh wrapper of a test server goes first in this process's PATH (cairn runs `ssh`).
fn use_ssh_of(sshd: &Sshd) {
    let path = std::env::var("PATH").unwrap_or_default();
    let first = sshd.bin.display().to_string();
    std::env::set_var("PATH", format!("{first}:{path}"));
}

/// The credentials this test process holds in its `AWS_*` variables, handed to the library as
/// the binary hands them (the library reads no environment).
fn s3_credentials() -> S3Credentials {
    let env = |k: &str| std::env::var(k).ok();
    S3Credentials {
        region: env("AWS_DEFAULT_REGION"),
        access_key_id: env("AWS_ACCESS_KEY_ID"),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
    }
}

fn use_garage_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", Garage::KEY_ID);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", Garage::SECRET);
    std::env::set_var("AWS_DEFAULT_REGION", Garage::REGION);
}

// The server tests run one after the other in one test: they share process environment
// (PATH, AWS_*), which parallel tests must not change under each other.
#[test]
fn remote_backends_conform_and_give_up_cleanly() {
    if !(servers::require_sshd() && servers::require_garage()) {
        return;
    }
    let sshd = Sshd::start();
    use_ssh_of(&sshd);
    conformance(remote(&sshd.url("conformance"), Duration::from_secs(30)).as_ref());
    // The restic form of the same location reaches the same repository.
    let restic_form = format!("sftp:{}:{}", Sshd::HOST, sshd.path("conformance").display());
    let again = remote(&restic_form, Duration::from_secs(30));
    assert_eq!(again.list(FileKind::Config).expect("list").len(), 1);
    // And so does the explicit user@host:port form.
    let explicit = format!(
        "sftp://{}@127.0.0.1:{}{}",
        Sshd::user(),
        sshd.port,
        sshd.path("conformance").display()
    );
    let again = remote(&explicit, Duration::from_secs(30));
    assert_eq!(again.list(FileKind::Config).expect("list").len(), 1);

    let garage = Garage::start();
    use_garage_credentials();
    conformance(remote(&garage.url("conformance"), Duration::from_secs(30)).as_ref());

    // A server that is not there: retried, then a clear error naming server and object, well
    // within the retry time plus one backoff step.
    let dead = format!(
        "s3:http://127.0.0.1:{}/{}/x",
        servers::free_port(),
        Garage::BUCKET
    );
    let b = remote(&dead, Duration::from_secs(3));
    let start = Instant::now();
    let e = b
        .put(FileKind::Index, &name(1), b"x")
        .expect_err("no server");
    let took = start.elapsed();
    let msg = e.to_string();
    assert!(msg.contains("gave up after"), "{msg}");
    assert!(msg.contains(&dead), "names the server: {msg}");
    assert!(msg.contains("index/"), "names the object: {msg}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");

    // Wrong credentials are not retried: an answer at once.
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "0".repeat(64));
    let b = remote(&garage.url("conformance"), Duration::from_secs(600));
    let start = Instant::now();
    let e = b.get(FileKind::Config, "config").expect_err("bad secret");
    assert!(start.elapsed() < Duration::from_secs(60), "{e}");
    use_garage_credentials();

    // An unknown host key is refused, not accepted silently, and not retried. (`localhost` is
    // not in the test's known_hosts; only `[127.0.0.1]:port` is.)
    let unknown = format!("sftp://localhost:{}{}", sshd.port, sshd.path("x").display());
    let b = remote(&unknown, Duration::from_secs(600));
    let start = Instant::now();
    let r = b.list(FileKind::Config);
    assert!(r.is_err(), "an unverified host key was accepted: {r:?}");
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("Host key verification failed"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// An ssh client configuration for `alias` → the test server, with `extra` lines, and a
/// wrapper `ssh` (first in PATH) that reads it as if it were `~/.ssh/config`.
fn ssh_config(sshd: &Sshd, tag: &str, alias: &str, extra: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = sshd.dir.path();
    let config = d.join(format!("ssh_config-{tag}"));
    std::fs::write(
        &config,
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  LogLevel ERROR\n{extra}",
            port = sshd.port,
            user = Sshd::user(),
            key = d.join("user_key").display(),
        ),
    )
    .expect("ssh config");
    let bin = d.join(format!("bin-{tag}"));
    std::fs::create_dir_all(&bin).expect("bin");
    let wrapper = bin.join("ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
            config.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

fn cairn_with_ssh(
    bin: &std::path::Path,
    url: &str,
    cache: &std::path::Path,
) -> common::TestCommand {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    common::TestCommand::bare()
        .env("PATH", path)
        .env("CAIRN_PASSWORD", common::PASSWORD)
        .env("XDG_CACHE_HOME", cache)
        .args(["--retry-timeout", "20s", "-r", url])
}

/// cairn takes its host-key policy from the user's ssh configuration: `StrictHostKeyChecking
/// accept-new` with a `UserKnownHostsFile` of the user's is honoured (the key lands in that
/// file); with no setting an unknown host is refused, naming how to add its key; a changed
/// key is refused without being offered for adding.
#[test]
fn sftp_honours_the_users_ssh_configuration_for_host_keys() {
    if !servers::require_sshd() {
        return;
    }
    let sshd = Sshd::start();
    let d = sshd.dir.path().to_path_buf();
    let cache = d.join("cache");
    let host_entry = format!("[127.0.0.1]:{}", sshd.port);

    // 1. accept-new and the user's own known-hosts file.
    let kh = d.join("my_known_hosts");
    std::fs::write(&kh, "").expect("known hosts");
    let bin = ssh_config(
        &sshd,
        "accept-new",
        "mine",
        &format!(
            "  UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new\n",
            kh.display()
        ),
    );
    let url = format!("sftp://mine{}", sshd.path("accepted").display());
    let run = cairn_with_ssh(&bin, &url, &cache)
        .args(["init", "--kdf-memory-mib", "8"])
        .run();
    run.ok();
    let recorded = std::fs::read_to_string(&kh).expect("known hosts");
    assert!(
        recorded.contains(&host_entry),
        "the host key was not added to the user's own file:\n{recorded}"
    );
    cairn_with_ssh(&bin, &url, &cache)
        .arg("snapshots")
        .run()
        .ok();

    // 2. No setting, an empty known-hosts file: refused at once, with how to add the key.
    let kh2 = d.join("empty_known_hosts");
    std::fs::write(&kh2, "").expect("known hosts");
    let bin2 = ssh_config(
        &sshd,
        "default",
        "unknown",
        &format!("  UserKnownHostsFile {}\n", kh2.display()),
    );
    let url2 = format!("sftp://unknown{}", sshd.path("refused").display());
    let run = cairn_with_ssh(&bin2, &url2, &cache)
        .args(["init", "--kdf-memory-mib", "8"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    for want in [
        "Host key verification failed",
        &format!(
            "ssh-keyscan -p {} 127.0.0.1 >> {}",
            sshd.port,
            kh2.display()
        ),
    ] {
        assert!(run.stderr.contains(want), "no {want:?} in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&kh2).expect("kh"),
        "",
        "a key was added"
    );
    assert!(!sshd.path("refused").exists(), "something was written");

    // 3. A known host whose key changed: refused, and not offered for adding.
    let kh3 = d.join("changed_known_hosts");
    let other = std::fs::read_to_string(d.join("user_key.pub")).expect("a key");
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(&kh3, format!("{host_entry} {}\n", other.join(" "))).expect("kh");
    let bin3 = ssh_config(
        &sshd,
        "changed",
        "changed",
        &format!("  UserKnownHostsFile {}\n", kh3.display()),
    );
    let url3 = format!("sftp://changed{}", sshd.path("changed").display());
    let run = cairn_with_ssh(&bin3, &url3, &cache)
        .args(["init", "--kdf-memory-mib", "8"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("not the one recorded") && !run.stderr.contains("ssh-keyscan"),
        "{}",
        run.stderr
    );
    assert!(!sshd.path("changed").exists(), "something was written");
}
