//! The command-line contract (docs/cli.md), checked against the real binary in temp dirs.
//!
//! Runs as root on Linux: the round-trip tests chown, mknod and set setuid bits.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use serde_json::json;

const MIB: usize = 1 << 20;

/// `makedev(42, 7)` and `makedev(43, 9)` on Linux.
const CHARDEV_RDEV: u64 = (42 << 8) | 7;
const BLOCKDEV_RDEV: u64 = (43 << 8) | 9;
/// The size of the sparse file and where its only data lives.
const SPARSE_LEN: u64 = 8 << 20;
const SPARSE_DATA_AT: u64 = 5 << 20;
const SPARSE_DATA: &[u8] = b"SPARSE-DATA-IN-THE-MIDDLE";
/// The exact mtime the symlink gets.
const LINK_MTIME: (i64, u32) = (1_600_000_000, 123_456_789);

/// What [`build_rich_tree`] made that depends on the host.
struct RichTree {
    xattrs: bool,
}

/// One of everything: regular files (empty, 3 MB random, non-UTF-8 name), nested dirs, a
/// symlink, a dangling symlink, three hard links in two dirs, a FIFO, a char and a block
/// device, a sparse file, xattrs, unusual modes and owners, and distinct nanosecond mtimes on
/// every entry (directories last).
fn build_rich_tree(root: &Path) -> RichTree {
    fs::create_dir_all(root).unwrap();
    write(root.join("empty"), b"");
    write(root.join("hello.txt"), b"hello, world\n");
    write(root.join("big.bin"), random_bytes(1, 3 * MIB));
    write(
        root.join(OsStr::from_bytes(b"caf\xe9")),
        b"a name that is not UTF-8\n",
    );
    write(root.join("exec-751"), b"#!/bin/sh\necho 751\n");
    write(root.join("setuid"), b"setuid payload\n");
    write(root.join("owned"), b"owned by 4242:4343\n");
    write(root.join("xattr.txt"), b"has extended attributes\n");
    write(root.join("nested/a/b/c/deep.txt"), b"deep down\n");
    write(root.join("hard/one"), b"one inode, three names\n");
    fs::hard_link(root.join("hard/one"), root.join("hard/two")).unwrap();
    fs::create_dir_all(root.join("other")).unwrap();
    fs::hard_link(root.join("hard/one"), root.join("other/three")).unwrap();
    write(
        root.join("readonly/inside.txt"),
        b"inside a read-only dir\n",
    );
    fs::create_dir_all(root.join("sticky")).unwrap();
    fs::create_dir_all(root.join("setgid-dir")).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    sh("mkfifo", &[root.join("fifo").as_os_str()]);
    sh(
        "mknod",
        &[
            root.join("chardev").as_os_str(),
            OsStr::new("c"),
            OsStr::new("42"),
            OsStr::new("7"),
        ],
    );
    sh(
        "mknod",
        &[
            root.join("blockdev").as_os_str(),
            OsStr::new("b"),
            OsStr::new("43"),
            OsStr::new("9"),
        ],
    );
    {
        let f = fs::File::create(root.join("sparse.img")).unwrap();
        f.set_len(SPARSE_LEN).unwrap();
        f.write_all_at(SPARSE_DATA, SPARSE_DATA_AT).unwrap();
        f.sync_all().unwrap();
    }
    let sparse = fs::metadata(root.join("sparse.img")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "the source filesystem cannot make sparse files ({} blocks)",
        sparse.blocks()
    );

    // Owners first: chown clears setuid.
    std::os::unix::fs::chown(root.join("owned"), Some(4242), Some(4343)).unwrap();
    std::os::unix::fs::lchown(root.join("link"), Some(4242), Some(4343)).unwrap();
    std::os::unix::fs::chown(root.join("fifo"), Some(0), Some(4343)).unwrap();
    std::os::unix::fs::chown(root.join("nested/a"), Some(7), Some(8)).unwrap();
    chmod(root.join("exec-751"), 0o751);
    chmod(root.join("setuid"), 0o4755);
    chmod(root.join("owned"), 0o640);
    chmod(root.join("fifo"), 0o620);
    chmod(root.join("chardev"), 0o600);
    chmod(root.join("blockdev"), 0o640);
    chmod(root.join("readonly/inside.txt"), 0o444);
    chmod(root.join("sticky"), 0o1777);
    chmod(root.join("setgid-dir"), 0o2775);
    chmod(root.join("nested/a/b"), 0o700);

    let xattrs = user_xattrs(&root.join("xattr.txt"), "user.cairn.test", b"value\x00\xff");
    if xattrs {
        xattr::set(root.join("xattr.txt"), "user.cairn.empty", b"").unwrap();
        xattr::set(root.join("nested"), "user.cairn.dir", b"on a directory").unwrap();
    }

    // Distinct times everywhere, children before their directory (a pre-order walk, reversed);
    // the read-only dir is made read-only only then, so a non-root run could still set them.
    let all = walk(root);
    for (i, rel) in all.iter().enumerate().rev() {
        let p = root.join(rel);
        if rel == Path::new("link") {
            set_mtime(&p, LINK_MTIME.0, LINK_MTIME.1);
        } else {
            set_mtime(
                &p,
                1_500_000_000 + i as i64 * 3_600,
                100_000_001 + i as u32 * 1_111,
            );
        }
    }
    chmod(root.join("readonly"), 0o555);
    set_mtime(root.join("readonly"), 1_400_000_000, 999_999_999);
    set_mtime(root, 1_300_000_000, 1);
    RichTree { xattrs }
}

