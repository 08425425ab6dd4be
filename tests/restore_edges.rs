//! Restores into targets that already hold something, through the real binary: symlinks that
//! point outside the target on every code path (full restore, `--include`/`--exclude`,
//! `SNAPSHOT:SUBPATH`, hard links, extended attributes, directory metadata at the end), what
//! each `--overwrite` mode replaces and what it leaves (a directory that is not empty is never
//! removed), `--verify` over kept files, and a target whose disk fills up.
//! The randomized form of the same laws is tests/restore_adversarial.rs.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// Content, mode and mtime of every entry below `root` (symlinks not followed), for "nothing
/// changed here" checks; directory mtimes included, so an entry made or removed shows.
fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, String> {
    walk(root)
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let m = fs::symlink_metadata(&p).expect("lstat");
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).expect("readlink").display())
            } else if m.is_file() {
                format!("{:?}", fs::read(&p).expect("read"))
            } else {
                String::new()
            };
            let desc = format!(
                "{what} mode {:o} mtime {}.{} xattrs {:?}",
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                xattrs(&p)
            );
            (rel, desc)
        })
        .collect()
}

/// A source tree `src/` with a subdirectory `tmp/` (as in the issue: a restore's `tmp`
/// colliding with a symlink the user has at `target/tmp`), hard links and a nested directory.
fn source(f: &Fixture) -> PathBuf {
    let src = f.path("src");
    write(src.join("tmp/x"), b"restored x");
    write(src.join("tmp/deep/y"), b"restored y");
    write(src.join("keep.txt"), b"keep me");
    write(src.join("docs/a.odt"), b"document a");
    fs::hard_link(src.join("docs/a.odt"), src.join("docs/a-link.odt")).expect("hard link");
    for (d, t) in [("tmp/deep", 1), ("tmp", 2), ("docs", 3), ("", 4)] {
        set_mtime(src.join(d), 1_600_000_000 + t, 0);
    }
    chmod(src.join("docs"), 0o750);
    src
}

/// A directory outside every target, with content that must never change.
fn sentinel(f: &Fixture) -> PathBuf {
    let out = f.path("outside");
    write(out.join("x"), b"outside x");
    write(out.join("a.odt"), b"outside a");
    write(out.join("deep/y"), b"outside y");
    chmod(&out, 0o711);
    set_mtime(out.join("deep"), 1_500_000_000, 0);
    set_mtime(&out, 1_500_000_000, 0);
    out
}

fn restore(f: &Fixture, selector: &str, target: &Path, extra: &[&str]) -> Run {
    f.cmd()
        .args(["restore", selector, "--target"])
        .arg(target)
        .args(extra)
        .run()
}

/// The example, in every mode and on every selection path: `target/tmp` is a
/// symlink to a directory outside the target. Nothing is ever written through it.
#[test]
fn a_symlink_in_the_target_never_leads_a_restore_outside() {
    let f = Fixture::new();
    let src = source(&f);
    f.backup(&[&src], &[]);
    let sub = format!("latest:{}", src.display());
    let cases: [(&str, &[&str]); 7] = [
        ("full", &[]),
        ("include", &["--include", "x"]),
        ("include-deep", &["--include", "y"]),
        ("exclude", &["--exclude", "keep.txt"]),
        ("if-changed", &["--overwrite", "if-changed"]),
        ("never", &["--overwrite", "never"]),
        ("verify", &["--verify"]),
    ];
    for (name, extra) in cases {
        let out = sentinel(&f);
        let before = snapshot_of(&out);
        let target = f.path(format!("target-{name}"));
        fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&out, target.join("tmp")).unwrap();
        let run = restore(&f, &sub, &target, extra);
        assert_eq!(
            snapshot_of(&out),
            before,
            "{name}: outside changed\n{}",
            run.stderr
        );
        let link = fs::symlink_metadata(target.join("tmp")).unwrap();
        if name == "never" {
            run.expect(1);
            assert!(link.file_type().is_symlink(), "never: the symlink stays");
            assert!(
                run.stderr.contains("tmp") && run.stderr.contains("in the way"),
                "never: the obstacle is named: {}",
                run.stderr
            );
        } else {
            run.ok();
            assert!(
                link.is_dir(),
                "{name}: the symlink was replaced by the snapshot's directory"
            );
            if !name.starts_with("include") {
                assert_eq!(fs::read(target.join("tmp/x")).unwrap(), b"restored x");
            }
        }
        fs::remove_dir_all(&out).unwrap();
    }
}

