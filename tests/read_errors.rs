//! Read errors are damage (issue 18): a repository file that fails reads with EIO — a bad
//! sector, a failing USB disk — is retried once, then treated like a damaged file. `check
//! --read-data` names the pack and the files that need it, `restore` restores every other file
//! byte for byte and names the ones it could not, `copy` fails naming the pack; nothing panics,
//! hangs or returns a wrong byte. A read that fails once and then works is no damage at all.
//!
//! The errors come from a FUSE pass-through layer (tests/common/faultfs.rs) the repository is
//! created, written and read through; the first tests show that the layer itself fails exactly
//! the chosen reads and passes every other byte through.
#![cfg(feature = "mount")]
// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::repo::SnapshotFilter;
use common::faultfs::{FaultFs, Mounted};
use common::*;

// ---------------------------------------------------------------------------------------------
// The fault layer itself.

fn eio(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

#[test]
fn the_fault_layer_fails_exactly_the_chosen_ranges_and_passes_every_other_byte_through() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(7, 1 << 20);
    write(tmp.path().join("dir/file"), &data);
    let Some(m) = FaultFs::mount(tmp.path()) else {
        return;
    };
    let file = m.path().join("dir/file");
    assert_eq!(fs::read(&file).unwrap(), data, "an unfaulted read");

    m.fail_reads("dir/file", 300_000..304_096);
    let f = fs::File::open(&file).unwrap();
    let read = |offset: u64, len: usize| {
        let mut buf = vec![0; len];
        f.read_exact_at(&mut buf, offset).map(|()| buf)
    };
    // Before, after, touching either end from outside: byte-exact.
    for (offset, len) in [
        (0, 300_000),
        (304_096, data.len() - 304_096),
        (299_000, 1_000),
        (304_096, 10),
    ] {
        let got = read(offset, len).unwrap();
        assert!(
            got == data[offset as usize..offset as usize + len],
            "{len} bytes at {offset} differ through the fault layer"
        );
    }
    // Inside, straddling either end, spanning it: EIO, every time.
    for (offset, len) in [
        (300_000, 4_096),
        (301_000, 10),
        (299_999, 2),
        (304_095, 2),
        (0, data.len()),
    ] {
        for _ in 0..2 {
            let e = read(offset, len).unwrap_err();
            assert!(eio(&e), "{len} bytes at {offset}: {e}, not EIO");
        }
    }
    assert!(eio(&fs::read(&file).unwrap_err()));
    assert!(m.hits("dir/file") >= 11, "hits: {}", m.hits("dir/file"));

    // A fault for the first read only: that read fails, the next one works.
    m.clear();
    m.fail_reads_times("dir/file", 0..10, 1);
    assert!(eio(&read(0, 4096).unwrap_err()));
    assert_eq!(read(0, 4096).unwrap(), data[..4096]);

    // An open that fails, while the entry stays visible.
    m.clear();
    m.fail_opens("dir/file");
    assert!(eio(&fs::File::open(&file).unwrap_err()));
    assert_eq!(fs::metadata(&file).unwrap().len(), data.len() as u64);
    m.clear();
    assert_eq!(fs::read(&file).unwrap(), data, "after clear()");
}

#[test]
fn the_fault_layer_writes_renames_lists_and_unlinks_through_to_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = FaultFs::mount(tmp.path()) else {
        return;
    };
    let root = m.path();
    fs::create_dir(root.join("d")).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(root.join("d/tmp"))
        .unwrap();
    f.write_all(b"hello, ").unwrap();
    f.write_all(b"world").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::File::open(root.join("d")).unwrap().sync_all().unwrap();
    fs::rename(root.join("d/tmp"), root.join("d/final")).unwrap();
    assert_eq!(
        fs::read(tmp.path().join("d/final")).unwrap(),
        b"hello, world"
    );
    let mut s = String::new();
    fs::File::open(root.join("d/final"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "hello, world");
    let names: Vec<_> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["final"]);
    fs::remove_file(root.join("d/final")).unwrap();
    assert!(!tmp.path().join("d/final").exists());
    fs::remove_dir(root.join("d")).unwrap();
    assert!(!tmp.path().join("d").exists());
}

// ---------------------------------------------------------------------------------------------
// cairn over the fault layer.

