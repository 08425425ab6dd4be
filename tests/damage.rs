//! Damage at rest: one thing in a repository is broken (a flipped byte, a truncated, deleted,
//! empty or stray file), and the real binary must notice, name what is broken, keep everything
//! else usable, and never panic (README.md "Interrupted backups, USB disks and damage").
//!
//! Every test builds a small repository (three snapshots of random and compressible files,
//! 1 MiB packs so there are several), copies it where it needs several variants, and damages
//! exactly one file.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::format::pack::BlobKind;
use cairn::repo::SnapshotFilter;
use common::*;
use serde_json::json;

/// The password of the second key in [`Repo::with_second_key`].
const SECOND_PASSWORD: &str = "a second, independent password";

/// A fixture repository with three snapshots of `src`; `src` is left as the last snapshot saw it.
struct Repo {
    f: Fixture,
    src: PathBuf,
    /// Snapshot ids, oldest first.
    snaps: Vec<String>,
}

/// Text that compresses well: numbered log lines.
fn compressible(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut n = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("{seed}:{n:08} INFO the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        n += 1;
    }
    out.truncate(len);
    out
}

impl Repo {
    /// `init --pack-size 1`, then three backups of a changing tree (about 4 MB in all).
    fn new() -> Repo {
        let f = Fixture::empty();
        cmd(&f)
            .args(["init", "--pack-size", "1", "--kdf-memory-mib", "8"])
            .run()
            .ok();
        let src = f.path("src");
        write(src.join("random-1.bin"), random_bytes(101, 1_400_000));
        write(src.join("random-2.bin"), random_bytes(102, 600_000));
        write(src.join("text/log.txt"), compressible(1, 800_000));
        for i in 0..8 {
            write(
                src.join(format!("small/note-{i}.txt")),
                format!("note number {i}\n").repeat(i * 40 + 1),
            );
        }
        write(src.join("deep/a/b/c.bin"), random_bytes(103, 250_000));
        let mut snaps = vec![f.backup(&[&src], &["--time", "2024-01-01 10:00:00"])];

        write(src.join("random-3.bin"), random_bytes(104, 500_000));
        let mut log = compressible(1, 800_000);
        log.extend(compressible(2, 200_000));
        write(src.join("text/log.txt"), log);
        snaps.push(f.backup(&[&src], &["--time", "2024-01-02 10:00:00"]));

        write(src.join("small/note-0.txt"), b"rewritten\n");
        write(src.join("deep/a/b/d.bin"), random_bytes(105, 300_000));
        snaps.push(f.backup(&[&src], &["--time", "2024-01-03 10:00:00"]));

        let r = Repo { f, src, snaps };
        assert!(
            r.f.packs().len() >= 3,
            "1 MiB packs: expected several, got {}",
            r.f.packs().len()
        );
        r
    }

    /// Adds a key for [`SECOND_PASSWORD`]; returns (the first key's file, the second's).
    fn with_second_key(&self) -> (PathBuf, PathBuf) {
        let before = self.key_files();
        let pw = self.f.path("second-password");
        write(&pw, format!("{SECOND_PASSWORD}\n"));
        cmd(&self.f)
            .args(["key", "add", "--kdf-memory-mib", "8", "--new-password-file"])
            .arg(&pw)
            .run()
            .ok();
        let after = self.key_files();
        assert_eq!(before.len(), 1);
        assert_eq!(after.len(), 2);
        let second = after.iter().find(|p| !before.contains(p)).unwrap().clone();
        (before[0].clone(), second)
    }

    /// The key files proper (not their `.copy` twins), sorted.
    fn key_files(&self) -> Vec<PathBuf> {
        self.files_in("keys")
            .into_iter()
            .filter(|p| p.extension().is_none())
            .collect()
    }

    /// The repository's regular files under `dir` (`data` includes every `data/XX/`), sorted.
    fn files_in(&self, dir: &str) -> Vec<PathBuf> {
        self.f
            .repo_files()
            .keys()
            .filter(|p| p.starts_with(dir))
            .map(|p| self.f.repo.join(p))
            .collect()
    }

