//! Tampering, on the real binary: someone who can write to the repository (or a careless
//! copier) changes it under cairn, and cairn must neither be tricked into deleting the last
//! good copy of anything nor follow links out of the repository, must not make other users'
//! lives easier (file modes), and must never read an unbounded file.
//!
//! Every case starts from a copy of one small repository (three snapshots of three source
//! trees, 1 MiB packs so there are several), tampers with it, runs the commands a user would
//! (among them whatever `check` recommends), and ends by restoring every snapshot and comparing
//! it byte for byte and metadata for metadata with its source.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn::backend::{Backend, FileKind, LocalBackend};
use cairn::format::id::{IndexId, PackId};
use cairn::format::index::IndexPack;
use cairn::format::pack::PackWriter;
use cairn::Repository;
use common::*;

/// The base repository every case copies, made once per test binary.
struct Base {
    f: Fixture,
    /// The source tree of each snapshot, in snapshot order.
    srcs: Vec<PathBuf>,
    snaps: Vec<String>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let f = Fixture::small_packs();
        let a = f.path("src-a");
        write(a.join("random-1.bin"), random_bytes(1, 1_400_000));
        write(a.join("shared.bin"), random_bytes(2, 700_000));
        write(a.join("deep/x/y.txt"), "a line of text\n".repeat(3000));
        let b = f.path("src-b");
        write(b.join("shared.bin"), random_bytes(2, 700_000));
        write(b.join("random-2.bin"), random_bytes(3, 900_000));
        let c = f.path("src-c");
        for i in 0..10 {
            write(
                c.join(format!("notes/{i}.txt")),
                format!("note {i}\n").repeat(i * 50 + 1),
            );
        }
        write(c.join("random-3.bin"), random_bytes(4, 300_000));
        let srcs = vec![a, b, c];
        let snaps = srcs
            .iter()
            .enumerate()
            .map(|(i, s)| f.backup(&[s], &["--time", &format!("2024-01-0{} 10:00:00", i + 1)]))
            .collect();
        Base { f, srcs, snaps }
    })
}

fn copy_tree(from: &Path, to: &Path) {
    for rel in walk(from) {
        let (a, b) = (from.join(&rel), to.join(&rel));
        let meta = fs::symlink_metadata(&a).unwrap();
        if meta.is_dir() {
            fs::create_dir_all(&b).unwrap();
        } else if meta.is_file() {
            fs::copy(&a, &b).unwrap();
        }
    }
}

/// A fresh copy of the base repository.
fn copy_of_base() -> Fixture {
    let c = Fixture::empty();
    copy_tree(&base().f.repo, &c.repo);
    c
}