/// A repository created and backed up through the fault layer (1 MiB packs, so several).
struct Setup {
    f: Fixture,
    src: PathBuf,
    m: Mounted,
}

impl Setup {
    fn new() -> Option<Setup> {
        let f = Fixture::empty();
        fs::create_dir(&f.repo).unwrap();
        let m = FaultFs::mount(&f.repo)?;
        let s = Setup {
            src: f.path("src"),
            f,
            m,
        };
        s.cmd()
            .args(["init", "--pack-size", "1", "--kdf-memory-mib", "8"])
            .run()
            .ok();
        write(s.src.join("random-1.bin"), random_bytes(101, 1_400_000));
        write(s.src.join("random-2.bin"), random_bytes(102, 600_000));
        for i in 0..8 {
            write(
                s.src.join(format!("small/note-{i}.txt")),
                format!("note number {i}\n").repeat(i * 40 + 1),
            );
        }
        write(s.src.join("deep/a/b/c.bin"), random_bytes(103, 250_000));
        write(s.src.join("deep/a/b/d.bin"), random_bytes(104, 900_000));
        // Files of one chunk each, so that a pack holds blobs of many files.
        for i in 0..30 {
            write(
                s.src.join(format!("many/file-{i:02}.bin")),
                random_bytes(200 + i, 40_000),
            );
        }
        s.cmd().arg("backup").arg(&s.src).run().ok();
        assert!(
            s.f.packs().len() >= 3,
            "1 MiB packs: expected several, got {}",
            s.f.packs().len()
        );
        Some(s)
    }

    /// `cairn -r MOUNTED_REPO` with the password.
    fn cmd(&self) -> TestCommand {
        TestCommand::bare()
            .arg("-r")
            .arg(self.m.path())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", self.f.path("cache"))
    }

    /// The repository files under `dir`, relative to the repository, sorted.
    fn files_in(&self, dir: &str) -> Vec<PathBuf> {
        self.f
            .repo_files()
            .into_keys()
            .filter(|p| p.starts_with(dir))
            .collect()
    }

    fn size(&self, rel: &Path) -> u64 {
        fs::metadata(self.f.repo.join(rel)).unwrap().len()
    }

    fn open(&self) -> cairn::Repository {
        let mut repo = cairn::Repository::open(
            Arc::new(LocalBackend::new(&self.f.repo)),
            PASSWORD.as_bytes(),
        )
        .unwrap();
        repo.load_index().unwrap();
        repo
    }

    /// A pack holding data of some (not all) of the latest snapshot's files and none of its
    /// trees, whose middle sector ([`Setup::sector`]) holds data of some (not all) of them.
    fn data_pack(&self) -> DataPack {
        let repo = self.open();
        let (_, latest) = repo
            .find_snapshot("latest", &SnapshotFilter::default())
            .unwrap();
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
            let p = DataPack {
                rel: {
                    let hex = id.to_hex();
                    Path::new("data").join(&hex[..2]).join(&hex)
                },
                entries: entries
                    .iter()
                    .map(|e| (e.id, e.offset as u64..e.offset as u64 + e.length as u64))
                    .collect(),
                files: files.clone(),
            };
            let (lost, kept) = p.files(0..u64::MAX);
            let (on_sector, _) = p.files(self.sector(&p.rel));
            if !on_sector.is_empty() && on_sector.len() < lost.len() && !kept.is_empty() {
                return p;
            }
        }
        panic!("no pack holds data of some, but not all, files, several of them, and no tree");
    }

    /// The pack holding the latest snapshot's root tree.
    fn tree_pack(&self) -> PathBuf {
        let repo = self.open();
        let (_, latest) = repo
            .find_snapshot("latest", &SnapshotFilter::default())
            .unwrap();
        let hex = repo.index().get(&latest.tree.0).unwrap().pack.to_hex();
        Path::new("data").join(&hex[..2]).join(&hex)
    }

    /// The 4 KiB sector in the middle of a pack's blobs.
    fn sector(&self, pack: &Path) -> Range<u64> {
        let mid = self.header_start(pack) / 2 / 4096 * 4096;
        mid..mid + 4096
    }

    /// Where a pack's blobs end and its header begins.
    fn header_start(&self, pack: &Path) -> u64 {
        let bytes = fs::read(self.f.repo.join(pack)).unwrap();
        let hl = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as u64;
        bytes.len() as u64 - 4 - hl
    }
}

