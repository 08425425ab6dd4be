//! Every backup exclude option, through the real binary: what `ls` shows afterwards.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

/// Backs up `src` with `args` and returns the snapshot's paths relative to `src`.
fn backed_up(f: &Fixture, src: &Path, args: &[&str]) -> BTreeSet<String> {
    let id = f.backup(&[src], args);
    let run = f.cmd().args(["--json", "ls", &id]).run();
    run.ok();
    let prefix = format!("{}/", src.display());
    run.json()
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| {
            e["path"]
                .as_str()
                .and_then(|p| p.strip_prefix(&prefix))
                .map(str::to_string)
        })
        .collect()
}

fn tree(f: &Fixture) -> std::path::PathBuf {
    let src = f.path("src");
    write(src.join("keep.txt"), "k");
    write(src.join("a.tmp"), "t");
    write(src.join("deep/b.tmp"), "t");
    write(src.join("deep/c.txt"), "c");
    write(src.join("LOUD.LOG"), "l");
    write(src.join("big.bin"), vec![1u8; 5000]);
    write(
        src.join("cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache",
    );
    write(src.join("cache/blob"), "x");
    write(src.join("fake-cache/CACHEDIR.TAG"), "not a real signature");
    write(src.join("fake-cache/blob"), "x");
    write(src.join("private/.nobackup"), "");
    write(src.join("private/secret"), "s");
    write(src.join("home/u/.cache/junk"), "j");
    write(src.join("home/u/doc"), "d");
    src
}

#[test]
fn without_excludes_everything_is_there() {
    let f = Fixture::new();
    let src = tree(&f);
    let all = backed_up(&f, &src, &[]);
    assert!(all.contains("a.tmp") && all.contains("cache/blob") && all.contains("private/secret"));
}

#[test]
fn exclude_globs_match_names_anywhere_and_anchored_paths_from_the_root() {
    let f = Fixture::new();
    let src = tree(&f);
    let anchored = format!("{}/home/*/.cache", src.display());
    let got = backed_up(&f, &src, &["--exclude", "*.tmp", "--exclude", &anchored]);
    assert!(!got.contains("a.tmp") && !got.contains("deep/b.tmp"));
    assert!(got.contains("deep/c.txt"));
    assert!(
        !got.iter().any(|p| p.starts_with("home/u/.cache")),
        "{got:?}"
    );
    assert!(got.contains("home/u/doc"));
}

#[test]
fn iexclude_ignores_case_and_exclude_file_reads_patterns() {
    let f = Fixture::new();
    let src = tree(&f);
    let got = backed_up(&f, &src, &["--iexclude", "*.log"]);
    assert!(!got.contains("LOUD.LOG"));
    let got = backed_up(&f, &src, &["--exclude", "*.log"]);
    assert!(got.contains("LOUD.LOG"), "--exclude is case-sensitive");
    let list = f.path("excludes.txt");
    write(&list, "# comment\n\n*.tmp\nbig.bin\n");
    let got = backed_up(&f, &src, &["--exclude-file", list.to_str().expect("utf-8")]);
    assert!(!got.contains("a.tmp") && !got.contains("big.bin") && got.contains("keep.txt"));
}

#[test]
fn exclude_caches_if_present_and_larger_than() {
    let f = Fixture::new();
    let src = tree(&f);
    let got = backed_up(
        &f,
        &src,
        &[
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-larger-than",
            "1K",
        ],
    );
    assert!(!got.iter().any(|p| p.starts_with("cache/")), "{got:?}");
    assert!(
        got.contains("fake-cache/blob"),
        "an invalid CACHEDIR.TAG does not count"
    );
    assert!(!got.contains("private/secret"));
    assert!(!got.contains("big.bin"));
    assert!(got.contains("keep.txt"));
}

#[test]
fn one_file_system_keeps_a_mount_point_but_not_what_is_mounted_on_it() {
    let f = Fixture::new();
    let src = tree(&f);
    let mnt = src.join("mnt");
    let Some(mounted) = Tmpfs::mount(&mnt, "size=1m") else {
        return;
    };
    write(mnt.join("on-other-fs"), "x");
    let with = backed_up(&f, &src, &[]);
    let without = backed_up(&f, &src, &["--one-file-system"]);
    drop(mounted);
    assert!(with.contains("mnt/on-other-fs"));
    assert!(without.contains("mnt"), "the mount point itself is kept");
    assert!(!without.contains("mnt/on-other-fs"));
    assert_eq!(
        with.len(),
        without.len() + 1,
        "{:?}",
        with.symmetric_difference(&without).collect::<Vec<_>>()
    );
}