    /// The largest pack file.
    fn largest_pack(&self) -> PathBuf {
        self.f
            .packs()
            .into_iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap()
    }

    /// A copy of this repository in a new temp dir (the source stays where it is).
    fn copy(&self) -> Fixture {
        let c = Fixture::empty();
        copy_tree(&self.f.repo, &c.repo);
        c
    }
}

/// `cairn -r REPO` with the password, and its local cache (check's verification state) inside
/// the fixture rather than in the user's home.
fn cmd(f: &Fixture) -> TestCommand {
    f.cmd().env("XDG_CACHE_HOME", f.path("cache"))
}

fn cmd_without_password(f: &Fixture) -> TestCommand {
    f.cmd_without_password()
        .env("XDG_CACHE_HOME", f.path("cache"))
}

fn copy_tree(from: &Path, to: &Path) {
    for rel in walk(from) {
        let (a, b) = (from.join(&rel), to.join(&rel));
        if fs::symlink_metadata(&a).unwrap().is_dir() {
            fs::create_dir_all(&b).unwrap();
        } else {
            fs::copy(&a, &b).unwrap();
        }
    }
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// XORs the byte at `offset` with `mask` (non-zero).
fn flip(path: &Path, offset: u64, mask: u8) {
    assert_ne!(mask, 0);
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= mask;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[track_caller]
fn assert_fails_naming(run: &Run, what: &str) {
    run.assert_no_panic();
    assert_ne!(
        run.code,
        0,
        "{} exited 0 despite damage to {what}:\n{}",
        run.what,
        run.output()
    );
    assert!(
        run.output().contains(what),
        "{} does not name {what}:\n{}",
        run.what,
        run.output()
    );
}

/// `check` finished its report (no fatal error cut it short).
#[track_caller]
fn assert_check_completed(run: &Run) {
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("checked "),
        "{} stopped before its report:\n{}",
        run.what,
        run.output()
    );
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("cairn:")),
        "{} ended in a fatal error:\n{}",
        run.what,
        run.stderr
    );
}