/// A data pack, its blobs' byte ranges, and every file of the snapshot with its chunks.
struct DataPack {
    rel: PathBuf,
    entries: Vec<(cairn::format::id::BlobId, Range<u64>)>,
    files: Vec<(PathBuf, Vec<cairn::format::id::BlobId>)>,
}

impl DataPack {
    /// The files (paths relative to `/`) that need a blob of this pack on `bytes`, and the
    /// others that have data.
    fn files(&self, bytes: Range<u64>) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
        let on: BTreeSet<_> = self
            .entries
            .iter()
            .filter(|(_, r)| r.start < bytes.end && bytes.start < r.end)
            .map(|(id, _)| *id)
            .collect();
        let (lost, kept): (Vec<_>, Vec<_>) = self
            .files
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .partition(|(_, chunks)| chunks.iter().any(|c| on.contains(c)));
        let paths = |v: Vec<&(PathBuf, _)>| v.into_iter().map(|(p, _)| p.clone()).collect();
        (paths(lost), paths(kept))
    }
}

/// The ways a pack can fail reads: a sector inside its blobs, its header, all of it, its open.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Sector,
    Header,
    Whole,
    Open,
}

const SHAPES: [Shape; 4] = [Shape::Sector, Shape::Header, Shape::Whole, Shape::Open];

