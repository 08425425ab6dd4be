//! How a test waits for another process: it polls for a state (a lock file, a checkpoint, a
//! pack, a listening port, an exit), with a deadline that only bounds a hang, never a sleep
//! that guesses how fast the machine is.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often [`wait_until`] looks.
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds; Err once `limit` has passed without it. `limit` only bounds a
/// hang: the expected path is the state arriving, however slow the machine.
pub fn try_wait_until(
    limit: Duration,
    what: &str,
    cond: impl FnMut() -> bool,
) -> Result<(), String> {
    try_wait_until_every(POLL, limit, what, cond)
}

/// Like [`try_wait_until`], looking every `every` (for a `cond` that starts a process).
pub fn try_wait_until_every(
    every: Duration,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err(format!("{what} did not happen within {limit:?}"));
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// Waits for a state another process brings about (a lock file, a checkpoint, a pack, a
/// listening port); fails the test if it does not come within `limit`.
#[track_caller]
pub fn wait_until(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(limit, what, cond) {
        panic!("{e}");
    }
}

/// Waits for `child` to exit; after `limit` (a hang) kills it and fails the test.
#[track_caller]
pub fn wait_for_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let mut status = None;
    let exited = try_wait_until(limit, &format!("the exit of {what}"), || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    match (exited, status) {
        (Ok(()), Some(status)) => status,
        (waited, _) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}", waited.err().unwrap_or_default());
        }
    }
}

/// Entries of `dir` whose name does not start with `.tmp-` (files in their final place), 0
/// while `dir` does not exist.
pub fn final_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().as_bytes().starts_with(b".tmp-"))
            .count()
    })
}

/// Files under a repository's `data/XX/`: (packs under their final names, `.tmp-*` packs
/// being written).
pub fn data_files(repo: &Path) -> (usize, usize) {
    let (mut packs, mut temps) = (0, 0);
    for sub in fs::read_dir(repo.join("data"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if e.file_name().as_bytes().starts_with(b".tmp-") {
                temps += 1;
            } else {
                packs += 1;
            }
        }
    }
    (packs, temps)
}
