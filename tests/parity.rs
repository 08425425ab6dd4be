//! Parity across packs on the real binary (README "Parity", repo-format.md §11): a repository
//! with parity is damaged in one way (flipped bytes, zeroed sectors, a deleted or truncated
//! pack, a lost or damaged parity file), then `repair packs` / `repair parity` heal it, `check
//! --read-data` is clean and a restore is byte-exact. Damage beyond what parity can heal is
//! named with the files it affects, and nothing else in the repository changes.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A repository with one snapshot of `src`, made with `init --parity PCT` and 1 MiB packs.
struct Repo {
    f: Fixture,
    src: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

impl Repo {
    /// About 7 MB of random files in 1 MiB packs: one parity group.
    fn new(parity: &str) -> Repo {
        let f = Fixture::empty();
        f.cmd()
            .args([
                "init",
                "--pack-size",
                "1",
                "--kdf-memory-mib",
                "8",
                "--parity",
                parity,
            ])
            .run()
            .ok();
        let src = f.path("src");
        for i in 0..6u64 {
            write(
                src.join(format!("file-{i}.bin")),
                random_bytes(200 + i, 700_000 + i as usize * 150_000),
            );
        }
        write(src.join("small.txt"), b"a small file\n");
        f.backup(&[&src], &[]);
        Repo { f, src }
    }

    /// A copy of the repository beside a reference to the same source.
    fn copy(&self) -> Repo {
        let f = Fixture::empty();
        copy_tree(&self.f.repo, &f.repo);
        Repo {
            f,
            src: self.src.clone(),
        }
    }

    fn files_in(&self, dir: &str) -> Vec<PathBuf> {
        self.f
            .repo_files()
            .keys()
            .filter(|p| p.starts_with(dir))
            .map(|p| self.f.repo.join(p))
            .collect()
    }

    fn packs(&self) -> Vec<PathBuf> {
        self.files_in("data")
    }

    fn parity_files(&self) -> Vec<PathBuf> {
        self.files_in("parity")
    }

    /// `check --read-data --json`'s summary (any exit code).
    fn check(&self) -> serde_json::Value {
        self.f
            .cmd()
            .args(["--json", "check", "--read-data"])
            .run()
            .summary()
    }

    fn assert_clean_and_restorable(&self) {
        let c = self.check();
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["problems"], serde_json::json!([]), "{c}");
        let target = self
            .f
            .path(format!("restored-{}", self.f.repo_files().len()));
        self.f.restore_latest(&target);
        assert_same_entries(&self.src, &restored(&target, &self.src));
    }

    /// `repair packs --json`: exits 0 and heals exactly `n` packs.
    fn heal(&self, n: usize) {
        let run = self.f.cmd().args(["--json", "repair", "packs"]).run();
        run.ok();
        let s = run.json();
        assert_eq!(s["healed"].as_array().unwrap().len(), n, "{s}");
        assert_eq!(s["unhealable"], serde_json::json!([]), "{s}");
    }
}

/// XORs `mask` into bytes of `path` at `offsets`.
fn flip(path: &Path, offsets: impl IntoIterator<Item = usize>) {
    let mut b = fs::read(path).unwrap();
    for o in offsets {
        let n = b.len();
        b[o % n] ^= 0x5a;
    }
    fs::write(path, b).unwrap();
}

/// Zeroes 4 KiB sector `k` of `path` (the short last one if `k` is past the end).
fn zero_sector(path: &Path, k: usize) {
    let mut b = fs::read(path).unwrap();
    let last = (b.len() - 1) / 4096;
    let k = k.min(last);
    let end = ((k + 1) * 4096).min(b.len());
    b[k * 4096..end].fill(0);
    fs::write(path, b).unwrap();
}

#[test]
fn a_repository_with_parity_has_parity_files_and_is_read_as_before() {
    let r = Repo::new("10%");
    assert!(r.packs().len() >= 5, "{:?}", r.packs());
    let parity = r.parity_files();
    assert!(!parity.is_empty());
    for p in &parity {
        // parity/XX/<id>, the id being the hash of the file's bytes.
        let name = p.file_name().unwrap().to_str().unwrap();
        let dir = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(&name[..2], dir);
        assert_eq!(blake3::hash(&fs::read(p).unwrap()).to_hex().as_str(), name);
    }
    let c = r.check();
    assert_eq!(c["parity_files"], parity.len(), "{c}");
    assert_eq!(c["parity_files_read"], parity.len(), "{c}");
    r.assert_clean_and_restorable();
}