/// The ids `snapshots --json` lists.
fn listed_snapshots(run: &Run) -> BTreeSet<String> {
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. A flipped byte in a pack.

#[test]
fn check_read_data_names_a_pack_with_a_flipped_byte_wherever_the_byte_is() {
    let r = Repo::new();
    let pack = r.largest_pack();
    let bytes = fs::read(&pack).unwrap();
    let size = bytes.len() as u64;
    let header_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as u64;
    assert!(
        header_len + 4 < size,
        "header length {header_len} of {size}"
    );
    let header_start = size - 4 - header_len;
    let places = [
        ("the first blob's first byte", 0),
        ("inside the first blob", 100),
        ("the middle of the blobs", header_start / 2),
        ("the last blob's last byte", header_start - 1),
        ("the header's first byte", header_start),
        ("the middle of the header", header_start + header_len / 2),
        ("the trailer's low byte", size - 4),
        ("the trailer's high byte", size - 1),
    ];
    let rel = pack.strip_prefix(&r.f.repo).unwrap().to_path_buf();
    let pack_name = name(&pack);
    for (what, offset) in places {
        for mask in [0x01, 0x80] {
            let c = r.copy();
            flip(&c.repo.join(&rel), offset, mask);
            // The structure check may or may not notice; it must not panic, and if it fails
            // it must say which pack (its short id at least).
            let structure = cmd(&c).arg("check").run();
            structure.assert_no_panic();
            if structure.code != 0 {
                assert_fails_naming(&structure, &pack_name[..8]);
            }
            let full = cmd(&c).args(["check", "--read-data"]).run();
            assert!(
                full.code != 0 && full.output().contains(&pack_name),
                "flip {mask:#04x} at {what} (offset {offset} of {size}): check --read-data exited {} without naming pack {pack_name}:\n{}",
                full.code,
                full.output()
            );
            full.assert_no_panic();
        }
    }
}

// 2. A truncated pack.

#[test]
fn check_without_read_data_names_a_truncated_pack() {
    let r = Repo::new();
    let pack = r.largest_pack();
    let size = fs::metadata(&pack).unwrap().len();
    for len in [size - 1, size / 2, 3] {
        let c = r.copy();
        let p = c.repo.join(pack.strip_prefix(&r.f.repo).unwrap());
        truncate(&p, len);
        let run = cmd(&c).arg("check").run();
        assert_fails_naming(&run, &name(&pack));
        assert_check_completed(&run);
    }
}

// 3. A deleted pack.

/// A pack that holds none of the latest snapshot's trees but data of some (not all) of its
/// files; and those files and the others (paths relative to `/`, as restored under a target).
fn data_pack_and_its_files(r: &Repo) -> (PathBuf, BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let mut repo =
        cairn::Repository::open(Arc::new(LocalBackend::new(&r.f.repo)), PASSWORD.as_bytes())
            .unwrap();
    repo.load_index().unwrap();
    let (_, latest) = repo
        .find_snapshot("latest", &SnapshotFilter::default())
        .unwrap();
    // Every file of the latest snapshot with its chunks, and every tree it needs.
    let mut files: Vec<(PathBuf, Vec<cairn::format::id::BlobId>)> = Vec::new();
    let mut trees = BTreeSet::from([latest.tree.0]);
    cairn::restore::walk(&repo, latest.tree, Path::new(""), &mut |p, n| {
        if n.kind == cairn::snapshot::tree::NodeKind::File {
            files.push((p.to_path_buf(), n.chunks().collect()));
        }
        if let Some(sub) = n.subtree {
            trees.insert(sub.0);
        }
        Ok(())
    })
    .unwrap();
    let by_pack = repo.entries_by_pack().expect("index");
    let mut candidates: Vec<_> = by_pack
        .iter()
        .filter(|(_, (_, entries))| entries.iter().all(|e| !trees.contains(&e.id)))
        .collect();
    candidates.sort_by_key(|(id, _)| **id);
    for (id, (_, entries)) in candidates {
        let in_pack: BTreeSet<_> = entries
            .iter()
            .filter(|e| e.kind == BlobKind::Data)
            .map(|e| e.id)
            .collect();
        let (hit, miss): (Vec<_>, Vec<_>) = files
            .iter()
            .partition(|(_, chunks)| chunks.iter().any(|c| in_pack.contains(c)));
        if !hit.is_empty() && miss.iter().any(|(_, c)| !c.is_empty()) {
            let hex = id.to_hex();
            let path = r.f.repo.join("data").join(&hex[..2]).join(&hex);
            assert!(path.is_file(), "{}", path.display());
            return (
                path,
                hit.into_iter().map(|(p, _)| p.clone()).collect(),
                miss.into_iter().map(|(p, _)| p.clone()).collect(),
            );
        }
    }
    panic!(
        "no pack holds data of some, but not all, of the latest snapshot's files and none of its trees"
    );
}

#[test]
fn check_names_a_deleted_pack() {
    let r = Repo::new();
    let (pack, _, _) = data_pack_and_its_files(&r);
    fs::remove_file(&pack).unwrap();
    let run = cmd(&r.f).arg("check").run();
    assert_fails_naming(&run, &name(&pack));
    assert_check_completed(&run);
}

#[test]
fn restore_without_a_deleted_pack_restores_every_other_file_and_names_the_lost_ones() {
    let r = Repo::new();
    let (pack, lost, kept) = data_pack_and_its_files(&r);
    fs::remove_file(&pack).unwrap();
    let target = r.f.path("restore");
    let run = cmd(&r.f)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run();
    run.expect(1);
    run.assert_no_panic();
    for rel in &kept {
        let original = Path::new("/").join(rel);
        let restored = target.join(rel);
        assert!(
            restored.is_file(),
            "{} was not restored though its data is intact:\n{}",
            rel.display(),
            run.stderr
        );
        assert!(
            fs::read(&original).unwrap() == fs::read(&restored).unwrap(),
            "{}: restored content differs",
            rel.display()
        );
    }
    for rel in &lost {
        assert!(
            !target.join(rel).exists(),
            "{} is on disk though part of its data is gone",
            rel.display()
        );
        assert!(
            run.stderr.contains(&target.join(rel).display().to_string()),
            "restore does not name the lost file {}:\n{}",
            rel.display(),
            run.stderr
        );
    }
}

// 4. Every index file deleted.

#[test]
fn after_deleting_every_index_file_repair_index_makes_check_and_restore_whole_again() {
    let r = Repo::new();
    let index = r.files_in("index");
    assert!(!index.is_empty());
    for p in &index {
        fs::remove_file(p).unwrap();
    }
    let run = cmd(&r.f).arg("check").run();
    run.assert_no_panic();
    assert_ne!(
        run.code,
        0,
        "check passes without an index:\n{}",
        run.output()
    );
    assert_check_completed(&run);

    cmd(&r.f).args(["repair", "index"]).run().ok();
    let run = cmd(&r.f).args(["check", "--read-data"]).run();
    run.ok();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let listed = cmd(&r.f).args(["--json", "snapshots"]).run();
    listed.ok();
    assert_eq!(
        listed_snapshots(&listed),
        r.snaps.iter().cloned().collect::<BTreeSet<_>>()
    );
    let target = r.f.path("restore");
    cmd(&r.f)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&r.src, &restored(&target, &r.src));
}

