//! Repository locks (repo-format.md §10.3).
//!
//! backup, restore and check take shared locks; prune and forget take an exclusive one. On a
//! local repository an OS advisory lock (flock on `locks/`) decides, and vanishes with the
//! process. A lock file — sealed: host, PID, boot id, time — tells other hosts and names the
//! holder; it is refreshed by writing a new file and deleting the old one. A lock whose holder
//! is dead on this host (PID gone, or the machine rebooted) is stale and ignored, as is a lock
//! from another host not refreshed for [`STALE_AFTER`].

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

/// A lock file's sealed content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub boot_id: String,
    pub time_ns: i64,
    pub command: String,
}

impl LockInfo {
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
}

/// This machine's boot id: a reboot makes every lock of the previous boot stale.
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

/// Whether a lock's holder is gone.
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

/// Reads every lock file; unreadable ones are returned as errors by name.
pub fn list_locks(repo: &Repository) -> Result<Vec<(String, Result<LockInfo, String>)>> {
    let backend = repo.backend();
    let names = repo.list(FileKind::Lock)?;
    let mut out = Vec::new();
    for (name, size) in names {
        if size > 64 * 1024 {
            out.push((
                name,
                Err(format!("{size} bytes is more than any lock file can be")),
            ));
            continue;
        }
        let info = backend
            .get(FileKind::Lock, &name)
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
        let os = match backend.os_lock(exclusive) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let holder = list_locks(repo)?
                    .into_iter()
                    .filter_map(|(_, l)| l.ok())
                    .filter(|l| !is_stale(l, host, &boot) && (exclusive || l.exclusive))
                    .map(|l| l.describe())
                    .next()
                    .unwrap_or_else(|| {
                        "a lock held by another cairn process on this machine".into()
                    });
                return Err(Error::Locked(format!(
                    "{holder}; try again when it has finished"
                )));
            }
            Err(e) => {
                return Err(Error::Backend {
                    path: "locks/".into(),
                    source: e,
                })
            }
        };
        let info = LockInfo {
            exclusive,
            host: host.to_string(),
            pid: std::process::id(),
            boot_id: boot.clone(),
            time_ns: now_ns(),
            command: command.to_string(),
        };
        let ours = write_lock(backend.as_ref(), repo.keys(), &info)?;
        for (name, l) in list_locks(repo)? {
            if name == ours {
                continue;
            }
            let Ok(l) = l else { continue };
            if (exclusive || l.exclusive) && !is_stale(&l, host, &boot) {
                let _ = backend.delete(FileKind::Lock, &ours);
                return Err(Error::Locked(format!(
                    "{}; try again when it has finished",
                    l.describe()
                )));
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

/// Removes stale lock files (all lock files with `all`); returns the names removed.
pub fn unlock(repo: &Repository, all: bool, host: &str) -> Result<Vec<String>> {
    let boot = boot_id();
    let mut removed = Vec::new();
    for (name, l) in list_locks(repo)? {
        let remove = all
            || match &l {
                Ok(l) => is_stale(l, host, &boot),
                Err(_) => true, // unreadable: cannot be anyone's live lock we could honour
            };
        if remove {
            repo.backend()
                .delete(FileKind::Lock, &name)
                .map_err(crate::repo::backend_err(FileKind::Lock, &name))?;
            removed.push(name);
        }
    }
    Ok(removed)
}
