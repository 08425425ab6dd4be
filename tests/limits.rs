//! Bandwidth limits on a local repository (a USB disk shared with other work): a backup under
//! `--limit-upload` and a restore under `--limit-download` take at least their bytes over the
//! limit, less the one piece (at most 256 KiB) an idle limiter lets through at once. Only lower
//! bounds: how much slower a shared machine is, is noise. The same on S3 (Garage), SFTP (sshd)
//! and `cairn serve` through ssh (sshd) on loopback.

mod common;

use std::time::{Duration, Instant};

use common::servers::{self, Garage, Sshd};
use common::*;

/// The most an idle limiter lets through without waiting (one piece).
const BURST: u64 = 256 << 10;
/// Incompressible data: stored (and read back) at about its own size.
const SIZE: usize = 8 << 20;

/// The least time `bytes` take at `kib` KiB/s, given one burst free.
fn least(bytes: u64, kib: u64) -> Duration {
    Duration::from_secs_f64(bytes.saturating_sub(BURST) as f64 / (kib * 1024) as f64)
}

#[test]
fn a_backup_under_an_upload_limit_writes_no_faster_than_the_limit() {
    let f = Fixture::small_packs();
    write(f.path("src/data"), random_bytes(21, SIZE));
    let before = f.repo_bytes();
    let started = Instant::now();
    f.cmd()
        .args(["--limit-upload", "1024", "backup"])
        .arg(f.path("src"))
        .run()
        .ok();
    let took = started.elapsed();
    let written = f.repo_bytes() - before;
    assert!(written >= SIZE as u64, "{written} bytes written");
    let floor = least(written, 1024);
    assert!(
        took >= floor,
        "{written} bytes at 1024 KiB/s took {took:?}, less than {floor:?}"
    );
}

#[test]
fn a_restore_under_a_download_limit_reads_no_faster_than_the_limit() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    write(src.join("data"), random_bytes(22, SIZE));
    f.backup(&[&src], &[]);
    let target = f.path("target");
    let started = Instant::now();
    f.cmd()
        .args(["--limit-download", "2048", "restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    let took = started.elapsed();
    assert_same_tree(&src, &restored(&target, &src));
    // At least the file's own bytes come out of the repository.
    let floor = least(SIZE as u64, 2048);
    assert!(
        took >= floor,
        "{SIZE} bytes at 2048 KiB/s took {took:?}, less than {floor:?}"
    );
}

#[test]
fn check_read_data_under_a_download_limit_reads_no_faster_than_the_limit() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    write(src.join("data"), random_bytes(23, SIZE));
    f.backup(&[&src], &[]);
    let stored = f.repo_bytes();
    let started = Instant::now();
    f.cmd()
        .args(["--limit-download", "2048", "check", "--read-data"])
        .run()
        .ok();
    let took = started.elapsed();
    // check reads every pack once, and the index, snapshots and config besides.
    let floor = least(SIZE as u64, 2048);
    assert!(
        took >= floor,
        "{stored} bytes stored, read at 2048 KiB/s in {took:?}, less than {floor:?}"
    );
}

/// A backup to a remote repository under `--limit-upload` and a restore under
/// `--limit-download`: no faster than their limits either.
fn remote_limits(url: &str, apply: impl Fn(TestCommand) -> TestCommand) {
    let f = Fixture::empty();
    let src = f.path("src");
    write(src.join("data"), random_bytes(24, 4 << 20));
    let cmd = |args: &[&str]| {
        apply(
            TestCommand::bare()
                .arg("-r")
                .arg(url)
                .env("CAIRN_PASSWORD", PASSWORD)
                .env("XDG_CACHE_HOME", f.path("cache")),
        )
        .args(args)
    };
    cmd(&["init", "--kdf-memory-mib", "8", "--pack-size", "1"])
        .run()
        .ok();
    let started = Instant::now();
    cmd(&["--limit-upload", "1024", "backup"])
        .arg(&src)
        .run()
        .ok();
    let took = started.elapsed();
    let floor = least(4 << 20, 1024);
    assert!(
        took >= floor,
        "4 MiB up at 1024 KiB/s in {took:?}, less than {floor:?}"
    );

    let target = f.path("target");
    let started = Instant::now();
    cmd(&["--limit-download", "2048", "restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    let took = started.elapsed();
    assert_same_tree(&src, &restored(&target, &src));
    let floor = least(4 << 20, 2048);
    assert!(
        took >= floor,
        "4 MiB down at 2048 KiB/s in {took:?}, less than {floor:?}"
    );
}

#[test]
fn s3_uploads_and_downloads_keep_to_their_limits() {
    if !servers::require_garage() {
        return;
    }
    let garage = Garage::start();
    remote_limits(&garage.url("limited"), |c| garage.apply(c));
}

#[test]
fn sftp_uploads_and_downloads_keep_to_their_limits() {
    if !servers::require_sshd() {
        return;
    }
    let sshd = Sshd::start();
    remote_limits(&sshd.url("limited"), |c| sshd.apply(c));
}

#[test]
fn ssh_serve_uploads_and_downloads_keep_to_their_limits() {
    if !servers::require_sshd() {
        return;
    }
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("ssh://{}{}", Sshd::HOST, dir.path().join("repo").display());
    remote_limits(&url, |c| {
        sshd.apply(c.env("CAIRN_REMOTE_COMMAND", env!("CARGO_BIN_EXE_cairn")))
    });
}
