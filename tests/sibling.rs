//! `cairn repair packs --from OTHER_REPO`: blobs this repository lost (deleted, truncated or
//! damaged packs; data and trees) come back from a sibling repository that has its own password
//! and keys (filled by `cairn copy`), verified by their ids here; restores are byte-exact and
//! `check --read-data` is clean afterwards. Bad input (a wrong or absent password, a missing
//! sibling, the repository itself) changes nothing. The sibling may be local, on sftp or on S3.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::format::pack::BlobKind;
use common::*;
use serde_json::Value;

const MIB: usize = 1 << 20;
/// The sibling's password: not the fixture repository's.
const PW2: &str = "the other disk's own password";

/// The fixture's repository and a sibling at `sib/` (opened by [`PW2`], the same cache).
struct Pair {
    f: Fixture,
    sib: PathBuf,
    /// Source directories, one per snapshot, oldest first.
    sources: Vec<PathBuf>,
    /// Snapshot ids in the fixture's repository, in the order of `sources`.
    snaps: Vec<String>,
}

impl Pair {
    /// A repository without parity (healing here comes from the sibling alone), 1 MiB packs
    /// and two snapshots of two directories (several data packs and a tree pack each), copied
    /// into a sibling with another password.
    fn new() -> Pair {
        let f = Fixture::empty();
        f.cmd()
            .args([
                "init",
                "--kdf-memory-mib",
                "8",
                "--pack-size",
                "1",
                "--parity",
                "off",
            ])
            .run()
            .ok();
        let sib = f.path("sib");
        sib_cmd(&f, &sib)
            .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
            .run()
            .ok();
        let mut p = Pair {
            f,
            sib,
            sources: Vec::new(),
            snaps: Vec::new(),
        };
        p.add_snapshot("one", 1);
        p.add_snapshot("two", 2);
        p.copy();
        assert!(
            p.f.repo_files().keys().all(|k| !k.starts_with("parity")),
            "the repository to heal has no parity"
        );
        p
    }

    /// Backs up a new directory of nested random files (about 4.5 MiB).
    fn add_snapshot(&mut self, name: &str, seed: u64) {
        let src = self.f.path(name);
        write(src.join("a.bin"), random_bytes(seed * 10 + 1, 2 * MIB));
        write(
            src.join("dir/b.bin"),
            random_bytes(seed * 10 + 2, MIB + 12_345),
        );
        write(
            src.join("dir/deeper/c.bin"),
            random_bytes(seed * 10 + 3, 1_300_000),
        );
        write(src.join("dir/deeper/small.txt"), format!("small {name}\n"));
        write(src.join("empty"), b"");
        let id = self.f.backup(&[&src], &[]);
        self.sources.push(src);
        self.snaps.push(id);
    }

    /// `cairn copy --to SIB` of every snapshot.
    fn copy(&self) {
        self.f
            .cmd()
            .args(["copy", "--to"])
            .arg(&self.sib)
            .env("CAIRN_TO_PASSWORD", PW2)
            .run()
            .ok();
    }

    /// `cairn repair packs --from SIB` with the sibling's password in `CAIRN_FROM_PASSWORD`.
    fn repair(&self, extra: &[&str]) -> Run {
        self.f
            .cmd()
            .args(extra)
            .args(["repair", "packs", "--from"])
            .arg(&self.sib)
            .env("CAIRN_FROM_PASSWORD", PW2)
            .run()
    }

    fn packs_by_kind(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        packs_by_kind(&self.f)
    }

    /// Restores snapshot `i` with `--verify` and compares it with its source, byte for byte.
    fn assert_restores(&self, i: usize) {
        assert_restores(&self.f, &self.snaps[i], &self.sources[i]);
    }

    fn check_read_data(&self) -> Run {
        self.f.cmd().args(["check", "--read-data"]).run()
    }
}

/// Data packs and tree packs of the fixture's repository, by path.
fn packs_by_kind(f: &Fixture) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut repo =
        cairn::Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let mut data = Vec::new();
    let mut trees = Vec::new();
    let mut packs: Vec<_> = repo.entries_by_pack().expect("index").into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    for (id, (_, entries)) in packs {
        let hex = id.to_hex();
        let path = f.repo.join("data").join(&hex[..2]).join(&hex);
        if entries.iter().any(|e| e.kind == BlobKind::Tree) {
            trees.push(path);
        } else {
            data.push(path);
        }
    }
    (data, trees)
}