/// Regular-file entries (each hard link counted) and their total size.
fn file_entries(root: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for rel in walk(root) {
        let m = fs::symlink_metadata(root.join(rel)).unwrap();
        if m.is_file() {
            n += 1;
            bytes += m.len();
        }
    }
    (n, bytes)
}

/// Distinct regular-file inodes.
fn file_inodes(root: &Path) -> u64 {
    walk(root)
        .iter()
        .map(|rel| fs::symlink_metadata(root.join(rel)).unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.ino())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

#[test]
fn restore_reproduces_every_entry_type_byte_for_byte() {
    let f = Fixture::new();
    let src = f.path("src");
    let rich = build_rich_tree(&src);
    let (files, bytes) = file_entries(&src);
    assert_eq!(files, 14);
    let summary = f.backup_json(&[&src], &[]);
    assert_eq!(summary["errors"], json!([]));
    assert_eq!(summary["files_new"], json!(files));
    assert_eq!(summary["files_changed"], json!(0));
    assert_eq!(summary["files_unmodified"], json!(0));
    assert_eq!(summary["total_bytes_processed"], json!(bytes));

    let target = f.path("restore");
    f.restore_latest(&target);
    let out = restored(&target, &src);
    assert_same_tree(&src, &out);

    // The comparison above is relative; pin the values it relies on, in the restored tree.
    let meta = |rel: &str| fs::symlink_metadata(out.join(rel)).unwrap();
    assert_eq!(meta("setuid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("exec-751").mode() & 0o7777, 0o751);
    assert_eq!(meta("readonly").mode() & 0o7777, 0o555);
    assert_eq!(meta("sticky").mode() & 0o7777, 0o1777);
    assert_eq!(meta("setgid-dir").mode() & 0o7777, 0o2775);
    assert_eq!((meta("owned").uid(), meta("owned").gid()), (4242, 4343));
    assert_eq!((meta("link").uid(), meta("link").gid()), (4242, 4343));
    assert_eq!(
        (meta("link").mtime(), meta("link").mtime_nsec()),
        (LINK_MTIME.0, LINK_MTIME.1 as i64)
    );
    assert_eq!(
        (meta("").mtime(), meta("").mtime_nsec()),
        (1_300_000_000, 1)
    );
    assert_eq!(
        (meta("readonly").mtime(), meta("readonly").mtime_nsec()),
        (1_400_000_000, 999_999_999)
    );
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("hello.txt")
    );
    assert_eq!(
        fs::read_link(out.join("dangling")).unwrap(),
        Path::new("does/not/exist")
    );
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(meta("chardev").rdev(), CHARDEV_RDEV);
    assert!(meta("chardev").file_type().is_char_device());
    assert_eq!(meta("blockdev").rdev(), BLOCKDEV_RDEV);
    assert!(meta("blockdev").file_type().is_block_device());
    assert_eq!(meta("hard/one").nlink(), 3);
    assert_eq!(meta("hard/one").ino(), meta("hard/two").ino());
    assert_eq!(meta("hard/one").ino(), meta("other/three").ino());
    assert_ne!(meta("hard/one").ino(), meta("hello.txt").ino());
    assert_eq!(
        fs::read(out.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"a name that is not UTF-8\n"
    );
    assert_eq!(
        fs::read(out.join("big.bin")).unwrap(),
        random_bytes(1, 3 * MIB)
    );

    let sparse = meta("sparse.img");
    assert_eq!(sparse.len(), SPARSE_LEN);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "restored sparse file allocates {} bytes for {SPARSE_LEN} bytes of mostly holes",
        sparse.blocks() * 512
    );
    let mut buf = vec![0u8; SPARSE_DATA.len()];
    fs::File::open(out.join("sparse.img"))
        .unwrap()
        .read_exact_at(&mut buf, SPARSE_DATA_AT)
        .unwrap();
    assert_eq!(buf, SPARSE_DATA);

    if rich.xattrs {
        assert_eq!(
            xattr::get(out.join("xattr.txt"), "user.cairn.test").unwrap(),
            Some(b"value\x00\xff".to_vec())
        );
        assert_eq!(
            xattr::get(out.join("nested"), "user.cairn.dir").unwrap(),
            Some(b"on a directory".to_vec())
        );
    }
}

/// Sparse files whose data starts at offset 0 (disk images, databases) are the common case:
/// finding the data regions moves the file offset, and the first region must still be read
/// from offset 0, not from where the search left it (which stored the region as zeros).
#[test]
fn a_sparse_file_with_data_at_its_start_keeps_that_data() {
    let f = Fixture::new();
    let src = f.path("src");
    fs::create_dir_all(&src).unwrap();
    let head = random_bytes(30, 300_000);
    let middle = random_bytes(31, 200_000);
    {
        let file = fs::File::create(src.join("disk.img")).unwrap();
        file.write_all_at(&head, 0).unwrap();
        file.write_all_at(&middle, 3 << 20).unwrap();
        file.set_len(8 << 20).unwrap();
        file.sync_all().unwrap();
    }
    let blocks = fs::metadata(src.join("disk.img")).unwrap().blocks();
    assert!(
        blocks * 512 < 2 << 20,
        "the source filesystem cannot make sparse files"
    );
    f.backup(&[&src], &[]);
    let target = f.path("target");
    f.restore_latest(&target);
    let restored = fs::read(restored(&target, &src).join("disk.img")).unwrap();
    assert_eq!(restored.len(), 8 << 20);
    assert!(
        restored[..head.len()] == head[..],
        "the data at offset 0 was lost"
    );
    assert!(restored[3 << 20..(3 << 20) + middle.len()] == middle[..]);
}

#[test]
fn a_snapshot_that_reuses_its_parents_files_restores_the_same_tree() {
    let f = Fixture::new();
    let src = f.path("src");
    build_rich_tree(&src);
    let first = f.backup(&[&src], &[]);
    let second = f.backup_json(&[&src], &[]);
    assert_eq!(second["parent"], json!(first));
    assert_eq!(second["bytes_read"], json!(0));
    assert_eq!(second["files_unmodified"], json!(file_entries(&src).0));
    let target = f.path("restore");
    f.cmd()
        .args([
            "restore",
            second["snapshot_id"].as_str().unwrap(),
            "--verify",
            "--target",
        ])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn restore_verify_rereads_every_file_and_exits_0() {
    let f = Fixture::new();
    let src = f.path("src");
    build_rich_tree(&src);
    let id = f.backup(&[&src], &[]);
    let target = f.path("verified");
    let run = f
        .cmd()
        .args(["--json", "restore", "latest", "--verify", "--target"])
        .arg(&target)
        .run();
    run.ok();
    let s = run.summary();
    assert_eq!(s["snapshot_id"], json!(id));
    assert_eq!(s["errors"], json!([]));
    // Every distinct file inode is written once and re-read; further hard links are links.
    assert_eq!(s["files_verified"], json!(file_inodes(&src)));
    assert_eq!(s["files_verified"], json!(12));
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn restore_of_a_subpath_puts_its_contents_directly_in_the_target() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("docs/a.txt"), b"alpha\n");
    write(src.join("docs/inner/b.txt"), b"beta\n");
    write(src.join("elsewhere.txt"), b"not selected\n");
    set_mtime(src.join("docs/inner"), 1_234_567_890, 42);
    let id = f.backup(&[&src], &[]);

    let target = f.path("docs-only");
    f.cmd()
        .args([
            "restore",
            &format!("{id}:{}", src.join("docs").display()),
            "--target",
        ])
        .arg(&target)
        .run()
        .ok();
    let names: Vec<String> = walk(&target)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(names, ["", "a.txt", "inner", "inner/b.txt"]);
    assert_same_entries(&src.join("docs"), &target);

    let one = f.path("one-file");
    f.cmd()
        .args([
            "restore",
            &format!("latest:{}", src.join("docs/inner/b.txt").display()),
        ])
        .arg("--target")
        .arg(&one)
        .run()
        .ok();
    let names: Vec<String> = walk(&one).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["", "b.txt"]);
    assert_eq!(fs::read(one.join("b.txt")).unwrap(), b"beta\n");
}

#[test]
fn a_second_backup_of_unchanged_data_reads_nothing_and_grows_the_repository_by_under_1_percent() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..4u64 {
        write(
            src.join(format!("random-{i}.bin")),
            random_bytes(100 + i, MIB),
        );
    }
    for i in 0..20 {
        write(
            src.join(format!("text/{i:02}.txt")),
            format!("small file {i}\n").repeat(i + 1),
        );
    }
    let (files, bytes) = file_entries(&src);
    assert_eq!(files, 24);
    let first = f.backup_json(&[&src], &[]);
    assert_eq!(first["files_new"], json!(24));
    let before = f.repo_bytes();
    assert!(
        before > 4 * MIB as u64,
        "the first backup stored only {before} bytes"
    );

    let second = f.backup_json(&[&src], &[]);
    let after = f.repo_bytes();
    assert_eq!(second["parent"], first["snapshot_id"]);
    assert_eq!(second["bytes_read"], json!(0));
    assert_eq!(second["files_unmodified"], json!(files));
    assert_eq!(second["files_new"], json!(0));
    assert_eq!(second["files_changed"], json!(0));
    assert_eq!(second["total_bytes_processed"], json!(bytes));
    assert_eq!(second["errors"], json!([]));
    assert!(
        (after - before) * 100 < before,
        "the repository grew from {before} to {after} bytes for unchanged data"
    );
}