// 5. A damaged snapshot file.

#[test]
fn snapshots_lists_the_intact_snapshots_and_warns_about_a_damaged_one() {
    let r = Repo::new();
    let damaged = &r.snaps[1];
    let path = r.f.repo.join("snapshots").join(damaged);
    let len = fs::metadata(&path).unwrap().len();
    flip(&path, len / 2, 0x10);

    let run = cmd(&r.f).args(["--json", "snapshots"]).run();
    run.ok();
    assert_eq!(
        listed_snapshots(&run),
        [r.snaps[0].clone(), r.snaps[2].clone()]
            .into_iter()
            .collect()
    );
    assert!(
        run.stderr.contains(damaged.as_str()),
        "no warning names the damaged snapshot {damaged}:\n{}",
        run.stderr
    );
    let human = cmd(&r.f).arg("snapshots").run();
    human.ok();
    assert!(human.stdout().contains("2 snapshots"), "{}", human.stdout());

    let check = cmd(&r.f).arg("check").run();
    assert_fails_naming(&check, damaged);
    assert_check_completed(&check);
}

// 6. A damaged key file.

#[test]
fn the_other_password_still_opens_a_repository_with_a_damaged_key_file() {
    let r = Repo::new();
    let (first, _) = r.with_second_key();
    let len = fs::metadata(&first).unwrap().len();
    flip(&first, len - 5, 0x01);
    let pw = r.f.path("second-password");
    let run = cmd_without_password(&r.f)
        .arg("--password-file")
        .arg(&pw)
        .args(["--json", "snapshots"])
        .run();
    run.ok();
    assert_eq!(
        listed_snapshots(&run),
        r.snaps.iter().cloned().collect::<BTreeSet<_>>()
    );
    let target = r.f.path("restore");
    cmd_without_password(&r.f)
        .arg("--password-file")
        .arg(&pw)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&r.src, &restored(&target, &r.src));
}

/// Flips a byte at several places in the key file the main password opens (the repository has
/// a second key), and opens it with the main password alone.
#[test]
fn a_damaged_key_file_is_named_as_damaged_when_its_password_no_longer_opens_anything() {
    let r = Repo::new();
    let (first, _) = r.with_second_key();
    let rel = first.strip_prefix(&r.f.repo).unwrap().to_path_buf();
    let copy_rel = PathBuf::from(format!("{}.copy", rel.display()));
    let len = fs::metadata(&first).unwrap().len();
    let key_name = name(&first);
    for offset in [0, len / 4, len / 2, len - 5, len - 1] {
        let c = r.copy();
        flip(&c.repo.join(&rel), offset, 0x01);
        // The key file's copy still opens the repository, with a warning naming the damage.
        let run = cmd(&c).arg("snapshots").run();
        run.assert_no_panic();
        assert_eq!(run.code, 0, "the copy opens: {}", run.stderr);
        assert!(
            run.stderr.contains(&key_name) && run.stderr.contains("damaged"),
            "{}",
            run.stderr
        );
        // Both damaged: the password cannot open anything, and the message says why.
        flip(&c.repo.join(&copy_rel), offset, 0x01);
        let run = cmd(&c).arg("snapshots").run();
        run.assert_no_panic();
        assert!(
            run.code == 12 || run.code == 1,
            "flip at {offset} of {len}: exit {}:\n{}",
            run.code,
            run.stderr
        );
        assert!(
            run.stderr.contains(&key_name) && run.stderr.contains("damaged"),
            "flip at {offset} of {len}: the message does not say key file {key_name} is damaged:\n{}",
            run.stderr
        );
    }
}