/// The same through the subtree selector and through the full snapshot path: a symlink at
/// any depth of the path the restore recreates (`target/<abs path of src>`).
#[test]
fn symlinks_along_the_restored_path_are_never_followed() {
    let f = Fixture::new();
    let src = source(&f);
    f.backup(&[&src], &[]);
    let out = sentinel(&f);
    let before = snapshot_of(&out);
    // The full snapshot restores to target/<src without the leading />: put a symlink at its
    // first component.
    let target = f.path("target-full");
    fs::create_dir_all(&target).unwrap();
    let first = src
        .components()
        .nth(1)
        .expect("a component")
        .as_os_str()
        .to_owned();
    std::os::unix::fs::symlink(&out, target.join(&first)).unwrap();
    restore(&f, "latest", &target, &[]).ok();
    assert_eq!(snapshot_of(&out), before);
    assert_same_entries(&src, &restored(&target, &src));
    // A subtree of the snapshot, into a target whose `deep` is a symlink, with and without
    // a selection (which makes directories on demand).
    for (name, extra) in [("sub", &[][..]), ("sub-include", &["--include", "y"][..])] {
        let target = f.path(format!("target-{name}"));
        fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(out.join("deep"), target.join("deep")).unwrap();
        restore(&f, &format!("latest:{}/tmp", src.display()), &target, extra).ok();
        assert_eq!(snapshot_of(&out), before, "{name}");
        assert_eq!(
            fs::read(target.join("deep/y")).unwrap(),
            b"restored y",
            "{name}"
        );
    }
}

/// Files of the snapshot at names where the target has symlinks to outside files, hard
/// links to outside files, and FIFOs: each is replaced (never written through), hard links
/// of the snapshot are made as links, and the outside files keep their content, mode,
/// times and extended attributes.
#[test]
fn symlinks_hard_links_and_fifos_at_file_names_are_replaced_not_written_through() {
    let f = Fixture::new();
    let src = source(&f);
    let xattrs_work = user_xattrs(&src.join("docs/a.odt"), "user.cairn", b"snapshot");
    f.backup(&[&src], &[]);
    let out = sentinel(&f);
    if xattrs_work {
        xattr::set(out.join("a.odt"), "user.cairn", b"outside").unwrap();
    }
    let before = snapshot_of(&out);
    let target = f.path("target");
    fs::create_dir_all(target.join("docs")).unwrap();
    std::os::unix::fs::symlink(out.join("a.odt"), target.join("docs/a.odt")).unwrap();
    fs::hard_link(out.join("x"), target.join("keep.txt")).unwrap();
    sh("mkfifo", &[target.join("docs/a-link.odt").as_os_str()]);
    restore(&f, &format!("latest:{}", src.display()), &target, &[]).ok();
    assert_eq!(snapshot_of(&out), before, "outside changed");
    assert_same_entries(&src, &target);
    let a = fs::metadata(target.join("docs/a.odt")).unwrap();
    assert_eq!(a.nlink(), 2, "the snapshot's hard link was made as a link");
}