#[test]
fn a_changed_file_is_the_only_one_read_again() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..5u64 {
        write(
            src.join(format!("f{i}.bin")),
            random_bytes(200 + i, 300_000),
        );
    }
    f.backup(&[&src], &[]);
    write(src.join("f3.bin"), random_bytes(999, 123_457));
    let s = f.backup_json(&[&src], &[]);
    assert_eq!(s["files_changed"], json!(1));
    assert_eq!(s["files_unmodified"], json!(4));
    assert_eq!(s["files_new"], json!(0));
    assert_eq!(s["bytes_read"], json!(123_457));
}

#[test]
fn a_wrong_password_exits_12_for_every_command() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a.txt"), b"a\n");
    let id = f.backup(&[&src], &[]);
    let before = f.repo_files();
    let wrong = || f.cmd().env("CAIRN_PASSWORD", "not the password");
    for run in [
        wrong().arg("snapshots").run(),
        wrong().arg("backup").arg(&src).run(),
        wrong()
            .args(["restore", "latest", "--target"])
            .arg(f.path("t"))
            .run(),
        wrong().args(["ls", &id]).run(),
    ] {
        run.expect(12);
        assert!(
            run.stderr.contains("wrong password"),
            "{}: {}",
            run.what,
            run.stderr
        );
    }
    assert_eq!(
        f.repo_files(),
        before,
        "a refused command changed the repository"
    );
    assert!(
        !f.path("t").exists(),
        "restore with a wrong password created its target"
    );
}