#[test]
fn check_reports_a_damaged_key_file_that_the_password_in_use_does_not_need() {
    let r = Repo::new();
    let (_, second) = r.with_second_key();
    let len = fs::metadata(&second).unwrap().len();
    flip(&second, len / 2, 0x01);
    let run = cmd(&r.f).args(["check", "--read-data"]).run();
    assert_fails_naming(&run, &name(&second));
}

// 7. A stray file in data/.

#[test]
fn check_reports_a_stray_file_in_data_and_prune_removes_it() {
    let r = Repo::new();
    let stray_bytes = random_bytes(7, 5_000);
    let stray_name = blake3::hash(&stray_bytes).to_hex().to_string();
    let stray =
        r.f.repo
            .join("data")
            .join(&stray_name[..2])
            .join(&stray_name);
    write(&stray, &stray_bytes);

    for args in [&["check"][..], &["check", "--read-data"]] {
        let run = cmd(&r.f).args(args).run();
        run.assert_no_panic();
        // What it is: damage-free, so a warning and exit 0 (see the report below).
        run.ok();
        assert!(
            run.stderr.contains(&stray_name),
            "{} does not mention the stray file {stray_name}:\n{}",
            run.what,
            run.stderr
        );
    }
    let json = cmd(&r.f).args(["--json", "check"]).run();
    json.ok();
    let summary = json.summary();
    assert!(
        summary["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains(&stray_name)),
        "{summary}"
    );

    let snapshots = cmd(&r.f).args(["--json", "snapshots"]).run();
    snapshots.ok();
    assert_eq!(listed_snapshots(&snapshots).len(), 3);

    let prune = cmd(&r.f).args(["--json", "prune"]).run();
    prune.ok();
    assert_eq!(prune.summary()["packs_unindexed_deleted"], json!(1));
    assert!(!stray.exists(), "prune left the stray file");

    let run = cmd(&r.f).args(["check", "--read-data"]).run();
    run.ok();
    assert!(
        !run.stderr.contains("warning") && !run.stderr.contains("error"),
        "check is not clean after prune:\n{}",
        run.stderr
    );
    let target = r.f.path("restore");
    cmd(&r.f)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&r.src, &restored(&target, &r.src));
}

/// A 64-hex file in the wrong `data/XX/` (its name does not start with XX): a stray file like
/// any other, which check must mention and prune must remove (or at least not claim to).
#[test]
fn prune_removes_a_stray_file_in_the_wrong_data_subdirectory() {
    let r = Repo::new();
    let stray_bytes = random_bytes(8, 3_000);
    let stray_name = blake3::hash(&stray_bytes).to_hex().to_string();
    let dir = if stray_name.starts_with("00") {
        "01"
    } else {
        "00"
    };
    let stray = r.f.repo.join("data").join(dir).join(&stray_name);
    write(&stray, &stray_bytes);
    let run = cmd(&r.f).arg("check").run();
    run.assert_no_panic();
    run.ok();
    assert!(
        run.stderr.contains(&stray_name),
        "check does not mention the stray file {}:\n{}",
        stray.display(),
        run.output()
    );
    let prune = cmd(&r.f).args(["--json", "prune"]).run();
    prune.assert_no_panic();
    prune.ok();
    let deleted = prune.summary()["packs_unindexed_deleted"].clone();
    assert!(
        !stray.exists(),
        "prune left {} (and reported packs_unindexed_deleted = {deleted})",
        stray.display()
    );
    let run = cmd(&r.f).arg("check").run();
    run.ok();
    assert!(!run.stderr.contains(&stray_name), "{}", run.stderr);
}