/// `--overwrite never` changes nothing that exists: a file where the snapshot has a
/// directory, a symlink where it has a file, a file with other content; it restores only
/// what is missing, names each entry in the way, and exits 1 for those.
#[test]
fn overwrite_never_changes_nothing_that_exists() {
    let f = Fixture::new();
    let src = source(&f);
    f.backup(&[&src], &[]);
    let target = f.path("target");
    write(
        target.join("tmp"),
        b"a file where the snapshot has a directory",
    );
    write(target.join("keep.txt"), b"other content");
    fs::create_dir_all(target.join("docs")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", target.join("docs/a.odt")).unwrap();
    chmod(target.join("docs"), 0o700);
    set_mtime(target.join("keep.txt"), 1_234_567_890, 0);
    let before = snapshot_of(&target);
    let run = restore(
        &f,
        &format!("latest:{}", src.display()),
        &target,
        &["--overwrite", "never", "--json"],
    );
    run.expect(1);
    let after = snapshot_of(&target);
    for (rel, desc) in &before {
        if rel.as_os_str().is_empty() || rel == Path::new("docs") {
            // Directories gain the missing entries (their mtime moves), nothing else.
            continue;
        }
        assert_eq!(after.get(rel), Some(desc), "{} changed", rel.display());
    }
    assert_eq!(
        fs::metadata(target.join("docs")).unwrap().mode() & 0o7777,
        0o700,
        "never keeps an existing directory's metadata"
    );
    // What was missing is there.
    assert_eq!(
        fs::read(target.join("docs/a-link.odt")).unwrap(),
        b"document a"
    );
    let summary = run.summary();
    let errors = summary["errors"].as_array().expect("errors").clone();
    let named: Vec<&str> = errors.iter().filter_map(|e| e["path"].as_str()).collect();
    assert!(
        named.iter().any(|p| p.ends_with("/tmp"))
            && named.iter().any(|p| p.ends_with("docs/a.odt")),
        "every obstacle is named: {errors:?}"
    );
    assert!(
        summary["skipped"].as_u64().unwrap() >= 1,
        "keep.txt was kept: {summary}"
    );
}

/// No mode removes a directory that is not empty: where the snapshot has a file, such a
/// directory is reported by path and left in place with its content (exit 1). An empty
/// directory is replaced.
#[test]
fn a_directory_that_is_not_empty_is_never_removed() {
    for mode in ["always", "if-changed"] {
        let f = Fixture::new();
        let src = source(&f);
        f.backup(&[&src], &[]);
        let target = f.path("target");
        write(target.join("keep.txt/precious"), b"user data");
        fs::create_dir_all(target.join("docs/a.odt")).unwrap();
        let run = restore(
            &f,
            &format!("latest:{}", src.display()),
            &target,
            &["--overwrite", mode],
        );
        run.expect(1);
        assert_eq!(
            fs::read(target.join("keep.txt/precious")).unwrap(),
            b"user data"
        );
        assert!(
            run.stderr.contains("keep.txt") && run.stderr.contains("not empty"),
            "{mode}: the obstacle is named: {}",
            run.stderr
        );
        assert!(
            fs::metadata(target.join("docs/a.odt")).unwrap().is_file(),
            "{mode}"
        );
        assert_eq!(fs::read(target.join("tmp/deep/y")).unwrap(), b"restored y");
    }
}

/// `--overwrite if-changed` keeps a regular file whose size and mtime match the snapshot's
/// without reading it; `--verify` then reads it too, and a file whose content differs
/// anyway is reported (exit 1) and left as it is. With matching content, all is well.
#[test]
fn verify_covers_files_kept_by_if_changed_and_never() {
    let f = Fixture::new();
    let src = source(&f);
    set_mtime(src.join("keep.txt"), 1_400_000_000, 5);
    f.backup(&[&src], &[]);
    let sub = format!("latest:{}", src.display());
    for mode in ["if-changed", "never"] {
        let target = f.path(format!("target-{mode}"));
        restore(&f, &sub, &target, &[]).ok();
        // Same size and mtime, other content: if-changed cannot see it without reading.
        write(target.join("keep.txt"), b"KEEP ME");
        set_mtime(target.join("keep.txt"), 1_400_000_000, 5);
        let quiet = restore(&f, &sub, &target, &["--overwrite", mode, "--json"]);
        quiet.ok();
        assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"KEEP ME");
        let run = restore(&f, &sub, &target, &["--overwrite", mode, "--verify"]);
        run.expect(1);
        assert!(
            run.stderr.contains("keep.txt") && run.stderr.contains("differs from the snapshot"),
            "{mode}: {}",
            run.stderr
        );
        assert_eq!(
            fs::read(target.join("keep.txt")).unwrap(),
            b"KEEP ME",
            "{mode}: left as it is"
        );
        write(target.join("keep.txt"), b"keep me");
        set_mtime(target.join("keep.txt"), 1_400_000_000, 5);
        let run = restore(
            &f,
            &sub,
            &target,
            &["--overwrite", mode, "--verify", "--json"],
        );
        run.ok();
        assert!(
            run.summary()["files_verified"].as_u64().unwrap() >= 4,
            "{mode}: kept files are verified"
        );
    }
}