/// Restores `snapshot` with `--verify` and compares it with `source`, byte for byte.
fn assert_restores(f: &Fixture, snapshot: &str, source: &Path) {
    let target = f.path(format!("restored-{snapshot}"));
    f.cmd()
        .args(["restore", snapshot, "--verify", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(source, &restored(&target, source));
    fs::remove_dir_all(&target).unwrap();
}

fn sib_cmd(f: &Fixture, sib: &Path) -> TestCommand {
    TestCommand::bare()
        .arg("-r")
        .arg(sib)
        .env("CAIRN_PASSWORD", PW2)
        .env("XDG_CACHE_HOME", f.path("cache"))
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    let at = offset as usize % bytes.len();
    bytes[at] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Deletes one data pack and every tree pack, flips bytes in a second data pack and truncates
/// a third; returns the damaged packs that exist afterwards (flipped, truncated).
fn damage(p: &Pair) -> Vec<PathBuf> {
    let (data, trees) = p.packs_by_kind();
    assert!(data.len() >= 5, "enough data packs: {data:?}");
    assert!(!trees.is_empty());
    fs::remove_file(&data[0]).unwrap();
    for t in &trees {
        fs::remove_file(t).unwrap();
    }
    for off in [100, 5_000, 70_000, 300_001] {
        flip(&data[2], off);
    }
    truncate(&data[4]);
    let check = p.check_read_data();
    check.expect(1);
    vec![data[2].clone(), data[4].clone()]
}

fn heals_everything(remove_copy_maps: bool) {
    let p = Pair::new();
    let damaged = damage(&p);
    if remove_copy_maps {
        // No hints from `copy`: candidates come from matching paths and from the full scan.
        let maps: Vec<PathBuf> = walk(&p.f.path("cache"))
            .into_iter()
            .filter(|r| r.to_string_lossy().ends_with(".map"))
            .collect();
        assert!(!maps.is_empty(), "copy keeps a map");
        for m in maps {
            fs::remove_file(p.f.path("cache").join(m)).unwrap();
        }
    }
    let run = p.repair(&["--json"]);
    run.ok();
    let s = run.summary();
    assert_eq!(s["ok"], true, "{s}");
    // Matching paths (and copy's map, when there is one) find everything: no full scan.
    assert_eq!(s["sibling_scanned"], false, "{s}");
    assert!(n(&s["blobs_healed"]) >= 4, "{s}");
    assert!(s["blobs_missing"].as_array().unwrap().is_empty(), "{s}");
    assert!(s["damaged_packs"].as_array().unwrap().len() >= 4, "{s}");
    for d in s["damaged_packs"].as_array().unwrap() {
        assert_eq!(n(&d["unrecovered"]), 0, "{d}");
    }
    for d in &damaged {
        assert!(!d.exists(), "the damaged pack {} was deleted", d.display());
    }
    p.check_read_data().ok();
    for i in 0..p.sources.len() {
        p.assert_restores(i);
    }
    // Healing again finds nothing to do and writes nothing.
    let before = p.f.repo_files();
    let again = p.repair(&["--json"]);
    again.ok();
    let s = again.summary();
    assert_eq!(n(&s["blobs_lost"]), 0, "{s}");
    let mut after = p.f.repo_files();
    after.retain(|k, _| !k.starts_with("locks"));
    let mut before = before;
    before.retain(|k, _| !k.starts_with("locks"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_sibling_with_another_password_heals_deleted_flipped_and_truncated_data_and_tree_packs() {
    heals_everything(false);
}

#[test]
fn without_copy_maps_a_sibling_still_heals_every_pack_by_matching_paths() {
    heals_everything(true);
}

#[test]
fn a_copy_map_whose_entries_lie_never_brings_in_a_wrong_blob() {
    let p = Pair::new();
    // Data only: the trees stay readable, so the map's hints for chunks are what is tried first.
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[0]).unwrap();
    flip(&data[2], 9_999);
    // Rotate the map's sibling ids by one record: every hint now names another blob.
    let cache = p.f.path("cache");
    let maps: Vec<PathBuf> = walk(&cache)
        .into_iter()
        .filter(|r| r.to_string_lossy().ends_with(".map"))
        .collect();
    assert_eq!(maps.len(), 1, "{maps:?}");
    let path = cache.join(&maps[0]);
    let bytes = fs::read(&path).unwrap();
    const HEADER: usize = 16 + 64;
    let records: Vec<&[u8]> = bytes[HEADER..].chunks(64).collect();
    assert!(records.len() > 10, "{}", records.len());
    let mut lying = bytes[..HEADER].to_vec();
    for (i, r) in records.iter().enumerate() {
        lying.extend_from_slice(&r[..32]);
        lying.extend_from_slice(&records[(i + 1) % records.len()][32..]);
    }
    fs::write(&path, lying).unwrap();
    let run = p.repair(&["--json"]);
    run.ok();
    assert_eq!(run.summary()["ok"], true);
    p.check_read_data().ok();
    p.assert_restores(0);
    p.assert_restores(1);
}

#[test]
fn the_sibling_password_may_come_from_a_file_or_its_environment_variable() {
    let p = Pair::new();
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[1]).unwrap();
    let pw = p.f.path("from-pw");
    fs::write(&pw, format!("{PW2}\n")).unwrap();
    p.f.cmd()
        .args(["repair", "packs", "--from"])
        .arg(&p.sib)
        .arg("--from-password-file")
        .arg(&pw)
        .run()
        .ok();
    p.check_read_data().ok();
    fs::remove_file(&p.packs_by_kind().0[0]).unwrap();
    p.f.cmd()
        .args(["repair", "packs", "--from"])
        .arg(&p.sib)
        .env("CAIRN_FROM_PASSWORD_FILE", &pw)
        .run()
        .ok();
    p.check_read_data().ok();
    p.assert_restores(0);
    p.assert_restores(1);
}

#[test]
fn a_sibling_that_lacks_some_blobs_heals_what_it_can_and_names_the_rest() {
    let mut p = Pair::new();
    let (old_data, _) = p.packs_by_kind();
    // A third snapshot the sibling never received.
    p.add_snapshot("three", 3);
    let (data, _) = p.packs_by_kind();
    let new_pack = data.iter().find(|d| !old_data.contains(d)).unwrap().clone();
    fs::remove_file(&old_data[0]).unwrap();
    flip(&new_pack, 1_000);
    let run = p.repair(&["--json"]);
    run.expect(1);
    let s = run.summary();
    assert_eq!(s["ok"], false, "{s}");
    assert!(n(&s["blobs_healed"]) >= 1, "{s}");
    let missing = s["blobs_missing"].as_array().unwrap();
    assert!(!missing.is_empty(), "{s}");
    assert!(
        missing
            .iter()
            .all(|m| m["referenced"] == true && m["kind"] == "data"),
        "{s}"
    );
    // The files that stay lost are named, all in the third snapshot, none in the others.
    let affected = s["affected"].as_array().unwrap();
    assert!(!affected.is_empty(), "{s}");
    for a in affected {
        assert!(
            p.snaps[2].starts_with(a["snapshot"].as_str().unwrap()),
            "only the third snapshot: {a}"
        );
        assert!(a["path"].as_str().unwrap().contains("/three/"), "{a}");
    }
    // Human output names them too.
    let human = p.repair(&[]);
    human.expect(1);
    assert!(
        human.stderr.contains("still unrestorable"),
        "{}",
        human.stderr
    );
    assert!(human.stderr.contains("/three/"), "{}", human.stderr);
    // What could be healed is whole; the damaged pack holding what could not stays in place
    // (never deleted with a blob no other copy holds) and check still names it.
    p.assert_restores(0);
    p.assert_restores(1);
    assert!(new_pack.exists(), "the damaged pack stays");
    let check = p.check_read_data();
    check.expect(1);
    let name = new_pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(check.stderr.contains(&name), "{}", check.stderr);
}

#[test]
fn a_sibling_backed_up_on_its_own_heals_through_a_scan_of_all_its_blobs() {
    // The sibling shares only the chunker parameters: its snapshot has another time and no
    // copy origin, so no path matches and no copy map exists; only a scan finds the chunks.
    let f = Fixture::small_packs();
    let src = f.path("one");
    write(src.join("a.bin"), random_bytes(41, 3 * MIB));
    write(src.join("dir/b.bin"), random_bytes(42, 3 * MIB + 7));
    write(src.join("dir/c.txt"), b"text\n");
    let snap = f.backup(&[&src], &[]);
    let sib = f.path("sib");
    sib_cmd(&f, &sib)
        .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
        .arg("--copy-chunker-params-from")
        .arg(&f.repo)
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .run()
        .ok();
    sib_cmd(&f, &sib)
        .args(["backup", "--time", "2001-02-03 04:05:06"])
        .arg(&src)
        .run()
        .ok();
    let (data, _) = packs_by_kind(&f);
    assert!(data.len() >= 3, "{data:?}");
    fs::remove_file(&data[0]).unwrap();
    fs::remove_file(&data[2]).unwrap();
    flip(&data[1], 4_321);
    f.cmd().args(["check", "--read-data"]).run().expect(1);
    let run = f
        .cmd()
        .args(["--json", "repair", "packs", "--from"])
        .arg(&sib)
        .env("CAIRN_FROM_PASSWORD", PW2)
        .run();
    run.ok();
    let s = run.summary();
    assert_eq!(s["sibling_scanned"], true, "{s}");
    assert!(n(&s["blobs_healed"]) >= 3, "{s}");
    f.cmd().args(["check", "--read-data"]).run().ok();
    assert_restores(&f, &snap, &src);
}

#[test]
fn superseded_index_files_left_behind_do_not_bring_a_healed_pack_back() {
    let p = Pair::new();
    // Index files that a rebuilt index supersedes, left in place as a crash would leave them.
    let index_dir = p.f.repo.join("index");
    let old: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    p.f.cmd().args(["repair", "index"]).run().ok();
    for (path, bytes) in &old {
        fs::write(path, bytes).unwrap();
    }
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[0]).unwrap();
    flip(&data[1], 2_000);
    p.repair(&[]).ok();
    p.check_read_data().ok();
    p.assert_restores(0);
    p.assert_restores(1);
}

#[test]
fn superseded_index_files_left_behind_do_not_revive_packs_that_prune_deleted() {
    let p = Pair::new();
    // One index file naming the packs of both snapshots.
    p.f.cmd().args(["repair", "index"]).run().ok();
    let index_dir = p.f.repo.join("index");
    let old: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    let (before, _) = p.packs_by_kind();
    p.f.cmd()
        .args(["forget", &p.snaps[0], "--prune"])
        .run()
        .ok();
    let (data, _) = p.packs_by_kind();
    assert!(before.iter().any(|d| !d.exists()), "prune deleted packs");
    for (path, bytes) in &old {
        fs::write(path, bytes).unwrap();
    }
    p.f.cmd().args(["check", "--read-data"]).run().ok();
    fs::remove_file(&data[0]).unwrap();
    p.repair(&[]).ok();
    p.check_read_data().ok();
    p.assert_restores(1);
}

#[test]
fn a_lost_index_file_heals_tree_level_by_tree_level_and_its_packs_in_no_index_are_named() {
    let p = Pair::new();
    // The index file of one backup is gone: its packs are in no index, its blobs seem lost.
    let mut index: Vec<PathBuf> = fs::read_dir(p.f.repo.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    index.sort();
    assert!(index.len() >= 2, "{index:?}");
    fs::remove_file(&index[0]).unwrap();
    let run = p.repair(&[]);
    run.ok();
    assert!(
        run.stderr.contains("in no index") && run.stderr.contains("cairn repair index"),
        "{}",
        run.stderr
    );
    p.check_read_data().ok();
}

#[test]
fn a_damaged_pack_of_forgotten_data_the_sibling_lacks_stays_and_the_heal_succeeds() {
    let mut p = Pair::new();
    let (old_data, _) = p.packs_by_kind();
    // A third snapshot the sibling never received, forgotten (its data stays until prune).
    p.add_snapshot("three", 3);
    let (data, _) = p.packs_by_kind();
    let unused = data.iter().find(|d| !old_data.contains(d)).unwrap().clone();
    p.f.cmd().args(["forget", &p.snaps[2]]).run().ok();
    flip(&unused, 3_333);
    fs::remove_file(&old_data[0]).unwrap();
    let run = p.repair(&["--json"]);
    run.ok();
    let s = run.summary();
    assert_eq!(s["ok"], true, "{s}");
    let missing = s["blobs_missing"].as_array().unwrap();
    assert!(!missing.is_empty(), "{s}");
    assert!(missing.iter().all(|m| m["referenced"] == false), "{s}");
    assert!(
        unused.exists(),
        "a pack with a blob not recovered is never deleted"
    );
    let human = p.repair(&[]);
    human.ok();
    assert!(
        human.stderr.contains("which no snapshot uses"),
        "{}",
        human.stderr
    );
    p.assert_restores(0);
    p.assert_restores(1);
}

/// Every file of the repository but its lock files.
fn files_without_locks(f: &Fixture) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = f.repo_files();
    files.retain(|k, _| !k.starts_with("locks"));
    files
}

#[test]
fn a_wrong_or_absent_sibling_password_exits_12_or_1_and_changes_nothing() {
    let p = Pair::new();
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[0]).unwrap();
    let before = p.f.repo_files();
    let sib_before: Vec<PathBuf> = walk(&p.sib);

    let wrong =
        p.f.cmd()
            .args(["repair", "packs", "--from"])
            .arg(&p.sib)
            .env("CAIRN_FROM_PASSWORD", "not it")
            .run();
    wrong.expect(12);
    let pw = p.f.path("wrong-pw");
    fs::write(&pw, "also not it\n").unwrap();
    p.f.cmd()
        .args(["repair", "packs", "--from"])
        .arg(&p.sib)
        .arg("--from-password-file")
        .arg(&pw)
        .run()
        .expect(12);
    // This repository's password is never used for the sibling, even when it would open it.
    let sib_with_same_pw = p.f.path("sib-same-pw");
    TestCommand::bare()
        .arg("-r")
        .arg(&sib_with_same_pw)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    for sib in [&p.sib, &sib_with_same_pw] {
        let none = p.f.cmd().args(["repair", "packs", "--from"]).arg(sib).run();
        none.expect(1);
        assert!(
            none.stderr.contains("CAIRN_FROM_PASSWORD"),
            "{}",
            none.stderr
        );
    }
    assert_eq!(p.f.repo_files(), before, "nothing changed");
    assert_eq!(walk(&p.sib), sib_before, "nothing changed in the sibling");
}

#[test]
fn healing_from_the_repository_itself_is_refused() {
    let p = Pair::new();
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[0]).unwrap();
    let before = p.f.repo_files();
    let same_dir_other_spelling = p.f.repo.join("data").join("..");
    for from in [p.f.repo.clone(), same_dir_other_spelling] {
        let run =
            p.f.cmd()
                .args(["repair", "packs", "--from"])
                .arg(&from)
                .env("CAIRN_FROM_PASSWORD", PASSWORD)
                .run();
        run.expect(1);
        assert!(
            run.stderr.contains("this repository itself"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(files_without_locks(&p.f), {
        let mut b = before;
        b.retain(|k, _| !k.starts_with("locks"));
        b
    });
}

#[test]
fn a_missing_sibling_exits_10_and_changes_nothing() {
    let p = Pair::new();
    let (data, _) = p.packs_by_kind();
    fs::remove_file(&data[0]).unwrap();
    let before = p.f.repo_files();
    let empty = p.f.path("empty-dir");
    fs::create_dir(&empty).unwrap();
    for from in [p.f.path("no-such-repo"), empty.clone(), p.f.path("one")] {
        let run =
            p.f.cmd()
                .args(["repair", "packs", "--from"])
                .arg(&from)
                .env("CAIRN_FROM_PASSWORD", PW2)
                .run();
        run.expect(10);
    }
    assert_eq!(p.f.repo_files(), before);
    assert!(!p.f.path("no-such-repo").exists(), "nothing created");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

/// Copies a repository into a sibling at `url` (on a server), loses a data pack and a tree
/// pack, and heals from the sibling there.
#[cfg(feature = "remote")]
fn heals_from_a_remote_sibling(url: &str, apply: &dyn Fn(TestCommand) -> TestCommand) {
    let f = Fixture::small_packs();
    let src = f.path("one");
    write(src.join("a.bin"), random_bytes(51, 2 * MIB + 5));
    write(src.join("dir/b.bin"), random_bytes(52, MIB));
    write(src.join("dir/c.txt"), b"remote\n");
    let snap = f.backup(&[&src], &[]);
    apply(
        TestCommand::bare()
            .arg("-r")
            .arg(url)
            .env("CAIRN_PASSWORD", PW2)
            .env("XDG_CACHE_HOME", f.path("cache")),
    )
    .args(["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
    .run()
    .ok();
    apply(f.cmd())
        .args(["copy", "--to", url])
        .env("CAIRN_TO_PASSWORD", PW2)
        .run()
        .ok();
    let (data, trees) = packs_by_kind(&f);
    fs::remove_file(&data[0]).unwrap();
    fs::remove_file(&trees[0]).unwrap();
    flip(&data[1], 777);
    let run = apply(f.cmd())
        .args(["--json", "repair", "packs", "--from", url])
        .env("CAIRN_FROM_PASSWORD", PW2)
        .run();
    run.ok();
    assert_eq!(run.summary()["ok"], true);
    f.cmd().args(["check", "--read-data"]).run().ok();
    assert_restores(&f, &snap, &src);
}

#[cfg(feature = "remote")]
#[test]
fn a_sibling_on_an_sftp_server_heals_like_a_local_one() {
    use common::servers::{self, Sshd};
    if !servers::require_sshd() {
        return;
    }
    let s = Sshd::start();
    heals_from_a_remote_sibling(&s.url("sib"), &|c| s.apply(c));
}

#[cfg(feature = "remote")]
#[test]
fn a_sibling_on_an_s3_server_heals_like_a_local_one() {
    use common::servers::{self, Garage};
    if !servers::require_garage() {
        return;
    }
    let g = Garage::start();
    heals_from_a_remote_sibling(&g.url("sib"), &|c| g.apply(c));
}