// 8. Zero-length files (what a crash before fsync leaves).

#[test]
fn a_zero_length_pack_is_named_by_check_and_snapshots_still_works() {
    let r = Repo::new();
    let pack = r.largest_pack();
    truncate(&pack, 0);
    let run = cmd(&r.f).args(["--json", "snapshots"]).run();
    run.ok();
    assert_eq!(listed_snapshots(&run).len(), 3);
    for args in [&["check"][..], &["check", "--read-data"]] {
        let run = cmd(&r.f).args(args).run();
        assert_fails_naming(&run, &name(&pack));
        assert_check_completed(&run);
    }
    // Rebuilding the index skips it with a message instead of failing.
    let repair = cmd(&r.f).args(["repair", "index"]).run();
    repair.assert_no_panic();
    repair.ok();
}

#[test]
fn a_zero_length_index_file_is_skipped_with_a_warning_and_named_by_check() {
    let r = Repo::new();
    let index = r.files_in("index");
    assert_eq!(index.len(), 3, "one index file per backup");
    let empty = &index[1];
    truncate(empty, 0);
    let run = cmd(&r.f).args(["--json", "snapshots"]).run();
    run.ok();
    assert_eq!(listed_snapshots(&run).len(), 3);
    // A command that loads the index warns and goes on.
    let ls = cmd(&r.f).args(["ls", &r.snaps[0]]).run();
    ls.assert_no_panic();
    assert!(
        !ls.stderr
            .lines()
            .any(|l| l.starts_with("cairn:") && l.contains(&name(empty))),
        "a zero-length index file is a fatal error for ls:\n{}",
        ls.stderr
    );
    let check = cmd(&r.f).arg("check").run();
    assert_fails_naming(&check, &name(empty));
    assert_check_completed(&check);
    // And it is repairable.
    cmd(&r.f).args(["repair", "index"]).run().ok();
    cmd(&r.f).args(["check", "--read-data"]).run().ok();
}

#[test]
fn a_zero_length_snapshot_file_is_skipped_with_a_warning_and_named_by_check() {
    let r = Repo::new();
    let empty = &r.snaps[0];
    truncate(&r.f.repo.join("snapshots").join(empty), 0);
    let run = cmd(&r.f).args(["--json", "snapshots"]).run();
    run.ok();
    assert_eq!(
        listed_snapshots(&run),
        r.snaps[1..].iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(run.stderr.contains(empty.as_str()), "{}", run.stderr);
    let check = cmd(&r.f).arg("check").run();
    assert_fails_naming(&check, empty);
    assert_check_completed(&check);
    let target = r.f.path("restore");
    cmd(&r.f)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&r.src, &restored(&target, &r.src));
}

// 9. Random single-byte flips anywhere at rest.

