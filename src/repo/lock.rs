//! Repository locks (repo-format.md §10.3).
//!
//! backup, restore and check take shared locks; prune and forget take an exclusive one. On a
//! local repository an OS advisory lock (flock on `locks/`) decides, and vanishes with the
//! process. A lock file — sealed: host, PID, boot id, time — tells other hosts and names the
//! holder; it is refreshed by writing a new file and deleting the old one. A lock whose holder
//! is dead on this host (PID gone, or the machine rebooted) is stale and ignored, as is a lock
//! from another host not refreshed for [`STALE_AFTER`]. A lock from another host dated in the
//! future is never stale by age: the message that it blocks says so, and how to remove it.
//! `unlock` removes only files it can read as locks of this repository; anything else in
//! `locks/` is named and left alone.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind, OsLock};
use crate::crypto::{MasterKeys, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{
    decode_object, encode_object, from_msgpack, to_msgpack_named, Compression, Expect,
};
use crate::id::content_hash;
use crate::repo::Repository;

/// How often a held lock's file is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// A lock file from another host that was not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Clocks of two hosts may differ this much: a lock dated less than this ahead of now is just
/// written; one dated further ahead is "in the future" (messages only; it is not stale either way).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// The largest lock file read (repo-format.md §4.5: a lock is a few hundred bytes).
const MAX_LOCK_FILE: u64 = 64 * 1024;

/// A lock file's sealed content: a MessagePack map, kind 8 (repo-format.md §10.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// True for an exclusive lock (prune, forget, repair), false for a shared one; two locks
    /// conflict when either is exclusive.
    pub exclusive: bool,
    /// Host name of the holder; a lock from this host is judged by `pid` and `boot_id`, one
    /// from another host by age.
    pub host: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// The holder's Linux boot id (see [`boot_id`]), or `""` where there is none.
    pub boot_id: String,
    /// When the lock file was written (or last refreshed), nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The cairn subcommand holding the lock, e.g. `"prune"`.
    pub command: String,
}

impl LockInfo {
    /// One phrase naming the holder: kind of lock, command, PID and host.
    pub fn describe(&self) -> String {
        format!(
            "{} lock held by `cairn {}` (PID {} on {})",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.command,
            self.pid,
            self.host
        )
    }

    /// Why this lock blocks, for a person at `host` at `now_ns`: the holder and, for a lock
    /// from another host, how old it is, when it goes stale, and how to remove it.
    pub fn explain(&self, host: &str, now_ns: i64) -> String {
        let who = self.describe();
        if self.host == host {
            return format!("{who}; try again when it has finished");
        }
        let remove = format!(
            "once you are sure no cairn runs on {}, remove it with `cairn unlock --remove-all`",
            self.host
        );
        let age = now_ns.saturating_sub(self.time_ns);
        if age < -(CLOCK_SKEW.as_nanos() as i64) {
            return format!(
                "{who}, dated {} in the future (a clock, on {} or here, is wrong), so it never goes stale by age; {remove}",
                span(age.saturating_neg()),
                self.host
            );
        }
        let age = age.max(0);
        let left = (STALE_AFTER.as_nanos() as i64).saturating_sub(age);
        format!(
            "{who}, last refreshed {} ago; if it is no longer running there, the lock goes stale in {}; or, {remove}",
            span(age),
            span(left)
        )
    }
}

