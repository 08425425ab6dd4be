//! Inputs at the edges, through the real binary (and the library where a state must be made
//! by hand):
//!
//! - every password source, exclude file and plan file is read within a bound: each class of
//!   oversized or odd input ends in a clear message and exit 1, under a memory limit, so that
//!   unbounded growth fails the test instead of eating the machine;
//! - what an interrupted `init` leaves is finished or redone by `init`, and named by the other
//!   commands;
//! - key files, configs and snapshots of a later format are named as such, never read as a
//!   wrong password or as damage;
//! - a lock that blocks says who holds it, how old it is and how to remove it, and `unlock`
//!   removes nothing it cannot read as a lock of the repository;
//! - a repository inside a backed-up directory is left out of the snapshot.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::backend::{Backend, FaultBackend, FileKind, LocalBackend, MemBackend};
use cairn::crypto::{KdfParams, ObjectKind};
use cairn::format::{encode_object, to_msgpack_named, Compression};
use cairn::id::content_hash;
use cairn::lock::LockInfo;
use cairn::repo::InitOptions;
use cairn::{Error, Repository};
use common::*;

/// Address space for a run that must stay bounded. `init` and `snapshots` run in under 64 MiB
/// of address space; reading any of the inputs below without a bound passes 256 MiB within a
/// second (and a 100 GiB sparse file is one 100 GiB allocation).
const MEM: u64 = 256 << 20;

/// Waits for a state (a file, a process) that another process brings about; a state that
/// does not come within a minute is a hang.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The run failed as a bad input must: exit 1, no panic, a message with each of `words`.
#[track_caller]
fn refused(run: &Run, words: &[&str]) {
    run.expect(1);
    assert!(
        !run.stderr.contains("panicked"),
        "{}: panicked:\n{}",
        run.what,
        run.stderr
    );
    for w in words {
        assert!(
            run.stderr.contains(w),
            "{}: the message lacks {w:?}:\n{}",
            run.what,
            run.stderr
        );
    }
}

/// A file of `len` bytes that takes no space and has no line end (all zeros).
fn sparse(path: &Path, len: u64) -> PathBuf {
    let f = fs::File::create(path).expect("create sparse file");
    f.set_len(len).expect("set_len");
    path.to_path_buf()
}

fn mkfifo(path: &Path) -> PathBuf {
    sh("mkfifo", &[path.as_os_str()]);
    path.to_path_buf()
}

/// Opens a FIFO for reading and writing: it then has a writer (this test) before cairn opens
/// it, as a `<(command)` pipe has.
fn fifo_writer(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open FIFO read-write")
}

/// Writes zeros into `f` until `stop`: an endless writer.
fn endless_zeros(f: fs::File, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut f = f;
        let zeros = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            match f.write(&zeros) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("writing the FIFO: {e}"),
            }
        }
    })
}

/// `bash -c SCRIPT cairn REPO PASSWORD` with a memory limit: for process substitution.
fn bash(f: &Fixture, script: &str) -> Run {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {}; {script}", MEM / 1024))
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg(&f.repo)
        .arg(PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .env_remove("CAIRN_PASSWORD")
        .env_remove("CAIRN_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .expect("bash is needed for process substitution");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("bash -c {script:?}"),
    }
}

fn library_open(f: &Fixture) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes())
        .expect("open the fixture repository")
}

// ---------------------------------------------------------------------------------------------
// Locks

/// Writes a lock file sealed with the repository's keys, as a holder elsewhere would.
fn plant_lock(f: &Fixture, info: &LockInfo) -> String {
    let repo = library_open(f);
    let sealed = encode_object(
        repo.keys(),
        ObjectKind::Lock,
        &[],
        &to_msgpack_named(info).unwrap(),
        Compression::Off,
    )
    .unwrap();
    let name = hex::encode(content_hash(&sealed));
    write(f.repo.join("locks").join(&name), &sealed);
    name
}

fn foreign_lock(age_ns: i64) -> LockInfo {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    LockInfo {
        exclusive: true,
        host: "faraway-host".into(),
        pid: 4242,
        boot_id: "other-boot".into(),
        time_ns: now - age_ns,
        command: "prune".into(),
    }
}

const MINUTE: i64 = 60_000_000_000;
const DAY: i64 = 24 * 60 * MINUTE;