#[test]
fn fifty_flipped_bytes_in_one_pack_are_healed() {
    let base = Repo::new("10%");
    // In the largest pack, and (another shape) spread over one 4 KiB sector of another.
    for shape in 0..2 {
        let r = base.copy();
        let mut packs = r.packs();
        packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
        let victim = if shape == 0 {
            packs.last().unwrap().clone()
        } else {
            packs[packs.len() / 2].clone()
        };
        let seed = random_bytes(7 + shape, 400);
        let offsets: Vec<usize> = (0..50)
            .map(|i| {
                let v = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
                if shape == 0 {
                    v
                } else {
                    8192 + v % 4096
                }
            })
            .collect();
        flip(&victim, offsets);
        let c = r.check();
        assert_eq!(c["ok"], false);
        let problems = c["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{c}");
        assert_eq!(problems[0]["healable"], "parity", "{c}");
        r.heal(1);
        r.assert_clean_and_restorable();
    }
}

#[test]
fn zeroed_sectors_in_several_packs_are_healed() {
    let r = Repo::new("10%");
    let packs = r.packs();
    // With one parity file a row may lose one column: the first row of one pack, a middle row
    // of another, the short last row of a third.
    zero_sector(&packs[0], 0);
    zero_sector(&packs[1], 40);
    zero_sector(&packs[2], usize::MAX);
    assert_eq!(r.check()["ok"], false);
    r.heal(3);
    r.assert_clean_and_restorable();
}

#[test]
fn a_deleted_pack_is_rebuilt_byte_identically() {
    let r = Repo::new("10%");
    let victim = r.packs()[1].clone();
    let original = fs::read(&victim).unwrap();
    fs::remove_file(&victim).unwrap();
    let c = r.check();
    assert_eq!(c["ok"], false);
    assert_eq!(c["problems"][0]["healable"], "parity", "{c}");
    r.heal(1);
    assert_eq!(fs::read(&victim).unwrap(), original);
    r.assert_clean_and_restorable();
}

#[test]
fn a_truncated_pack_is_rebuilt_whatever_is_left_of_it() {
    let base = Repo::new("10%");
    // Cut to half, to one byte short, and to nothing.
    for keep in [0.5f64, -1.0, 0.0] {
        let r = base.copy();
        let victim = r.packs()[2].clone();
        let original = fs::read(&victim).unwrap();
        let n = if keep < 0.0 {
            original.len() - 1
        } else {
            (original.len() as f64 * keep) as usize
        };
        fs::write(&victim, &original[..n]).unwrap();
        r.heal(1);
        assert_eq!(fs::read(&victim).unwrap(), original, "cut to {n}");
        r.assert_clean_and_restorable();
    }
}

#[test]
fn a_deleted_or_damaged_parity_file_is_recomputed_by_repair_parity() {
    let base = Repo::new("10%");
    for damage in ["delete", "flip", "truncate"] {
        let r = base.copy();
        let pf = r.parity_files()[0].clone();
        match damage {
            "delete" => fs::remove_file(&pf).unwrap(),
            "flip" => flip(&pf, [100, 5000]),
            _ => {
                let b = fs::read(&pf).unwrap();
                fs::write(&pf, &b[..b.len() / 2]).unwrap();
            }
        }
        let c = r.check();
        if damage == "delete" {
            // The group's only parity file: its packs are in no group any more, a warning.
            let w = c["warnings"].to_string();
            assert!(w.contains("not protected by parity"), "{c}");
        } else {
            assert_eq!(c["ok"], false, "{damage}: {c}");
        }
        r.f.cmd().args(["repair", "parity"]).run().ok();
        assert_eq!(r.check()["ok"], true, "{damage}: {}", r.check());
        assert!(!pf.exists(), "{damage}: the damaged parity file is gone");
        // The new parity heals: a pack lost afterwards is rebuilt.
        fs::remove_file(&r.packs()[0]).unwrap();
        r.heal(1);
        r.assert_clean_and_restorable();
    }
}