/// Restores every snapshot of the base into fresh directories and compares each with its
/// source, byte for byte and metadata for metadata.
#[track_caller]
fn assert_every_snapshot_restores(f: &Fixture, what: &str) {
    let b = base();
    for (i, (snap, src)) in b.snaps.iter().zip(&b.srcs).enumerate() {
        let target = f.path(format!("restore-{what}-{i}"));
        let run = f
            .cmd()
            .args(["restore", snap, "--target"])
            .arg(&target)
            .run();
        run.assert_no_panic();
        assert_eq!(
            run.code,
            0,
            "{what}: snapshot {snap} does not restore:\n{}",
            run.output()
        );
        assert_same_entries(src, &restored(&target, src));
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// The largest pack of a repository (a data pack every snapshot of `src-a` needs).
fn largest_pack(f: &Fixture) -> PathBuf {
    f.packs()
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

fn pack_path(f: &Fixture, name: &str) -> PathBuf {
    f.repo.join("data").join(&name[..2]).join(name)
}

fn flipped(mut bytes: Vec<u8>, offsets: &[usize]) -> Vec<u8> {
    for &o in offsets {
        bytes[o] ^= 0x5a;
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// (a) A pack copied under another name with damaged content, and its relatives.

/// How the good pack `p` (its bytes) is tampered with: returns the name of the file added (or
/// the one it was renamed to), and whether the original stays where it was.
type Tamper = fn(&Fixture, &Path, &[u8]) -> (String, bool);

fn tampers() -> Vec<(&'static str, Tamper)> {
    vec![
        (
            "a copy with flipped bytes under a name that sorts first",
            |f, _, bytes| {
                let n = bytes.len();
                let name = "0".repeat(64);
                write(
                    pack_path(f, &name),
                    flipped(bytes.to_vec(), &[30, n / 3, n / 2]),
                );
                (name, true)
            },
        ),
        (
            "a copy with flipped bytes under a name that sorts last",
            |f, _, bytes| {
                let n = bytes.len();
                let name = "f".repeat(64);
                write(
                    pack_path(f, &name),
                    flipped(bytes.to_vec(), &[30, n / 3, n / 2]),
                );
                (name, true)
            },
        ),
        ("a truncated copy", |f, _, bytes| {
            let name = format!("{}1", "0".repeat(63));
            write(pack_path(f, &name), &bytes[..bytes.len() / 2]);
            (name, true)
        }),
        (
            "a copy whose name is its hash but whose content is wrong",
            |f, _, bytes| {
                let bad = flipped(bytes.to_vec(), &[30, bytes.len() / 3]);
                let name = blake3::hash(&bad).to_hex().to_string();
                write(pack_path(f, &name), bad);
                (name, true)
            },
        ),
        (
            "a copy with a damaged header under a name that sorts first",
            |f, _, bytes| {
                let name = format!("{}2", "0".repeat(63));
                write(
                    pack_path(f, &name),
                    flipped(bytes.to_vec(), &[bytes.len() - 10]),
                );
                (name, true)
            },
        ),
        ("the good pack renamed to a wrong name", |f, p, _| {
            let name = format!("{}3", "0".repeat(63));
            let to = pack_path(f, &name);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::rename(p, &to).unwrap();
            (name, false)
        }),
    ]
}

#[test]
fn a_tampered_copy_of_a_pack_never_makes_repair_and_prune_lose_the_good_one() {
    for (what, tamper) in tampers() {
        let f = copy_of_base();
        let p = largest_pack(&f);
        let good = fs::read(&p).unwrap();
        let (added, original_stays) = tamper(&f, &p, &good);

        // What `check` says, and what it recommends, is followed.
        let check = f.cmd().arg("check").run();
        check.assert_no_panic();
        if original_stays {
            assert!(
                check.stderr.contains(&added) && check.stderr.contains("cairn repair index"),
                "{what}: check does not name {added} or recommend repair index:\n{}",
                check.output()
            );
        }

        let repair = f.cmd().args(["--json", "repair", "index"]).run();
        repair.assert_no_panic();
        repair.ok();
        let v = repair.json();
        let rejected: Vec<&str> = v["rejected_packs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pack"].as_str().unwrap())
            .collect();
        assert!(
            rejected.contains(&added.as_str()),
            "{what}: repair index indexed {added}: {v}"
        );
        assert!(
            repair.stderr.contains(&added),
            "{what}: repair index does not name {added}:\n{}",
            repair.stderr
        );
        assert!(
            pack_path(&f, &added).exists(),
            "{what}: repair index deleted {added}"
        );
        if !original_stays {
            assert!(
                v["blobs_salvaged"].as_u64().unwrap() > 0,
                "{what}: nothing of the renamed pack was salvaged: {v}"
            );
        }

        let prune = f.cmd().args(["--json", "prune"]).run();
        prune.assert_no_panic();
        prune.ok();
        if original_stays {
            assert!(
                p.exists(),
                "{what}: prune deleted the good pack {}:\n{}",
                name_of(&p),
                prune.output()
            );
            assert_eq!(fs::read(&p).unwrap(), good, "{what}: the good pack changed");
        }

        let check = f.cmd().args(["check", "--read-data"]).run();
        check.assert_no_panic();
        assert_eq!(
            check.code,
            0,
            "{what}: check --read-data is not clean after repair and prune:\n{}",
            check.output()
        );
        assert_every_snapshot_restores(&f, "after-tamper");
    }
}

/// Prune on its own (no repair first): the tampered copy is unindexed; it may only go once
/// the copy prune keeps is verified, and the good pack always stays.
#[test]
fn prune_alone_never_deletes_the_good_pack_of_a_tampered_copy() {
    for (what, tamper) in tampers() {
        let f = copy_of_base();
        let p = largest_pack(&f);
        let good = fs::read(&p).unwrap();
        let (_, original_stays) = tamper(&f, &p, &good);
        let prune = f.cmd().args(["--json", "prune"]).run();
        prune.assert_no_panic();
        if !original_stays {
            // The index names a pack that is gone: prune refuses, naming it.
            assert_eq!(prune.code, 1, "{what}:\n{}", prune.output());
            assert!(
                prune.stderr.contains(&name_of(&p)) && prune.stderr.contains("--force"),
                "{what}: the refusal does not name the missing pack or the override:\n{}",
                prune.stderr
            );
            continue;
        }
        prune.ok();
        assert_eq!(fs::read(&p).unwrap(), good, "{what}: the good pack changed");
        assert_every_snapshot_restores(&f, "prune-alone");
    }
}

/// A kept copy that does not verify is never what a deletion relies on: the duplicate stays.
#[test]
fn prune_keeps_a_duplicate_when_the_copy_it_would_keep_is_damaged() {
    let f = copy_of_base();
    let p = largest_pack(&f);
    let pname = name_of(&p);
    // Two indexed copies of the same blobs, as two clients racing leave them: the original,
    // and a second pack whose id sorts first and which the index names first (so its entries
    // are the ones readers use, and the ones prune keeps).
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&f.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let pid = PackId::from_hex(&pname).unwrap();
    let by_pack = repo.entries_by_pack().expect("index");
    let entries = by_pack[&pid].1.clone();
    let copy = loop {
        let mut w = PackWriter::new();
        for e in &entries {
            let sealed = repo
                .backend()
                .get_range(FileKind::Pack, &pname, e.offset as u64, e.length as usize)
                .unwrap();
            w.add(e.kind, e.id, &sealed, e.raw_length).unwrap();
        }
        let c = w
            .finish(repo.keys(), repo.config().pack_size as usize)
            .unwrap();
        if c.id < pid {
            break c;
        }
    };
    repo.put_pack(&copy).unwrap();
    let mut all = vec![IndexPack {
        id: copy.id,
        size: copy.bytes.len() as u64,
        blobs: copy.entries.clone(),
    }];
    all.extend(
        by_pack
            .into_iter()
            .map(|(id, (size, blobs))| IndexPack { id, size, blobs }),
    );
    let old: Vec<IndexId> = repo
        .list_names(FileKind::Index)
        .unwrap()
        .iter()
        .filter_map(|n| IndexId::from_hex(n))
        .collect();
    repo.save_index_files(all, old).unwrap();
    drop(repo);
    // Now the copy prune would keep is damaged in place (a flipped byte in its first blob).
    let cpath = pack_path(&f, &copy.id.to_hex());
    write(&cpath, flipped(fs::read(&cpath).unwrap(), &[30]));
    let prune = f.cmd().args(["--json", "prune"]).run();
    prune.assert_no_panic();
    prune.ok();
    let s = prune.summary();
    assert!(
        p.exists(),
        "prune deleted the only intact copy:\n{}",
        prune.output()
    );
    assert!(
        s["packs_kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["pack"] == pname.as_str()),
        "the kept pack is not reported: {s}"
    );
    assert!(s["packs_verified"].as_u64().unwrap() >= 1, "{s}");
    // Repair indexes the verified copy; then everything restores and checks clean.
    f.cmd().args(["repair", "index"]).run().ok();
    f.cmd().args(["prune"]).run().ok();
    f.cmd().args(["check", "--read-data"]).run().ok();
    assert_every_snapshot_restores(&f, "damaged-primary");
}

/// Prune refuses a repository whose structure check fails, names why, and `--force` overrides;
/// `--dry-run` still reports.
#[test]
fn prune_refuses_a_repository_whose_structure_check_fails_unless_forced() {
    let f = copy_of_base();
    // A snapshot that cannot be read could reference anything.
    let snap = f.repo.join("snapshots").join(&base().snaps[2]);
    write(&snap, flipped(fs::read(&snap).unwrap(), &[50]));
    let before = f.repo_files();
    let run = f.cmd().args(["--json", "prune"]).run();
    run.assert_no_panic();
    assert_eq!(run.code, 1, "{}", run.output());
    assert_eq!(run.summary()["refused"], true, "{}", run.output());
    assert!(
        run.stderr.contains(&base().snaps[2][..8]) && run.stderr.contains("--force"),
        "the refusal does not name the snapshot or the override:\n{}",
        run.stderr
    );
    assert_eq!(
        f.repo_files(),
        before,
        "a refused prune changed the repository"
    );

    let dry = f.cmd().args(["--json", "prune", "--dry-run"]).run();
    dry.assert_no_panic();
    assert_eq!(dry.code, 1, "{}", dry.output());
    let s = dry.summary();
    assert_eq!(s["refused"], true, "{s}");
    assert!(
        !s["structure_problems"].as_array().unwrap().is_empty(),
        "{s}"
    );
    assert_eq!(f.repo_files(), before, "a dry run changed the repository");

    let forced = f.cmd().args(["--json", "prune", "--force"]).run();
    forced.assert_no_panic();
    forced.ok();
    let s = forced.summary();
    assert_eq!(s["forced"], true, "{s}");
    assert_eq!(s["refused"], false, "{s}");
    // The readable snapshots still restore whole.
    let b = base();
    for i in 0..2 {
        let target = f.path(format!("forced-{i}"));
        f.cmd()
            .args(["restore", &b.snaps[i], "--target"])
            .arg(&target)
            .run()
            .ok();
        assert_same_entries(&b.srcs[i], &restored(&target, &b.srcs[i]));
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Symlinked layout directories.

/// Every regular file below `dir` (links not followed), with its bytes.
fn files_below(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|rel| fs::symlink_metadata(dir.join(rel)).unwrap().is_file())
        .map(|rel| {
            let bytes = fs::read(dir.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

#[test]
fn a_symlinked_layout_directory_stops_every_command_and_touches_nothing_behind_it() {
    // Another repository, with a lock file of its own, and a sentinel directory of files
    // named like objects.
    let other = Fixture::small_packs();
    let osrc = other.path("src");
    write(osrc.join("file"), random_bytes(9, 300_000));
    other.backup(&[&osrc], &[]);
    let lock = random_bytes(10, 200);
    write(
        other
            .repo
            .join("locks")
            .join(blake3::hash(&lock).to_hex().as_str()),
        &lock,
    );
    let sentinel = other.path("sentinel");
    for i in 0..4u64 {
        let b = random_bytes(20 + i, 1000);
        write(sentinel.join(blake3::hash(&b).to_hex().as_str()), &b);
    }
    write(sentinel.join("keep-me"), b"keep me");
    let other_sub = fs::read_dir(other.repo.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .next()
        .unwrap();
    let other_before = files_below(&other.repo);
    let sentinel_before = files_below(&sentinel);

    let repo_sub = name_of(largest_pack(&base().f).parent().unwrap());
    let layout = [
        ("keys".to_string(), "keys".to_string()),
        ("data".to_string(), "data".to_string()),
        (format!("data/{repo_sub}"), format!("data/{other_sub}")),
        ("index".to_string(), "index".to_string()),
        ("snapshots".to_string(), "snapshots".to_string()),
        ("locks".to_string(), "locks".to_string()),
    ];
    for (dir, other_dir) in &layout {
        for to in [other.repo.join(other_dir), sentinel.clone()] {
            let f = copy_of_base();
            let at = f.repo.join(dir);
            fs::remove_dir_all(&at).unwrap();
            symlink(&to, &at).unwrap();
            let src = &base().srcs[0];
            let commands: Vec<Vec<&str>> = vec![
                vec!["snapshots"],
                vec!["backup", src.to_str().unwrap()],
                vec!["prune"],
                vec!["unlock", "--remove-all"],
                vec!["repair", "index"],
                vec!["check"],
            ];
            for args in commands {
                let run = f.cmd().args(&args).run();
                run.assert_no_panic();
                assert_eq!(
                    run.code,
                    1,
                    "{args:?} with {dir}/ -> {}: exit {}\n{}",
                    to.display(),
                    run.code,
                    run.output()
                );
                assert!(
                    run.stderr.contains(&format!("{dir}/")) && run.stderr.contains("symbolic link"),
                    "{args:?} with {dir}/ a link: the message does not name it:\n{}",
                    run.stderr
                );
            }
            assert_eq!(
                files_below(&other.repo),
                other_before,
                "{dir}/ -> {}: the other repository changed",
                to.display()
            );
            assert_eq!(
                files_below(&sentinel),
                sentinel_before,
                "{dir}/ -> {}: the sentinel directory changed",
                to.display()
            );
            // Put back, the repository is whole.
            fs::remove_file(&at).unwrap();
            copy_tree(&base().f.repo.join(dir), &at);
            assert_every_snapshot_restores(&f, "unlinked");
        }
    }
}

/// The repository's own path may be a link (the user chose it).
#[test]
fn the_repository_path_itself_may_be_a_symlink() {
    let f = copy_of_base();
    let link = f.path("link-to-repo");
    symlink(&f.repo, &link).unwrap();
    let run = TestCommand::bare()
        .arg("-r")
        .arg(&link)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .args(["check"])
        .run();
    run.ok();
}

// ---------------------------------------------------------------------------------------------
// (c) File modes.

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn key_files_and_the_cache_are_owner_only_and_a_group_readable_repository_stays_shared() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    write(src.join("a"), random_bytes(30, 3_000_000));
    f.backup(&[&src], &[]);
    f.cmd().arg("check").run().ok();
    for rel in walk(&f.repo) {
        let p = f.repo.join(&rel);
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{} is {:o}", p.display(), mode(&p));
    }
    let keys: Vec<_> = walk(&f.repo.join("keys"))
        .into_iter()
        .filter(|r| !r.as_os_str().is_empty())
        .collect();
    assert_eq!(keys.len(), 2, "a key file and its copy");
    // check's verification record lives in the local cache.
    let cache = f.path("cache").join("cairn");
    let state: Vec<PathBuf> = walk(&cache).into_iter().map(|r| cache.join(r)).collect();
    assert!(
        state.iter().any(|p| p.ends_with("check-state.json")),
        "{state:?}"
    );
    for p in &state {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} is {:o}", p.display(), mode(p));
    }

    // Shared on purpose: the owner makes config group-readable (README "Sharing a repository
    // between users"); what cairn writes from then on is group-readable too.
    chmod(f.repo.join("config"), 0o640);
    let before: Vec<PathBuf> = walk(&f.repo);
    write(src.join("b"), random_bytes(31, 8_000_000));
    f.backup(&[&src], &[]);
    let new: Vec<PathBuf> = walk(&f.repo)
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    let (dirs, files): (Vec<_>, Vec<_>) =
        new.iter().map(|r| f.repo.join(r)).partition(|p| p.is_dir());
    assert!(!files.is_empty() && !dirs.is_empty(), "{new:?}");
    for p in files {
        assert_eq!(mode(&p), 0o640, "{} is {:o}", p.display(), mode(&p));
    }
    for p in dirs {
        assert_eq!(mode(&p), 0o770, "{} is {:o}", p.display(), mode(&p));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) Oversized objects and FIFOs.

/// Replaces `path` (or creates it) with a sparse file of 64 GiB.
fn huge(path: &Path) {
    let _ = fs::remove_file(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::File::create(path).unwrap().set_len(64 << 30).unwrap();
}

/// Replaces `path` (or creates it) with a FIFO nobody writes to.
fn fifo(path: &Path) {
    let _ = fs::remove_file(path);
    sh("mkfifo", &[path.as_os_str()]);
}

#[test]
fn oversized_objects_and_fifos_end_in_a_clear_message_without_a_hang() {
    let random_name = |seed: u64| blake3::hash(&random_bytes(seed, 64)).to_hex().to_string();
    let key = walk(&base().f.repo.join("keys"))
        .into_iter()
        .map(|r| r.to_str().unwrap().to_string())
        .find(|n| n.len() == 64)
        .unwrap();
    // (what, path relative to the repository, whether some command must name it)
    let cases: Vec<(&str, String, bool)> = vec![
        ("a lock file", format!("locks/{}", random_name(1)), false),
        ("an index file", format!("index/{}", random_name(2)), true),
        ("a snapshot", format!("snapshots/{}", random_name(3)), true),
        ("the key file", format!("keys/{key}"), true),
        ("the config", "config".to_string(), true),
    ];
    for (what, rel, named) in &cases {
        for (shape, make) in [("a huge sparse file", huge as fn(&Path)), ("a FIFO", fifo)] {
            let f = copy_of_base();
            let path = f.repo.join(rel);
            make(&path);
            let shown = rel.rsplit('/').next().unwrap();
            let shown = &shown[..shown.len().min(8)];
            let mut mentioned = false;
            for args in [
                vec!["snapshots"],
                vec!["check"],
                vec!["prune", "--dry-run"],
                vec!["prune"],
            ] {
                let run = f.cmd().args(&args).run();
                run.assert_no_panic();
                assert!(
                    run.code == 0 || run.code == 1,
                    "{what} as {shape}: {args:?} exit {}:\n{}",
                    run.code,
                    run.output()
                );
                if run.code == 1 {
                    assert!(
                        run.stderr.contains(shown),
                        "{what} as {shape}: {args:?} failed without naming it:\n{}",
                        run.stderr
                    );
                }
                mentioned |= run.output().contains(shown);
            }
            // A FIFO where an object may be is simply not an object (never listed); the key
            // file and the config are expected, so their absence is named.
            if *named && (shape != "a FIFO" || rel == "config" || rel.starts_with("keys/")) {
                assert!(mentioned, "{what} as {shape} was never named");
            }
            assert_every_snapshot_restores(&f, "oversized");
        }
    }
}