#[test]
fn a_foreign_lock_dated_in_the_future_names_its_host_and_age_and_how_to_remove_it() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    // Three days ahead (and a bit, so the whole days shown do not depend on the run's speed).
    let lock = plant_lock(&f, &foreign_lock(-(3 * DAY + 30 * MINUTE)));
    let run = f.cmd().arg("backup").arg(&src).run();
    run.expect(11);
    for w in [
        "faraway-host",
        "dated 3 days in the future",
        "cairn unlock --remove-all",
    ] {
        assert!(run.stderr.contains(w), "lacks {w:?}: {}", run.stderr);
    }
    // Not stale: a plain unlock keeps it; --remove-all removes it; then the backup runs.
    let run = f.cmd().args(["--json", "unlock"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([]));
    assert!(f.repo.join("locks").join(&lock).exists());
    let run = f.cmd().args(["--json", "unlock", "--remove-all"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([lock]));
    f.backup(&[&src], &[]);
}

#[test]
fn a_foreign_lock_from_the_past_says_when_it_goes_stale() {
    let f = Fixture::new();
    plant_lock(&f, &foreign_lock(10 * MINUTE + 20_000_000_000));
    let run = f.cmd().arg("prune").run();
    run.expect(11);
    for w in [
        "faraway-host",
        "last refreshed 10 minutes ago",
        "goes stale in 19 minutes",
        "cairn unlock --remove-all",
    ] {
        assert!(run.stderr.contains(w), "lacks {w:?}: {}", run.stderr);
    }
    // Stale ones (over 30 minutes) are ignored and removed by a plain unlock.
    let f = Fixture::new();
    let stale = plant_lock(&f, &foreign_lock(31 * MINUTE));
    f.cmd().arg("prune").run().ok();
    let run = f.cmd().args(["--json", "unlock"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([stale]));
}

#[test]
fn unlock_removes_only_what_it_can_read_as_a_lock_of_this_repository() {
    let f = Fixture::new();
    let other = Fixture::new();
    let locks = f.repo.join("locks");
    // Not locks of this repository: foreign bytes under an id name, a lock of another
    // repository, a zero-length file, a file too large to be a lock.
    let foreign = random_bytes(1, 300);
    let foreign_name = hex::encode(content_hash(&foreign));
    write(locks.join(&foreign_name), &foreign);
    let theirs = plant_lock(&other, &foreign_lock(0));
    fs::copy(other.repo.join("locks").join(&theirs), locks.join(&theirs)).unwrap();
    let empty_name = "0".repeat(64);
    write(locks.join(&empty_name), b"");
    let big = random_bytes(2, 100_000);
    let big_name = hex::encode(content_hash(&big));
    write(locks.join(&big_name), &big);
    // And locks of this repository: a live-looking foreign one and a stale one.
    let live = plant_lock(&f, &foreign_lock(MINUTE));
    let stale = plant_lock(&f, &foreign_lock(40 * MINUTE));

    let run = f.cmd().args(["--json", "unlock", "--remove-all"]).run();
    run.ok();
    let j = run.json();
    let mut removed: Vec<String> = serde_json::from_value(j["removed"].clone()).unwrap();
    removed.sort();
    let mut want = vec![live, stale];
    want.sort();
    assert_eq!(removed, want);
    let mut unreadable: Vec<String> = j["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    unreadable.sort();
    let mut left = vec![foreign_name, theirs, empty_name, big_name];
    left.sort();
    assert_eq!(unreadable, left);
    for n in &left {
        assert!(locks.join(n).exists(), "{n} was removed");
    }
    // In human output they are named too; and they never block anyone.
    let run = f.cmd().arg("unlock").run();
    run.ok();
    for n in &left {
        assert!(
            run.stderr.contains(n.as_str()),
            "{n} not named: {}",
            run.stderr
        );
    }
    f.cmd().arg("prune").run().ok();
}

#[test]
fn a_repository_without_its_locks_directory_can_still_be_locked() {
    let f = Fixture::new();
    fs::remove_dir(f.repo.join("locks")).unwrap();
    let src = f.path("src");
    write(src.join("a"), "a");
    f.backup(&[&src], &[]);
    f.cmd().arg("prune").run().ok();
    assert!(f.repo.join("locks").is_dir());
}