/// Directory metadata applied at the end goes to the restored directory, never through a
/// symlink: a symlink to an outside directory where the snapshot has `docs` (mode 0750) is
/// replaced, and the outside directory keeps its mode and times.
#[test]
fn directory_metadata_is_never_applied_through_a_symlink() {
    let f = Fixture::new();
    let src = source(&f);
    f.backup(&[&src], &[]);
    for (name, extra) in [("full", &[][..]), ("include", &["--include", "*.odt"][..])] {
        let out = sentinel(&f);
        let before = snapshot_of(&out);
        let target = f.path(format!("target-{name}"));
        fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&out, target.join("docs")).unwrap();
        restore(&f, &format!("latest:{}", src.display()), &target, extra).ok();
        assert_eq!(snapshot_of(&out), before, "{name}");
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
            0o711
        );
        let docs = fs::symlink_metadata(target.join("docs")).unwrap();
        assert!(docs.is_dir(), "{name}");
        assert_eq!(docs.mode() & 0o7777, 0o750, "{name}");
        fs::remove_dir_all(&out).unwrap();
    }
}

/// A restore onto a file system that fills up says the disk is full — not that data is
/// damaged — counts only the bytes it wrote, stops, and exits 1.
#[test]
fn a_full_disk_is_reported_as_full_not_as_damage() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..12u64 {
        write(src.join(format!("f{i:02}")), random_bytes(i, 1 << 20));
    }
    f.backup(&[&src], &[]);
    let mnt = f.path("small");
    let Some(_mounted) = Tmpfs::mount(&mnt, "size=4m") else {
        return;
    };
    let run = restore(&f, &format!("latest:{}", src.display()), &mnt, &["--json"]);
    run.expect(1);
    let summary = run.summary();
    assert_eq!(summary["disk_full"], serde_json::json!(true), "{summary}");
    let written = summary["bytes_restored"].as_u64().unwrap();
    assert!(
        written <= 4 << 20,
        "counted {written} bytes on a 4 MiB disk"
    );
    let errors = summary["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for e in errors {
        assert_eq!(e["damaged"], serde_json::json!(false), "not damage: {e}");
        assert!(e["error"].as_str().unwrap().contains("disk is full"), "{e}");
    }
    // Every file left behind is complete: partial files were removed.
    let mut complete = 0;
    for entry in fs::read_dir(&mnt).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            fs::read(&p).unwrap(),
            fs::read(src.join(&name)).unwrap(),
            "{name}"
        );
        complete += 1;
    }
    assert_eq!(complete as u64, summary["files_restored"].as_u64().unwrap());
    let human = restore(&f, &format!("latest:{}", src.display()), &mnt, &[]);
    human.expect(1);
    assert!(human.stderr.contains("is full"), "{}", human.stderr);
    assert!(!human.stderr.contains("DAMAGED"), "{}", human.stderr);
}