/// `3 days`, `1 hour`, `12 minutes`, `40 seconds`: the largest whole unit of `ns`.
fn span(ns: i64) -> String {
    let s = ns.max(0) / 1_000_000_000;
    let (n, unit) = match s {
        0..=119 => (s, "second"),
        120..=7_199 => (s / 60, "minute"),
        7_200..=172_799 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// This machine's boot id (`/proc/sys/kernel/random/boot_id`), or `""` where the kernel has
/// none: a reboot makes every lock of the previous boot stale.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Whether a lock's holder is gone (repo-format.md §10.3), judged from this machine, whose host
/// name is `host` and boot id `boot`: a lock of this host is stale when the boot ids differ
/// (both non-empty) or its PID is not running; one of another host when it is older than
/// [`STALE_AFTER`].
pub fn is_stale(l: &LockInfo, host: &str, boot: &str) -> bool {
    if l.host == host {
        (!boot.is_empty() && !l.boot_id.is_empty() && l.boot_id != boot) || !pid_alive(l.pid)
    } else {
        now_ns().saturating_sub(l.time_ns) > STALE_AFTER.as_nanos() as i64
    }
}

fn write_lock(backend: &dyn Backend, keys: &MasterKeys, info: &LockInfo) -> Result<String> {
    let plain = to_msgpack_named(info)?;
    let sealed = encode_object(keys, ObjectKind::Lock, &[], &plain, Compression::Off)?;
    let name = hex::encode(content_hash(&sealed));
    backend
        .put(FileKind::Lock, &name, &sealed)
        .map_err(crate::repo::backend_err(FileKind::Lock, &name))?;
    Ok(name)
}

/// Reads every lock file in `locks/`: (file name, its content or why it could not be read as a
/// lock of this repository). Unreadable files are listed, never an error of the whole call.
pub fn list_locks(repo: &Repository) -> Result<Vec<(String, Result<LockInfo, String>)>> {
    let backend = repo.backend();
    let names = repo.list(FileKind::Lock)?;
    let mut out = Vec::new();
    for (name, size) in names {
        if size > MAX_LOCK_FILE {
            out.push((
                name,
                Err(format!("{size} bytes is more than any lock file can be")),
            ));
            continue;
        }
        // Only the listed length is read: a file that grows meanwhile stays bounded.
        let info = backend
            .get_range(FileKind::Lock, &name, 0, size as usize)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                decode_object(
                    repo.keys(),
                    ObjectKind::Lock,
                    &[],
                    &b,
                    Expect::AtMost(64 * 1024),
                )
                .map_err(|e| e.to_string())
            })
            .and_then(|p| from_msgpack::<LockInfo>(&p, "lock").map_err(|e| e.to_string()));
        out.push((name, info));
    }
    Ok(out)
}

/// A held lock; released on drop.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    name: Arc<Mutex<String>>,
    /// Dropping it wakes and stops the refresher at once.
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    _os: Option<OsLock>,
}

impl RepoLock {
    /// Takes a shared or exclusive lock, or fails with [`Error::Locked`] naming the holder.
    pub fn acquire(
        repo: &Repository,
        exclusive: bool,
        command: &str,
        host: &str,
    ) -> Result<RepoLock> {
        let backend = repo.backend().clone();
        let boot = boot_id();
        let info = LockInfo {
            exclusive,
            host: host.to_string(),
            pid: std::process::id(),
            boot_id: boot.clone(),
            time_ns: now_ns(),
            command: command.to_string(),
        };
        let mut written = None;
        let os = match backend.os_lock(exclusive) {
            // No `locks/` (a reader treats a missing directory as empty): writing the lock file
            // creates it, then the OS lock can be had.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                written = Some(write_lock(backend.as_ref(), repo.keys(), &info)?);
                backend.os_lock(exclusive)
            }
            other => other,
        };
        let os = match os {
            Ok(l) => l,
            Err(e) => {
                if let Some(ours) = &written {
                    let _ = backend.delete(FileKind::Lock, ours);
                }
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(Error::Backend {
                        path: "locks/".into(),
                        source: e,
                    });
                }
                let holder = list_locks(repo)?
                    .into_iter()
                    .filter_map(|(_, l)| l.ok())
                    .filter(|l| !is_stale(l, host, &boot) && (exclusive || l.exclusive))
                    .map(|l| l.explain(host, now_ns()))
                    .next()
                    .unwrap_or_else(|| {
                        "a lock held by another cairn process on this machine; try again when it has finished".into()
                    });
                return Err(Error::Locked(holder));
            }
        };
        let ours = match written {
            Some(n) => n,
            None => write_lock(backend.as_ref(), repo.keys(), &info)?,
        };
        for (name, l) in list_locks(repo)? {
            if name == ours {
                continue;
            }
            let l = match l {
                Ok(l) => l,
                // A put-only key cannot read a full key's lock: it may be a prune's, which must
                // not run beside a backup whose record of stored data it would make stale.
                Err(_) if repo.keys().is_put_only() => {
                    let _ = backend.delete(FileKind::Lock, &ours);
                    return Err(Error::Locked(format!(
                        "lock file {name} cannot be read with a put-only key (it is a full key's, perhaps a prune's); try again when it is gone, or remove it with `cairn unlock` and a full key"
                    )));
                }
                Err(_) => continue,
            };
            if (exclusive || l.exclusive) && !is_stale(&l, host, &boot) {
                let _ = backend.delete(FileKind::Lock, &ours);
                return Err(Error::Locked(l.explain(host, now_ns())));
            }
        }
        let name = Arc::new(Mutex::new(ours));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let (backend, name, keys) = (backend.clone(), name.clone(), repo.keys().clone());
            std::thread::Builder::new()
                .name("cairn-lock".into())
                .spawn(move || refresh_loop(backend.as_ref(), &keys, info, &name, &stopped))
                .ok()
        };
        Ok(RepoLock {
            backend,
            name,
            stop: Some(stop),
            refresher,
            _os: os,
        })
    }
}