#[test]
fn damage_beyond_parity_is_named_and_nothing_is_made_worse() {
    let r = Repo::new("10%");
    let parity = r.parity_files().len();
    // One group: P parity files heal P lost packs, not P + 1.
    // The largest packs hold file data (the small one holds the directory trees).
    let mut by_size = r.packs();
    by_size.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    let victims: Vec<PathBuf> = by_size[..parity + 1].to_vec();
    for v in &victims {
        fs::remove_file(v).unwrap();
    }
    // And a pack that is there but damaged, in the same group: stays as it is.
    let damaged = by_size[parity + 1].clone();
    flip(&damaged, [10, 20, 30]);
    let before: BTreeMap<PathBuf, Vec<u8>> = r.f.repo_files();
    let c = r.check();
    assert!(
        c["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["healable"].is_null()),
        "{c}"
    );
    let run = r.f.cmd().args(["repair", "packs"]).run();
    run.expect(1);
    let err = run.output();
    for v in &victims {
        let name = v.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{name} not named: {err}");
    }
    assert!(err.contains("affected files"), "{err}");
    assert!(err.contains("file-"), "{err}");
    let json = r.f.cmd().args(["--json", "repair", "packs"]).run();
    json.expect(1);
    let s = json.json();
    assert_eq!(s["unhealable"].as_array().unwrap().len(), parity + 2, "{s}");
    assert!(!s["affected"].as_array().unwrap().is_empty(), "{s}");
    // Nothing in the repository changed (the lock files come and go).
    let after = r.f.repo_files();
    let strip = |m: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        m.iter()
            .filter(|(p, _)| !p.starts_with("locks"))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));
}