/// A tree far deeper than the directories a restore holds open at once, under a low limit
/// on open descriptors: directories whose descriptors were given back are opened again
/// (beneath the target, without following symlinks) when the walk returns to them, and
/// every file and directory time lands.
#[test]
fn a_deep_tree_restores_under_a_low_descriptor_limit() {
    let f = Fixture::new();
    let src = f.path("src");
    let mut dir = src.clone();
    for i in 0..300 {
        dir = dir.join("dd");
        if i % 50 == 0 {
            write(dir.join("file"), format!("at depth {i}"));
        }
    }
    write(dir.join("bottom"), b"the bottom");
    f.backup(&[&src], &[]);
    let target = f.path("target");
    f.cmd()
        .fd_limit(128)
        .args(["restore", &format!("latest:{}", src.display()), "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&src, &target);
    // Selective: the 300 directories above `bottom` are made on demand, in one go.
    let target = f.path("target-include");
    f.cmd()
        .fd_limit(128)
        .args([
            "restore",
            &format!("latest:{}", src.display()),
            "--include",
            "bottom",
        ])
        .arg("--target")
        .arg(&target)
        .run()
        .ok();
    let bottom = target.join("dd/".repeat(300)).join("bottom");
    assert_eq!(fs::read(bottom).unwrap(), b"the bottom");
}

/// A target that exists and is not a directory (a file, or a symlink to one) is refused with
/// a message saying so, and left as it is.
#[test]
fn a_target_that_is_not_a_directory_is_refused() {
    let f = Fixture::new();
    let src = source(&f);
    f.backup(&[&src], &[]);
    let file = f.path("a-file");
    write(&file, b"not a directory");
    let link = f.path("a-link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for target in [&file, &link] {
        let run = restore(&f, "latest", target, &[]);
        run.expect(1);
        assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
        assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    }
}

/// A hard-link farm (rsnapshot style): one file and thousands of directories each holding a
/// link to it. Links waiting for their first file hold no descriptor, so under a low limit
/// every link is made — and nothing is called damaged for want of descriptors.
#[test]
fn a_hard_link_farm_restores_under_a_low_descriptor_limit() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a/big"), random_bytes(3, 300_000));
    for i in 0..400 {
        let dir = src.join(format!("b/{i:04}"));
        fs::create_dir_all(&dir).unwrap();
        fs::hard_link(src.join("a/big"), dir.join("l")).unwrap();
    }
    f.backup(&[&src], &[]);
    let target = f.path("target");
    f.cmd()
        .fd_limit(128)
        .args(["restore", &format!("latest:{}", src.display()), "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_entries(&src, &target);
    assert_eq!(fs::metadata(target.join("a/big")).unwrap().nlink(), 401);
}

/// A socket in the snapshot is not restored (it belongs to the process that made it), and
/// whatever stands at its name in the target is left alone, in every mode.
#[test]
fn a_socket_in_the_snapshot_never_touches_the_target() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("file"), b"content");
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    f.backup(&[&src], &[]);
    for mode in ["always", "if-changed", "never"] {
        let target = f.path(format!("target-{mode}"));
        write(target.join("sock"), b"the user's file");
        restore(
            &f,
            &format!("latest:{}", src.display()),
            &target,
            &["--overwrite", mode],
        )
        .ok();
        assert_eq!(
            fs::read(target.join("sock")).unwrap(),
            b"the user's file",
            "{mode}"
        );
        assert_eq!(fs::read(target.join("file")).unwrap(), b"content", "{mode}");
    }
}

/// Running out of inodes (not bytes) while making directories and symlinks is a full disk
/// too: said once, the restore stops, exit 1.
#[test]
fn running_out_of_inodes_says_the_disk_is_full() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..60 {
        let dir = src.join(format!("d{i:02}"));
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("somewhere", dir.join("link")).unwrap();
    }
    f.backup(&[&src], &[]);
    let mnt = f.path("few-inodes");
    let Some(_mounted) = Tmpfs::mount(&mnt, "size=4m,nr_inodes=40") else {
        return;
    };
    let run = restore(&f, &format!("latest:{}", src.display()), &mnt, &["--json"]);
    run.expect(1);
    let summary = run.summary();
    assert_eq!(summary["disk_full"], serde_json::json!(true), "{summary}");
    let errors = summary["errors"].as_array().unwrap();
    assert!(
        errors.len() <= 2,
        "the restore stopped at the first full error: {errors:?}"
    );
}