#[test]
fn a_missing_repository_exits_10_without_asking_for_a_password() {
    let f = Fixture::empty();
    let src = f.path("src");
    write(src.join("a.txt"), b"a\n");
    let empty = f.path("empty-dir");
    fs::create_dir(&empty).unwrap();
    for location in [f.path("does-not-exist"), empty.clone()] {
        let cmd = || TestCommand::bare().arg("-r").arg(&location);
        for run in [
            cmd().arg("snapshots").run(),
            cmd().arg("backup").arg(&src).run(),
            cmd()
                .args(["restore", "latest", "--target"])
                .arg(f.path("t"))
                .run(),
            cmd().args(["ls", "latest"]).run(),
        ] {
            run.expect(10);
            assert!(
                run.stderr.contains(&location.display().to_string()),
                "{}: stderr does not name the location: {}",
                run.what,
                run.stderr
            );
        }
    }
    assert!(!f.path("does-not-exist").exists());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

/// The pack region holding sealed blobs: everything before the sealed header and its
/// 4-byte little-endian length (repo-format.md §6).
fn blob_region_len(pack: &[u8]) -> usize {
    let n = pack.len();
    let header = u32::from_le_bytes(pack[n - 4..].try_into().unwrap()) as usize;
    assert!(
        header + 4 < n,
        "pack trailer says the header is {header} bytes of {n}"
    );
    n - 4 - header
}

#[test]
fn a_flipped_byte_in_a_pack_fails_the_restore_of_that_file_only() {
    let f = Fixture::new();
    let big = f.path("big-dir/big.bin");
    let big_data = random_bytes(7, 3 * MIB);
    write(&big, &big_data);
    // The big file alone first: the packs of this backup hold only its chunks and trees.
    f.backup(&[f.path("big-dir")], &[]);
    let big_packs = f.packs();
    assert!(!big_packs.is_empty());

    let small: Vec<(PathBuf, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                f.path(format!("small-dir/s{i}.txt")),
                format!("small {i}\n").into_bytes(),
            )
        })
        .collect();
    for (p, d) in &small {
        write(p, d);
    }
    f.backup(&[f.path("big-dir"), f.path("small-dir")], &[]);

    // Flip one byte in the middle of the blob region of the largest pack of the first
    // backup: the middle of 3 MB of data chunks, far from the few hundred bytes of trees.
    let pack = big_packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(pack).unwrap();
    let at = blob_region_len(&bytes) / 2;
    assert!(
        at > 1_000_000,
        "largest pack has only {at} bytes of blobs before the middle"
    );
    bytes[at] ^= 0x01;
    fs::write(pack, &bytes).unwrap();

    let target = f.path("restore");
    let run = f
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run();
    run.expect(1);
    let big_out = restored(&target, &big);
    assert!(
        run.stderr.contains(&big_out.display().to_string()),
        "stderr does not name the damaged file {}:\n{}",
        big_out.display(),
        run.stderr
    );
    for (p, _) in &small {
        assert!(
            !run.stderr
                .contains(&*p.file_name().unwrap().to_string_lossy()),
            "stderr names an undamaged file: {}",
            run.stderr
        );
    }
    match fs::read(&big_out) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        Ok(d) => assert!(
            d == big_data,
            "the damaged file was restored with wrong content"
        ),
    }
    // The JSON summary lists the same file, and only it, as damaged.
    let json_target = f.path("restore-json");
    let run = f
        .cmd()
        .args(["--json", "restore", "latest", "--target"])
        .arg(&json_target)
        .run();
    run.expect(1);
    let errors = run.summary()["errors"].clone();
    let errors = errors.as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0]["path"],
        json!(restored(&json_target, &big).display().to_string())
    );
    assert_eq!(errors[0]["damaged"], json!(true));
    for (p, d) in &small {
        assert_eq!(
            &fs::read(restored(&json_target, p)).unwrap(),
            d,
            "{}",
            p.display()
        );
        assert_eq!(
            &fs::read(restored(&target, p)).unwrap(),
            d,
            "{}",
            p.display()
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_file_name_or_content_appears_in_plaintext_in_the_repository() {
    let f = Fixture::new();
    let src = f.path("plain-src-Kp3v");
    write(
        src.join("secret-name-Zq8X.txt"),
        "CONTENT-MARKER-9f2a\n".repeat(5_000),
    );
    let mut random = random_bytes(11, 200_000);
    random[100_000..100_026].copy_from_slice(b"INCOMPRESSIBLE-MARKER-3c7e");
    write(src.join("random-with-marker-Hy6W.bin"), &random);
    write(
        src.join("subdir-name-Lm4T/tiny-Wm2P.txt"),
        b"TINY-MARKER-5d1b",
    );
    std::os::unix::fs::symlink("symlink-target-marker-V5c6", src.join("link-name-Ga9E")).unwrap();
    let xattrs = user_xattrs(
        &src.join("secret-name-Zq8X.txt"),
        "user.xattr-marker-B8n1",
        b"xattr-value-marker-J2k5",
    );
    f.backup(&[&src], &[]);
    f.backup(
        &[&src],
        &["--host", "host-marker-Q7w3", "--tag", "tag-marker-R4t9"],
    );

    let src_path = src.display().to_string();
    let mut needles: Vec<&str> = vec![
        "secret-name-Zq8X",
        "random-with-marker-Hy6W",
        "subdir-name-Lm4T",
        "tiny-Wm2P",
        "link-name-Ga9E",
        "plain-src-Kp3v",
        "CONTENT-MARKER-9f2a",
        "INCOMPRESSIBLE-MARKER-3c7e",
        "TINY-MARKER-5d1b",
        "symlink-target-marker-V5c6",
        "host-marker-Q7w3",
        "tag-marker-R4t9",
        &src_path,
    ];
    if xattrs {
        needles.extend(["xattr-marker-B8n1", "xattr-value-marker-J2k5"]);
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A short host name turns up in megabytes of ciphertext by chance.
    if host.len() >= 6 {
        needles.push(&host);
    } else {
        eprintln!("note: host name {host:?} is too short to search for; --host marker used");
    }

    let files = f.repo_files();
    let count = |dir: &str| files.keys().filter(|p| p.starts_with(dir)).count();
    // The second backup stores a new pack and index only if a tree changed (say /tmp's mtime).
    assert_eq!(
        (count("config"), count("keys"), count("snapshots")),
        (1, 2, 2),
        "{:?}",
        files.keys().collect::<Vec<_>>()
    );
    assert!(
        count("data") >= 1 && count("index") >= 1,
        "{:?}",
        files.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &files {
        for n in &needles {
            assert!(
                !contains(bytes, n.as_bytes()),
                "{n:?} in plaintext in {}",
                rel.display()
            );
        }
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let name = match parts.as_slice() {
            ["config"] => continue,
            // A key file and its copy (`<id>.copy`, the same bytes).
            ["keys", name] => name.strip_suffix(".copy").unwrap_or(name),
            ["index" | "snapshots", name] => *name,
            // Packs, and parity files (repo-format.md §14.2), fanned out alike.
            ["data" | "parity", dir, name] => {
                assert_eq!(
                    *dir,
                    &name[..2.min(name.len())],
                    "{}: pack in the wrong dir",
                    rel.display()
                );
                *name
            }
            _ => panic!("unexpected file in the repository: {}", rel.display()),
        };
        assert!(is_hex_id(name), "{}: not a 64-hex name", rel.display());
        assert_eq!(
            blake3::hash(bytes).to_hex().as_str(),
            name,
            "{}: name is not the BLAKE3 of its bytes",
            rel.display()
        );
    }
}

#[test]
fn every_password_source_opens_the_repository() {
    let f = Fixture::empty();
    let init_file = f.path("init-pw");
    write(&init_file, b"first-line-pw\nsecond line is ignored\n");
    TestCommand::bare()
        .arg("-r")
        .arg(&f.repo)
        .arg("--password-file")
        .arg(&init_file)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    let pw_file = f.path("pw");
    write(&pw_file, b"first-line-pw\n");
    let wrong_file = f.path("wrong-pw");
    write(&wrong_file, b"first-line-pw2\n");

    // Only the first line was taken, without its newline.
    f.cmd_without_password()
        .env("CAIRN_PASSWORD", "first-line-pw")
        .arg("snapshots")
        .run()
        .ok();
    f.cmd_without_password()
        .arg("--password-file")
        .arg(&pw_file)
        .arg("snapshots")
        .run()
        .ok();
    f.cmd_without_password()
        .args(["--password-command", "echo first-line-pw"])
        .arg("snapshots")
        .run()
        .ok();
    f.cmd_without_password()
        .env("CAIRN_PASSWORD_FILE", &pw_file)
        .arg("snapshots")
        .run()
        .ok();
    f.cmd_without_password()
        .env("CAIRN_PASSWORD_COMMAND", "printf 'first-line-pw\\nmore'")
        .arg("snapshots")
        .run()
        .ok();

    f.cmd_without_password()
        .arg("--password-file")
        .arg(&wrong_file)
        .arg("snapshots")
        .run()
        .expect(12);
    f.cmd_without_password()
        .args(["--password-command", "echo first-line-pw2"])
        .arg("snapshots")
        .run()
        .expect(12);
    let missing = f
        .cmd_without_password()
        .arg("--password-file")
        .arg(f.path("no-such-file"))
        .arg("snapshots")
        .run();
    missing.expect(1);
    assert!(
        missing.stderr.contains("no-such-file"),
        "{}",
        missing.stderr
    );

    let failing = f
        .cmd_without_password()
        .args(["--password-command", "exit 3"])
        .arg("snapshots")
        .run();
    failing.expect(1);
    assert!(failing.stderr.contains("exit 3"), "{}", failing.stderr);
    let empty = f
        .cmd_without_password()
        .env("CAIRN_PASSWORD", "")
        .arg("snapshots")
        .run();
    empty.expect(1);
    assert!(empty.stderr.contains("empty"), "{}", empty.stderr);

    let none = f.cmd_without_password().arg("snapshots").run();
    none.expect(1);
    assert!(none.stderr.contains("CAIRN_PASSWORD"), "{}", none.stderr);
}

fn ls(f: &Fixture, selector: &str) -> Vec<String> {
    let run = f.cmd().args(["ls", selector]).run();
    run.ok();
    run.stdout_lines()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

#[test]
fn snapshot_selectors_pick_by_id_prefix_and_latest_and_name_an_unknown_one() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("top.txt"), b"top\n");
    write(src.join("sub/deeper/x.txt"), b"x\n");
    write(src.join("sub/deeper/y.txt"), b"y\n");
    let s = src.display().to_string();
    let id1 = f.backup(
        &[&src],
        &[
            "--host",
            "h1",
            "--tag",
            "t1",
            "--tag",
            "t2",
            "--time",
            "2021-02-03 04:05:06",
        ],
    );
    write(src.join("new.txt"), b"new\n");
    let id2 = f.backup(&[&src], &["--host", "h1", "--time", "2021-02-04 00:00:00"]);
    // Made last but dated first: `latest` goes by snapshot time.
    let id3 = f.backup(
        &[&src],
        &[
            "--host",
            "h2",
            "--mode",
            "full",
            "--time",
            "2021-01-01 12:00:00",
        ],
    );

    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    let arr = run.json();
    let arr = arr.as_array().expect("snapshots --json is an array");
    assert_eq!(arr.len(), 3);
    let by_id = |id: &str| {
        arr.iter()
            .find(|v| v["id"] == json!(id))
            .unwrap_or_else(|| panic!("{id} not listed"))
    };
    for (id, host, tags, time, mode, parent) in [
        (
            &id1,
            "h1",
            json!(["t1", "t2"]),
            "2021-02-03T04:05:06+00:00",
            "incremental",
            json!(null),
        ),
        (
            &id2,
            "h1",
            json!([]),
            "2021-02-04T00:00:00+00:00",
            "incremental",
            json!(id1),
        ),
        (
            &id3,
            "h2",
            json!([]),
            "2021-01-01T12:00:00+00:00",
            "full",
            json!(null),
        ),
    ] {
        let v = by_id(id);
        assert_eq!(v["short_id"], json!(&id[..8]));
        assert_eq!(v["host"], json!(host));
        assert_eq!(v["paths"], json!([s]));
        assert_eq!(v["tags"], tags);
        assert_eq!(v["time"], json!(time));
        assert_eq!(v["mode"], json!(mode));
        assert_eq!(v["parent"], parent);
    }

    let without_new = [
        s.clone(),
        format!("{s}/sub"),
        format!("{s}/sub/deeper"),
        format!("{s}/sub/deeper/x.txt"),
        format!("{s}/sub/deeper/y.txt"),
        format!("{s}/top.txt"),
    ];
    let full = ls(&f, &id1);
    assert_eq!(
        full[full.len() - without_new.len()..],
        without_new[..],
        "ls {id1}: {full:?}"
    );
    assert!(!full.iter().any(|l| l.ends_with("new.txt")));

    let ids = [&id1, &id2, &id3];
    let unique = (4..=64)
        .find(|&n| ids.iter().filter(|i| i[..n] == id2[..n]).count() == 1)
        .unwrap();
    let by_prefix = ls(&f, &id2[..unique]);
    assert!(by_prefix.contains(&format!("{s}/new.txt")), "{by_prefix:?}");
    assert_eq!(ls(&f, "latest"), by_prefix);
    assert_eq!(ls(&f, &id2.to_uppercase()[..unique.max(6)]), by_prefix);

    assert_eq!(
        ls(&f, &format!("latest:{s}/sub")),
        [
            format!("{s}/sub/deeper"),
            format!("{s}/sub/deeper/x.txt"),
            format!("{s}/sub/deeper/y.txt")
        ]
    );
    assert_eq!(
        ls(&f, &format!("{id1}:{s}/top.txt")),
        [format!("{s}/top.txt")]
    );

    // A path the snapshot does not have is an error naming it, not an empty listing.
    let absent = format!("latest:{s}/sub/nowhere");
    let run = f.cmd().args(["ls", &absent]).run();
    run.expect(1);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);

    let unknown = ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|p| !ids.iter().any(|i| i.starts_with(p)))
        .unwrap();
    for sel in [unknown, "abc", "not-hex"] {
        for run in [
            f.cmd().args(["ls", sel]).run(),
            f.cmd()
                .args(["restore", sel, "--target"])
                .arg(f.path("t"))
                .run(),
        ] {
            run.expect(1);
            assert!(
                run.stderr.contains(sel),
                "{}: stderr does not name {sel}: {}",
                run.what,
                run.stderr
            );
        }
    }
    assert!(!f.path("t").exists());
}

#[test]
fn backup_of_a_missing_path_is_fatal_and_saves_no_snapshot() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a.txt"), b"a\n");
    let missing = f.path("no-such-path");
    let run = f.cmd().arg("backup").arg(&src).arg(&missing).run();
    run.expect(1);
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.stderr
    );
    let list = f.cmd().args(["--json", "snapshots"]).run();
    list.ok();
    assert_eq!(list.json(), json!([]));
}