#[test]
fn repair_parity_protects_a_repository_made_without_parity() {
    let r = Repo::new("off");
    assert!(r.parity_files().is_empty());
    // Without a percentage it says what to give.
    let run = r.f.cmd().args(["repair", "parity"]).run();
    run.expect(1);
    assert!(run.output().contains("--parity"), "{}", run.output());
    r.f.cmd()
        .args(["repair", "parity", "--parity", "20%"])
        .run()
        .ok();
    assert!(!r.parity_files().is_empty());
    let before = r.parity_files();
    // Recorded in the config: a second run needs no percentage and finds nothing to do.
    r.f.cmd().args(["repair", "parity"]).run().ok();
    assert_eq!(r.parity_files(), before);
    // And later backups maintain it.
    write(r.src.join("new.bin"), random_bytes(999, 1_500_000));
    r.f.backup(&[&r.src], &[]);
    let c = r.check();
    assert_eq!(c["ok"], true, "{c}");
    assert!(
        c["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w.as_str().unwrap().contains("not protected")),
        "{c}"
    );
    fs::remove_file(&r.packs()[0]).unwrap();
    r.heal(1);
    r.assert_clean_and_restorable();
}

#[test]
fn bad_parity_percentages_are_refused_before_anything_is_created() {
    for bad in ["0%", "51%", "abc", "-5%", "10%%"] {
        let f = Fixture::empty();
        let run = f
            .cmd()
            .args(["init", "--kdf-memory-mib", "8", "--parity", bad])
            .run();
        run.expect(2);
        assert!(!f.repo.exists(), "{bad}");
    }
}

#[test]
fn prune_recomputes_the_groups_of_the_packs_it_deleted() {
    let r = Repo::new("10%");
    write(r.src.join("more.bin"), random_bytes(300, 2_000_000));
    r.f.backup(&[&r.src], &[]);
    for i in 0..6 {
        fs::remove_file(r.src.join(format!("file-{i}.bin"))).unwrap();
    }
    r.f.backup(&[&r.src], &[]);
    r.f.cmd()
        .args(["forget", "--keep-last", "1", "--prune"])
        .run()
        .ok();
    let c = r.check();
    assert_eq!(c["ok"], true, "{c}");
    assert!(
        c["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w.as_str().unwrap().contains("not protected")),
        "{c}"
    );
    // Every parity group names only packs that exist, and still heals.
    fs::remove_file(&r.packs()[0]).unwrap();
    r.heal(1);
    r.assert_clean_and_restorable();
}

#[test]
fn a_backup_after_a_pack_is_lost_keeps_the_parity_that_rebuilds_it() {
    let r = Repo::new("10%");
    let victim = r.packs()[1].clone();
    let original = fs::read(&victim).unwrap();
    fs::remove_file(&victim).unwrap();
    // The lost pack is still indexed: damage, not a prune. Its group must not be recomputed
    // without it (that would delete the only parity that can rebuild it).
    write(r.src.join("later.bin"), random_bytes(77, 900_000));
    r.f.backup(&[&r.src], &[]);
    r.heal(1);
    assert_eq!(fs::read(&victim).unwrap(), original);
    r.assert_clean_and_restorable();
}

#[test]
fn copy_protects_what_it_brings_into_a_destination_with_parity() {
    let r = Repo::new("off");
    let dst = Fixture::empty();
    dst.cmd()
        .args([
            "init",
            "--pack-size",
            "1",
            "--kdf-memory-mib",
            "8",
            "--parity",
            "5%",
        ])
        .run()
        .ok();
    r.f.cmd()
        .args(["copy", "--to"])
        .arg(&dst.repo)
        .env("CAIRN_TO_PASSWORD", PASSWORD)
        .run()
        .ok();
    let d = Repo {
        f: dst,
        src: r.src.clone(),
    };
    assert!(r.parity_files().is_empty());
    assert!(!d.parity_files().is_empty());
    let c = d.check();
    assert_eq!(c["ok"], true, "{c}");
    assert!(!c["warnings"].to_string().contains("not protected"), "{c}");
    fs::remove_file(&d.packs()[0]).unwrap();
    d.heal(1);
    d.assert_clean_and_restorable();
}

#[test]
fn a_backup_protects_full_groups_as_it_writes_them_and_they_heal_like_any_other() {
    // 1 MiB packs and 36 MB of random data: the first 20 packs written make a full group whose
    // parity is computed from the packs as they are written (header version 2, members in the
    // order written). The 16 or so packs after it are too few for a group of their own: the
    // full group takes them as they are written, and at the end of the run one group of all
    // of them replaces its files (groups of G to 2G - 1 packs, as `repair parity` makes them),
    // with no pack read back.
    let f = Fixture::empty();
    f.cmd()
        .args([
            "init",
            "--pack-size",
            "1",
            "--kdf-memory-mib",
            "8",
            "--parity",
            "10%",
        ])
        .run()
        .ok();
    let src = f.path("src");
    for i in 0..6u64 {
        write(
            src.join(format!("big-{i}.bin")),
            random_bytes(900 + i, 6_000_000),
        );
    }
    f.backup(&[&src], &[]);
    let r = Repo { f, src };
    let backend = std::sync::Arc::new(cairn::backend::LocalBackend::new(&r.f.repo));
    let repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let layout = cairn::parity::Layout::scan(&repo).unwrap();
    assert!(layout.unprotected().is_empty(), "{layout:?}");
    let shapes: Vec<(u32, usize)> = layout
        .groups
        .iter()
        .map(|g| (g.header.version, g.header.members.len()))
        .collect();
    let n = layout.packs.len();
    assert!((21..40).contains(&n), "{n} packs");
    assert_eq!(
        shapes,
        [(cairn::parity::format::HEADER_VERSION, n)],
        "one streamed group of all {n} packs"
    );
    // The files of the group of 20 it replaced are gone: two files in all.
    assert_eq!(layout.parity_files, 2, "{layout:?}");
    let streamed = &layout.groups[0];
    let members = streamed.header.member_ids();
    // Written in the order the packs were finished: pack ids are hashes, so not sorted (a
    // sorted order of 20 random ids has odds of 1 in 20!).
    assert!(members.windows(2).any(|w| w[0] > w[1]), "{members:?}");
    assert_eq!(streamed.files.iter().flatten().count(), 2);
    // A deleted member and a zeroed sector of another are healed from the streamed parity.
    let pack = |i: usize| {
        let hex = members[i].to_hex();
        r.f.repo.join("data").join(&hex[..2]).join(&hex)
    };
    let original = fs::read(pack(3)).unwrap();
    fs::remove_file(pack(3)).unwrap();
    zero_sector(&pack(17), 100);
    r.heal(2);
    assert_eq!(fs::read(pack(3)).unwrap(), original);
    r.assert_clean_and_restorable();
}