/// SplitMix64, for choosing files and offsets reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let b = random_bytes(self.0, 8);
        self.0 = self.0.wrapping_add(1);
        u64::from_le_bytes(b.try_into().unwrap())
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn check_read_data_names_the_file_after_any_single_byte_flip_at_rest() {
    const TRIALS: u64 = 40;
    let r = Repo::new();
    let files: BTreeMap<PathBuf, Vec<u8>> = r.f.repo_files();
    assert!(
        files.keys().all(|p| !p.starts_with("locks")),
        "a lock file at rest: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    // Every kind of file gets its share of trials; packs, the bulk of the bytes, two shares.
    let kinds = ["config", "keys", "data", "index", "snapshots", "data"];
    let mut failures = Vec::new();
    for trial in 0..TRIALS {
        let mut rng = Rng(0xDA4A_6E00 + trial * 1000);
        let kind = kinds[trial as usize % kinds.len()];
        let of_kind: Vec<&PathBuf> = files.keys().filter(|p| p.starts_with(kind)).collect();
        assert!(!of_kind.is_empty(), "no {kind} files");
        let rel = of_kind[rng.below(of_kind.len() as u64) as usize];
        let len = files[rel].len() as u64;
        let offset = rng.below(len);
        let mask = 1 + rng.below(255) as u8;

        let c = r.copy();
        flip(&c.repo.join(rel), offset, mask);
        if kind == "data" {
            // The structure check reads headers and trees without hashing whole packs: hostile
            // bytes reach the parsers. It may pass; it must not panic.
            let structure = cmd(&c).arg("check").run();
            if structure.code == 101 || structure.code < 0 || structure.stderr.contains("panicked")
            {
                failures.push(format!(
                    "trial {trial}: {} byte {offset} ^= {mask:#04x}: check PANICKED\n{}",
                    rel.display(),
                    structure.stderr
                ));
            }
        }
        let run = cmd(&c).args(["check", "--read-data"]).run();
        let file_name = name(rel);
        let out = run.output();
        let named = match kind {
            "config" => out.contains("config"),
            "keys" => out.contains(&file_name) || out.contains("key file"),
            _ => out.contains(&file_name),
        };
        let panicked = run.code == 101 || run.stderr.contains("panicked") || run.code < 0;
        if panicked || run.code == 0 || !named {
            failures.push(format!(
                "trial {trial}: {} byte {offset} of {len} ^= {mask:#04x}: exit {}{}{}\n{}",
                rel.display(),
                run.code,
                if panicked { ", PANIC" } else { "" },
                if named {
                    ""
                } else {
                    ", damaged file not named"
                },
                out.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {TRIALS} flips went wrong:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Renames a flipped index, snapshot or key file to the hash of its new bytes, so the name
/// check passes and the damage reaches decryption and the parsers.
#[test]
fn a_flipped_byte_under_a_matching_name_is_still_caught_by_authentication() {
    let r = Repo::new();
    let files = r.f.repo_files();
    let kinds = ["index", "snapshots", "keys"];
    let mut failures = Vec::new();
    for trial in 0..9u64 {
        let mut rng = Rng(0x5EA1_0000 + trial * 1000);
        let kind = kinds[trial as usize % kinds.len()];
        let of_kind: Vec<&PathBuf> = files.keys().filter(|p| p.starts_with(kind)).collect();
        let rel = of_kind[rng.below(of_kind.len() as u64) as usize];
        let mut bytes = files[rel].clone();
        let offset = rng.below(bytes.len() as u64) as usize;
        bytes[offset] ^= 1 + rng.below(255) as u8;
        let new_name = blake3::hash(&bytes).to_hex().to_string();

        let c = r.copy();
        fs::remove_file(c.repo.join(rel)).unwrap();
        write(c.repo.join(kind).join(&new_name), &bytes);
        let run = cmd(&c).args(["check", "--read-data"]).run();
        let out = run.output();
        let panicked = run.code == 101 || run.stderr.contains("panicked") || run.code < 0;
        // A key that fails authentication is indistinguishable from a wrong password (exit 12).
        let named = kind == "keys" || out.contains(&new_name);
        if panicked || run.code == 0 || !named {
            failures.push(format!(
                "trial {trial}: {} byte {offset} flipped, renamed {new_name}: exit {}{}{}\n{}",
                rel.display(),
                run.code,
                if panicked { ", PANIC" } else { "" },
                if named { "" } else { ", not named" },
                out.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// 10. restore --verify on an intact repository.

#[test]
fn restore_verify_of_an_intact_repository_exits_0_and_counts_every_file_verified() {
    let r = Repo::new();
    let target = r.f.path("restore");
    let run = cmd(&r.f)
        .args(["--json", "restore", "latest", "--verify", "--target"])
        .arg(&target)
        .run();
    run.ok();
    let s = run.summary();
    let files = walk(&r.src)
        .iter()
        .filter(|p| fs::symlink_metadata(r.src.join(p)).unwrap().is_file())
        .count();
    assert_eq!(files, 14);
    assert_eq!(s["snapshot_id"], json!(r.snaps[2]));
    assert_eq!(s["errors"], json!([]));
    assert_eq!(s["files_restored"], json!(files));
    assert_eq!(s["files_verified"], json!(files));
    assert_same_tree(&r.src, &restored(&target, &r.src));
}