#[test]
fn backup_stores_a_relative_path_as_an_absolute_one() {
    let f = Fixture::new();
    write(f.path("src/a.txt"), b"a\n");
    let run = f
        .cmd()
        .current_dir(f.tmp.path())
        .args(["--json", "backup", "src/../src/./"])
        .run();
    run.ok();
    assert_eq!(run.summary()["files_new"], json!(1));
    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    let snap = run.json();
    let src = f.path("src").display().to_string();
    assert_eq!(snap[0]["paths"], json!([src]));
    assert_eq!(ls(&f, &format!("latest:{src}")), [format!("{src}/a.txt")]);
}

#[test]
fn backup_with_an_unreadable_file_exits_3_and_keeps_the_rest() {
    // Root reads anything chmod can protect; /proc/PID/mem fails at offset 0 (EIO) or on open.
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a.txt"), b"readable\n");
    let mem = PathBuf::from(format!("/proc/{}/mem", std::process::id()));
    let run = f.cmd().args(["--json", "backup"]).arg(&src).arg(&mem).run();
    run.expect(3);
    let s = run.summary();
    let errors = s["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["path"], json!(mem.display().to_string()));
    assert!(is_hex_id(s["snapshot_id"].as_str().unwrap()));

    let target = f.path("t");
    f.restore_latest(&target);
    assert_eq!(
        fs::read(restored(&target, &src.join("a.txt"))).unwrap(),
        b"readable\n"
    );
    assert!(!restored(&target, &mem).exists());
}

#[test]
fn backup_of_a_path_below_a_symlinked_directory_keeps_its_files() {
    let f = Fixture::new();
    write(f.path("real/docs/file.txt"), b"behind a symlink\n");
    std::os::unix::fs::symlink("real", f.path("alias")).unwrap();
    let given = f.path("alias/docs");
    let run = f.cmd().arg("backup").arg(&given).run();
    if run.code == 0 {
        let listed = ls(&f, "latest");
        assert!(
            listed.iter().any(|l| l.ends_with("docs/file.txt")),
            "backup of {} exited 0 but the snapshot holds: {listed:?}",
            given.display()
        );
    } else {
        run.expect(1);
    }
}

#[test]
fn init_refuses_a_non_empty_directory_and_leaves_it_alone() {
    let f = Fixture::empty();
    write(f.repo.join("keep.txt"), b"precious\n");
    let run = f.cmd().args(["init", "--kdf-memory-mib", "8"]).run();
    run.expect(1);
    assert!(
        run.stderr.contains(&f.repo.display().to_string()),
        "{}",
        run.stderr
    );
    let names: Vec<String> = walk(&f.repo)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(names, ["", "keep.txt"]);
    assert_eq!(fs::read(f.repo.join("keep.txt")).unwrap(), b"precious\n");

    // Nor does it initialise a repository twice.
    let g = Fixture::new();
    let before = g.repo_files();
    g.cmd()
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .expect(1);
    assert_eq!(g.repo_files(), before);
}

#[test]
fn init_json_prints_the_repository_id() {
    let f = Fixture::empty();
    let run = f
        .cmd()
        .args(["--json", "init", "--kdf-memory-mib", "8"])
        .run();
    run.ok();
    let v = run.json();
    assert!(v.is_object(), "{v}");
    assert_eq!(v["message_type"], json!("init"));
    assert!(is_hex_id(v["repository_id"].as_str().unwrap_or("")), "{v}");
    assert!(is_hex_id(v["key_id"].as_str().unwrap_or("")), "{v}");
    assert_eq!(v["location"], json!(f.repo.display().to_string()));
    assert_eq!(v["format_version"], json!(1));
    // The key file is named by its id.
    let key = f.repo.join("keys").join(v["key_id"].as_str().unwrap());
    assert!(key.is_file(), "{} missing", key.display());
}

/// One generated file: name bytes, content, permission bits, mtime (seconds, nanoseconds).
type GenFile = (Vec<u8>, Vec<u8>, u32, (i64, u32));

/// A flat directory of arbitrary names (any byte but `/` and NUL) and contents.
fn arb_files() -> impl Strategy<Value = Vec<GenFile>> {
    let name = proptest::collection::vec(1u8..=255, 1..16)
        .prop_filter("no slash, not . or ..", |n| {
            !n.contains(&b'/') && n.as_slice() != b"." && n.as_slice() != b".."
        });
    let content = proptest::collection::vec(any::<u8>(), 0..5_000);
    let mode = prop::sample::select(vec![
        0o000, 0o400, 0o600, 0o644, 0o755, 0o2711, 0o4755, 0o7777,
    ]);
    // Before 1970 too: negative seconds with positive nanoseconds.
    let mtime = (-2_000_000_000i64..4_000_000_000, 0u32..1_000_000_000);
    proptest::collection::vec((name, content, mode, mtime), 1..8).prop_map(|mut v| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn restore_returns_what_backup_read(files in arb_files()) {
        let f = Fixture::new();
        let src = f.path("src");
        fs::create_dir(&src).unwrap();
        for (name, content, mode, (s, ns)) in &files {
            let p = src.join(OsStr::from_bytes(name));
            write(&p, content);
            chmod(&p, *mode);
            set_mtime(&p, *s, *ns);
        }
        f.backup(&[&src], &[]);
        let target = f.path("t");
        f.restore_latest(&target);
        assert_same_tree(&src, &restored(&target, &src));
    }
}