/// Makes `pack` fail reads in `shape`; returns the byte range that fails.
fn inject(s: &Setup, pack: &Path, shape: Shape) -> Range<u64> {
    let size = s.size(pack);
    let range: Range<u64> = match shape {
        Shape::Sector => s.sector(pack),
        Shape::Header => s.header_start(pack)..size,
        Shape::Whole | Shape::Open => 0..size,
    };
    match shape {
        Shape::Open => s.m.fail_opens(pack),
        _ => s.m.fail_reads(pack, range.clone()),
    }
    range
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

#[track_caller]
fn assert_names(run: &Run, what: &str, why: &str) {
    assert!(
        run.output().contains(what),
        "{} does not name {what} ({why}):\n{}",
        run.what,
        run.output()
    );
}

#[test]
fn check_read_data_names_a_pack_that_fails_reads_and_exactly_the_files_that_need_those_bytes() {
    let Some(s) = Setup::new() else {
        return;
    };
    let p = s.data_pack();
    let pack = &p.rel;
    for shape in SHAPES {
        s.m.clear();
        let before = s.m.hits(pack);
        let bad = inject(&s, pack, shape);
        // An unreadable header or open loses every blob; a bad sector, the blobs on it.
        let (lost, kept) = match shape {
            Shape::Sector => p.files(bad.clone()),
            _ => p.files(0..u64::MAX),
        };
        assert!(!lost.is_empty() && !kept.is_empty(), "{shape:?}");
        let run = s.cmd().args(["--json", "check", "--read-data"]).run();
        run.assert_no_panic();
        run.expect(1);
        assert!(
            s.m.hits(pack) > before,
            "{shape:?}: the fault was never reached"
        );
        let summary = run.summary();
        let errors = summary["errors"].to_string();
        assert!(
            errors.contains(&name(pack)),
            "{shape:?}: check does not name pack {}:\n{}",
            name(pack),
            run.output()
        );
        assert!(
            errors.contains("nput/output error"),
            "{shape:?}: check does not name the read error:\n{}",
            run.output()
        );
        // The unreadable bytes, as found sector by sector.
        let where_ = match shape {
            Shape::Sector => format!("at bytes {}..{}", bad.start, bad.end),
            Shape::Header => format!("..{}", bad.end),
            Shape::Whole | Shape::Open => format!("at all of its {} bytes", bad.end),
        };
        assert!(
            errors.contains(&where_),
            "{shape:?}: check does not say {where_:?}:\n{}",
            run.output()
        );
        let affected: BTreeSet<PathBuf> = summary["affected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| PathBuf::from(a["path"].as_str().unwrap()))
            .collect();
        let want: BTreeSet<PathBuf> = lost.iter().map(|p| Path::new("/").join(p)).collect();
        assert_eq!(
            affected,
            want,
            "{shape:?}: check names other files than those that need the unreadable bytes:\n{}",
            run.output()
        );
    }
    s.m.clear();
    s.cmd().args(["check", "--read-data"]).run().ok();
}

#[test]
fn restore_restores_every_file_whose_bytes_read_and_names_those_whose_bytes_fail() {
    let Some(s) = Setup::new() else {
        return;
    };
    let p = s.data_pack();
    let pack = &p.rel;
    for shape in SHAPES {
        s.m.clear();
        let before = s.m.hits(pack);
        let bad = inject(&s, pack, shape);
        // Restore reads blobs, never the header: a header it cannot read costs nothing.
        let (lost, kept) = match shape {
            Shape::Header => (BTreeSet::new(), p.files(0..u64::MAX).1),
            _ => p.files(bad),
        };
        let target = s.f.path(format!("restore-{shape:?}"));
        let run = s
            .cmd()
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .run();
        run.assert_no_panic();
        if lost.is_empty() {
            run.ok();
            assert_same_tree(&s.src, &restored(&target, &s.src));
            continue;
        }
        run.expect(1);
        assert!(
            s.m.hits(pack) > before,
            "{shape:?}: the fault was never reached"
        );
        for rel in &kept {
            let restored = target.join(rel);
            assert!(
                restored.is_file(),
                "{shape:?}: {} was not restored though its data reads:\n{}",
                rel.display(),
                run.stderr
            );
            assert!(
                fs::read(Path::new("/").join(rel)).unwrap() == fs::read(&restored).unwrap(),
                "{shape:?}: {} restored with different content",
                rel.display()
            );
        }
        for rel in &lost {
            assert!(
                !target.join(rel).exists(),
                "{shape:?}: {} is on disk though part of its data could not be read",
                rel.display()
            );
            assert_names(&run, &target.join(rel).display().to_string(), "a lost file");
        }
        assert_names(&run, &name(pack)[..8], "the unreadable pack");
        assert_names(&run, "nput/output error", "the read error");
    }
}

#[test]
fn copy_fails_naming_a_pack_whose_blobs_fail_reads_and_a_later_copy_completes() {
    let Some(s) = Setup::new() else {
        return;
    };
    let pack = s.data_pack().rel;
    let dst = s.f.path("dst");
    TestCommand::bare()
        .arg("-r")
        .arg(&dst)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    let copy = || {
        s.cmd()
            .args(["copy", "--to"])
            .arg(&dst)
            .env("CAIRN_TO_PASSWORD", PASSWORD)
            .run()
    };
    // Copy reads blobs, never the header: the header's shape is left out.
    for shape in [Shape::Sector, Shape::Whole, Shape::Open] {
        s.m.clear();
        inject(&s, &pack, shape);
        let run = copy();
        run.assert_no_panic();
        run.expect(1);
        assert_names(&run, &name(&pack), "the unreadable pack");
        assert_names(&run, "nput/output error", "the read error");
    }
    s.m.clear();
    copy().ok();
    let target = s.f.path("restored");
    TestCommand::bare()
        .arg("-r")
        .arg(&dst)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&s.src, &restored(&target, &s.src));
}

#[test]
fn a_read_error_that_clears_on_the_retry_is_not_damage() {
    let Some(s) = Setup::new() else {
        return;
    };
    let pack = s.data_pack().rel;
    let tree_pack = s.tree_pack();
    // The first read of the pack's first sector fails, the second works: for check (which
    // reads whole packs), restore and copy (which read blobs).
    let first_sector = |p: &Path| {
        let before = s.m.hits(p);
        s.m.fail_reads_times(p, 0..4096, 1);
        before
    };
    let before = first_sector(&pack);
    s.cmd().args(["check", "--read-data"]).run().ok();
    assert_eq!(s.m.hits(&pack), before + 1, "check never met the error");

    // And for the index and snapshot files every command reads first.
    let index = s.files_in("index");
    let snapshots = s.files_in("snapshots");
    let before_meta = first_sector(&index[0]) + first_sector(&snapshots[0]);
    let before = first_sector(&pack);
    let target = s.f.path("restore");
    s.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_eq!(s.m.hits(&pack), before + 1, "restore never met the error");
    // The index file was read (and its entries cached) by the first command: restore reads
    // only the snapshot; `check` reads every index file again and meets that error.
    assert_eq!(
        s.m.hits(&snapshots[0]),
        before_meta + 1 - s.m.hits(&index[0]),
        "restore never met the snapshot's error"
    );
    assert_same_tree(&s.src, &restored(&target, &s.src));
    let before_index = s.m.hits(&index[0]);
    s.cmd().arg("check").run().ok();
    assert_eq!(
        s.m.hits(&index[0]),
        before_index + 1,
        "check never met the index file's error"
    );

    let dst = s.f.path("dst");
    TestCommand::bare()
        .arg("-r")
        .arg(&dst)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    let before = first_sector(&pack);
    let before_tree = first_sector(&tree_pack);
    s.cmd()
        .args(["copy", "--to"])
        .arg(&dst)
        .env("CAIRN_TO_PASSWORD", PASSWORD)
        .run()
        .ok();
    assert_eq!(s.m.hits(&pack), before + 1, "copy never met the error");
    assert_eq!(
        s.m.hits(&tree_pack),
        before_tree + 1,
        "copy never met the tree pack's error"
    );
    let target = s.f.path("restore-copy");
    TestCommand::bare()
        .arg("-r")
        .arg(&dst)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&s.src, &restored(&target, &s.src));
}

