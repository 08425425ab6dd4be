//! A repository written by an earlier cairn still opens, checks, restores byte for byte and
//! takes new backups. `tests/fixtures/repo-dd98748/` was written by cairn at commit dd98748,
//! the last one that kept the whole index in a hash map (before the index's sorted runs,
//! repo-format.md §8.1): password `fixture`, `init --kdf-memory-mib 8`, then
//!
//! 1. a backup of the tree [`tree_v2`] builds without `docs/extra.txt`, at 2026-12-01 10:00;
//! 2. `docs/extra.txt` added, a backup at 2026-12-02 10:00;
//! 3. `forget --keep-last 1 --prune` (so one index file supersedes others);
//! 4. `later.txt` added and `docs/f03.txt` changed, a backup at 2026-12-03 10:00.
//!
//! It is opened with an empty local cache, as the first run of a new cairn after an upgrade
//! finds it, and again with the cache that run left.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

const FIXTURE_PASSWORD: &str = "fixture";

/// The source tree of the second snapshot: file path → content.
fn tree_v2() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut t = BTreeMap::new();
    for i in 0..20usize {
        let line = format!("cairn fixture file {i}\n").into_bytes();
        let size = i * 3001;
        let data: Vec<u8> = line.iter().copied().cycle().take(size).collect();
        t.insert(PathBuf::from(format!("docs/f{i:02}.txt")), data);
    }
    let mut x: u64 = 20261206;
    let big: Vec<u8> = (0..300_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    t.insert(PathBuf::from("big.bin"), big);
    t.insert(PathBuf::from("docs/extra.txt"), b"extra\n".to_vec());
    t
}

fn tree_v3() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut t = tree_v2();
    t.insert(PathBuf::from("later.txt"), b"added after prune\n".to_vec());
    t.insert(PathBuf::from("docs/f03.txt"), b"changed\n".to_vec());
    t
}

/// Every regular file under `root`, relative to it.
fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

struct Old {
    f: Fixture,
}

impl Old {
    /// A writable copy of the fixture (commands write locks, backups write packs).
    fn new() -> Old {
        let f = Fixture::empty();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-dd98748");
        copy_dir(&src, &f.repo);
        for d in ["locks", "data", "index", "snapshots", "keys", "parity"] {
            std::fs::create_dir_all(f.repo.join(d)).expect("mkdir");
        }
        Old { f }
    }

    fn cmd(&self) -> TestCommand {
        self.f
            .cmd_without_password()
            .env("CAIRN_PASSWORD", FIXTURE_PASSWORD)
    }

    fn restore(&self, snapshot: &str, name: &str) -> BTreeMap<PathBuf, Vec<u8>> {
        self.restore_from(snapshot, name, Path::new("/tmp/fx/src"))
    }

    /// Restores `snapshot` into a new directory; returns the files of the backed-up `source`.
    fn restore_from(
        &self,
        snapshot: &str,
        name: &str,
        source: &Path,
    ) -> BTreeMap<PathBuf, Vec<u8>> {
        let target = self.f.path(name);
        self.cmd()
            .args(["restore", snapshot, "--target"])
            .arg(&target)
            .run()
            .ok();
        // Snapshots hold the absolute source path.
        files_under(&target.join(source.strip_prefix("/").expect("absolute")))
    }

    fn runs(&self) -> usize {
        let dir = self.f.path("cache");
        let mut n = 0;
        for e in walkdir(&dir) {
            if e.extension().is_some_and(|x| x == "run") {
                n += 1;
            }
        }
        n
    }
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_repository_written_before_the_index_runs_checks_restores_and_takes_backups() {
    let old = Old::new();
    assert_eq!(old.runs(), 0, "the cache starts empty, as after an upgrade");
    let list = old.cmd().args(["--json", "snapshots"]).run();
    list.ok();
    let snaps = list.json();
    let snaps = snaps.as_array().expect("a list of snapshots");
    assert_eq!(snaps.len(), 2, "the prune left two snapshots");
    old.cmd().args(["check", "--read-data"]).run().ok();
    assert!(old.runs() > 0, "the first load built the index's runs");

    // Byte for byte, both snapshots, the first with the runs just built.
    assert_eq!(old.restore("latest", "r3"), tree_v3());
    let older = snaps
        .iter()
        .min_by_key(|s| s["time"].as_str().map(str::to_string))
        .and_then(|s| s["id"].as_str())
        .expect("an id")
        .to_string();
    assert_eq!(old.restore(&older, "r2"), tree_v2());

    // The old index files stay as they are; a new backup adds one beside them, deduplicated
    // against what the old ones list.
    let src = old.f.path("src");
    for (rel, data) in tree_v3() {
        write(src.join(rel), data);
    }
    let run = old.cmd().args(["--json", "backup"]).arg(&src).run();
    run.ok();
    let s = run.summary();
    // Only the new directories' trees are new: the 840 KiB of content is all in the old packs.
    assert!(
        s["data_added"].as_u64().is_some_and(|n| n < 16 * 1024),
        "the old index deduplicates the new backup's content: {s}"
    );
    old.cmd().args(["check", "--read-data"]).run().ok();
    assert_eq!(old.restore_from("latest", "r4", &src), tree_v3());
    // And prune over old and new index files together.
    old.cmd()
        .args(["forget", "--keep-last", "1", "--prune"])
        .run()
        .ok();
    old.cmd().args(["check", "--read-data"]).run().ok();
    assert_eq!(old.restore_from("latest", "r5", &src), tree_v3());
}

#[test]
fn without_any_cache_every_command_builds_its_runs_in_a_temporary_directory() {
    let old = Old::new();
    old.cmd()
        .args(["--no-cache", "check", "--read-data"])
        .run()
        .ok();
    assert_eq!(old.runs(), 0, "--no-cache leaves nothing in the cache");
    let target = old.f.path("nc");
    old.cmd()
        .args(["--no-cache", "restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_eq!(files_under(&target.join("tmp/fx/src")), tree_v3());
    assert_eq!(old.runs(), 0);
}

#[test]
fn a_cache_directory_that_cannot_be_made_leaves_the_index_in_a_temporary_one() {
    let old = Old::new();
    // XDG_CACHE_HOME is a regular file: nothing can be made under it.
    let blocked = old.f.path("not-a-dir");
    write(&blocked, b"x");
    let target = old.f.path("ro");
    let run = old
        .cmd()
        .env("XDG_CACHE_HOME", &blocked)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run();
    run.ok();
    assert!(
        run.stderr.contains("local index cache"),
        "the fallback is said: {}",
        run.stderr
    );
    assert_eq!(files_under(&target.join("tmp/fx/src")), tree_v3());
}
