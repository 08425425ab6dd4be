//! The restore pipeline at scale: many batches of files written by several workers at once,
//! large files written in aligned stretches with direct I/O, and everything that must wait
//! for file content (hard links, directory times) still right.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

/// More files than one batch holds (256), with hard links whose first name is in an earlier
/// batch than the others, and directories whose times must be set after their last file.
#[test]
fn hard_links_and_directory_times_hold_across_many_batches() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a/first"), random_bytes(1, 70_000));
    for i in 0..700u64 {
        write(
            src.join(format!("m/sub{}/file{i:04}", i % 3)),
            random_bytes(100 + i, 1 + (i as usize * 37) % 9000),
        );
    }
    fs::hard_link(src.join("a/first"), src.join("m/sub2/link-to-first")).unwrap();
    fs::create_dir_all(src.join("z")).unwrap();
    fs::hard_link(src.join("a/first"), src.join("z/last-link")).unwrap();
    write(src.join("m/sub0/late"), random_bytes(2, 5000));
    fs::hard_link(src.join("m/sub0/late"), src.join("m/sub1/late-link")).unwrap();
    for (i, d) in ["a", "m/sub0", "m/sub1", "m/sub2", "m", "z", ""]
        .iter()
        .enumerate()
    {
        set_mtime(src.join(d), 1_600_000_000 + i as i64 * 1000, 123_456_789);
    }
    chmod(src.join("m/sub1"), 0o555);
    f.backup(&[&src], &[]);

    let target = f.path("target");
    f.restore_latest(&target);
    let restored = restored(&target, &src);
    assert_same_entries(&src, &restored);
    let first = fs::metadata(restored.join("a/first")).unwrap();
    assert_eq!(first.nlink(), 3, "a/first and its two links are one file");
    assert_eq!(
        first.ino(),
        fs::metadata(restored.join("z/last-link")).unwrap().ino()
    );
}

/// Under a low limit on open descriptors (some containers and service managers set 1024 or
/// less, as a hard limit), a restore of many files must still open every one of them: the
/// batches in flight shrink to fit, instead of files failing with "too many open files".
/// Each file here stays open from its first write to its last: its two data regions (with a
/// hole between) are a blob of its own and one that every file shares, in another pack.
#[test]
fn a_low_open_file_limit_still_restores_every_file() {
    use std::os::unix::fs::FileExt;
    let f = Fixture::small_packs();
    let src = f.path("src");
    let shared = random_bytes(7, 4096);
    for i in 0..600u64 {
        let path = src.join(format!("d{}/f{i:04}", i % 4));
        write(&path, random_bytes(900 + i, 4096));
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&shared, 1 << 20).unwrap();
    }
    f.backup(&[&src], &[]);
    let target = f.path("target");
    f.cmd()
        .fd_limit(128)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&src, &restored(&target, &src));
}

/// Large files arrive as stretches of whole blocks (direct I/O) with partial blocks at the
/// edges (page cache): a multi-megabyte file, one just above the direct-I/O threshold, a
/// sparse file with holes inside and at its end, and a file whose chunks repeat (one blob,
/// many places) must all come back byte for byte, holes still holes.
#[test]
fn large_sparse_and_repeating_files_restore_byte_for_byte() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    write(
        src.join("big.bin"),
        random_bytes(10, 9 * 1024 * 1024 + 4321),
    );
    write(src.join("just-over.bin"), random_bytes(11, 256 * 1024 + 1));
    let block = random_bytes(12, 1 << 20);
    let mut repeated = random_bytes(13, 777);
    for _ in 0..6 {
        repeated.extend_from_slice(&block);
    }
    write(src.join("repeated.bin"), &repeated);
    {
        use std::os::unix::fs::FileExt;
        let sparse = fs::File::create(src.join("sparse.bin")).unwrap();
        sparse.write_all_at(&random_bytes(14, 1 << 20), 0).unwrap();
        sparse
            .write_all_at(&random_bytes(15, (1 << 20) + 77), 4 << 20)
            .unwrap();
        sparse.set_len(12 << 20).unwrap();
    }
    f.backup(&[&src], &[]);

    let target = f.path("target");
    let run = f
        .cmd()
        .args(["--json", "restore", "latest", "--verify", "--target"])
        .arg(&target)
        .run();
    run.ok();
    let restored = restored(&target, &src);
    assert_same_entries(&src, &restored);
    for name in ["big.bin", "just-over.bin", "repeated.bin", "sparse.bin"] {
        assert!(
            fs::read(src.join(name)).unwrap() == fs::read(restored.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let sparse = fs::metadata(restored.join("sparse.bin")).unwrap();
    assert!(
        sparse.blocks() * 512 < 6 << 20,
        "the holes of sparse.bin were written: {} bytes allocated",
        sparse.blocks() * 512
    );
}