#[test]
fn eio_on_an_index_file_a_snapshot_file_or_a_tree_pack_is_a_clear_error_never_a_panic() {
    let Some(s) = Setup::new() else {
        return;
    };
    let index = s.files_in("index");
    let snapshots = s.files_in("snapshots");
    assert_eq!((index.len(), snapshots.len()), (1, 1));
    let tree_pack = s.tree_pack();
    let target = s.f.path("restore");
    for (what, file) in [
        ("index file", &index[0]),
        ("snapshot file", &snapshots[0]),
        ("tree pack", &tree_pack),
    ] {
        for whole_file in [true, false] {
            s.m.clear();
            if whole_file {
                s.m.fail_reads(file, 0..s.size(file));
            } else {
                s.m.fail_opens(file);
            }
            let runs = [
                s.cmd().arg("snapshots").run(),
                s.cmd().args(["ls", "latest"]).run(),
                s.cmd()
                    .args(["restore", "latest", "--target"])
                    .arg(&target)
                    .run(),
                s.cmd().arg("check").run(),
            ];
            assert!(s.m.hits(file) > 0, "{what}: the fault was never reached");
            for run in &runs {
                run.assert_no_panic();
                if run.code != 0 {
                    assert_names(run, &name(file)[..8], what);
                }
            }
            let check = &runs[3];
            assert_ne!(check.code, 0, "{what}: check passed:\n{}", check.output());
            assert_names(check, "nput/output error", what);
            let _ = fs::remove_dir_all(&target);
        }
    }
    s.m.clear();
    s.cmd().args(["check", "--read-data"]).run().ok();
}

/// A pack with a sector that fails every read (EIO) is damage that parity heals: `check` says
/// so, `repair packs` rebuilds the pack byte-identically (the new file replaces the faulty one,
/// as a rewritten sector is remapped by the disk), and everything then reads back exactly.
/// (Setup's repository has parity: the default for a local repository.)
#[test]
fn a_pack_whose_sector_fails_reads_with_eio_is_healed_from_parity() {
    let Some(s) = Setup::new() else {
        return;
    };
    let p = s.data_pack();
    let original = fs::read(s.f.repo.join(&p.rel)).unwrap();
    s.m.fail_reads(&p.rel, s.sector(&p.rel));
    let check = s.cmd().args(["--json", "check", "--read-data"]).run();
    check.expect(1);
    let c = check.summary();
    let problems = c["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{c}");
    assert_eq!(problems[0]["healable"], "parity", "{c}");
    let hits = s.m.hits(&p.rel);
    assert!(hits > 0, "the fault was reached");
    let run = s.cmd().args(["--json", "repair", "packs"]).run();
    run.ok();
    let r = run.json();
    assert_eq!(r["healed"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(s.m.hits(&p.rel) > hits, "repair read the faulty pack");
    assert_eq!(
        fs::read(s.f.repo.join(&p.rel)).unwrap(),
        original,
        "rebuilt byte for byte"
    );
    let check = s.cmd().args(["--json", "check", "--read-data"]).run();
    check.ok();
    let target = s.f.path("out-healed");
    s.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&s.src, &restored(&target, &s.src));
}