fn refresh_loop(
    backend: &dyn Backend,
    keys: &MasterKeys,
    mut info: LockInfo,
    name: &Mutex<String>,
    stop: &crossbeam_channel::Receiver<()>,
) {
    // Wakes every REFRESH_EVERY, or at once when the lock is dropped (the sender goes away).
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop.recv_timeout(REFRESH_EVERY) {
        info.time_ns = now_ns();
        // New file first, then the old one goes: a lock file is never rewritten in place.
        if let Ok(new) = write_lock(backend, keys, &info) {
            let mut cur = name.lock().unwrap_or_else(|p| p.into_inner());
            let old = std::mem::replace(&mut *cur, new);
            let _ = backend.delete(FileKind::Lock, &old);
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let name = self.name.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = self.backend.delete(FileKind::Lock, &name);
    }
}

/// What `unlock` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unlocked {
    /// Names (file ids) of the lock files removed.
    pub removed: Vec<String>,
    /// Files in `locks/` that are not locks of this repository (they do not open with its
    /// keys: damaged, foreign, or of a later format), with why; left alone.
    pub unreadable: Vec<(String, String)>,
}

/// Removes stale lock files (every lock file with `all`). Only files that open with the
/// repository's keys as locks are ever removed: `locks/` may hold something else (a copier's
/// leftovers, another repository's files behind a misplaced directory), which is named instead.
pub fn unlock(repo: &Repository, all: bool, host: &str) -> Result<Unlocked> {
    let boot = boot_id();
    let mut out = Unlocked::default();
    for (name, l) in list_locks(repo)? {
        let l = match l {
            Ok(l) => l,
            Err(why) => {
                out.unreadable.push((name, why));
                continue;
            }
        };
        if all || is_stale(&l, host, &boot) {
            repo.backend()
                .delete(FileKind::Lock, &name)
                .map_err(crate::repo::backend_err(FileKind::Lock, &name))?;
            out.removed.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(host: &str, time_ns: i64) -> LockInfo {
        LockInfo {
            exclusive: true,
            host: host.into(),
            pid: 42,
            boot_id: String::new(),
            time_ns,
            command: "prune".into(),
        }
    }

    const MIN: i64 = 60_000_000_000;
    const DAY: i64 = 24 * 60 * MIN;

    #[test]
    fn a_foreign_lock_dated_in_the_future_is_explained_with_its_host_age_and_removal() {
        let now = now_ns();
        let l = lock("far", now + 3 * DAY + 5 * MIN);
        // Never stale by age: it blocks until removed.
        assert!(!is_stale(&l, "here", ""));
        let m = l.explain("here", now);
        assert!(m.contains("on far"), "{m}");
        assert!(m.contains("dated 3 days in the future"), "{m}");
        assert!(m.contains("cairn unlock --remove-all"), "{m}");
        // Within the clock skew: just written.
        let m = lock("far", now + MIN).explain("here", now);
        assert!(m.contains("last refreshed 0 seconds ago"), "{m}");
    }

    #[test]
    fn a_foreign_lock_not_yet_stale_says_when_it_will_be() {
        let now = 1_000 * DAY;
        let m = lock("far", now - 10 * MIN).explain("here", now);
        assert!(m.contains("last refreshed 10 minutes ago"), "{m}");
        assert!(m.contains("goes stale in 20 minutes"), "{m}");
        assert!(m.contains("cairn unlock --remove-all"), "{m}");
    }
}
