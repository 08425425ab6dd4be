//! What the walking thread and the workers share: the repository and options, the outcome the
//! workers add to, and which batches are finished — the walk waits on that to stay at most
//! [`BATCHES_IN_FLIGHT`](super::plan::BATCHES_IN_FLIGHT) batches ahead of the workers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{RestoreOptions, RestoreOutcome, RestoreProgress};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::safe_fs::Dir;

/// What the walking thread and the workers share.
pub(super) struct Shared<'a> {
    pub(super) repo: &'a Repository,
    pub(super) opts: &'a RestoreOptions,
    pub(super) progress: &'a dyn RestoreProgress,
    /// What the workers did (content, checks, file metadata, hard links).
    pub(super) out: Mutex<RestoreOutcome>,
    pub(super) flow: Mutex<Flow>,
    /// Signalled whenever a batch is finished.
    pub(super) changed: Condvar,
    /// A write found the target's file system full: nothing more is written.
    pub(super) disk_full: Arc<AtomicBool>,
    /// The target directory (hard links waiting for their first file are made beneath it).
    pub(super) target: Arc<Dir>,
}

/// Which batches are finished.
#[derive(Default)]
pub(super) struct Flow {
    /// Every batch up to this one is finished.
    pub(super) done_through: u64,
    /// Finished batches after a still unfinished one.
    pub(super) finished: BTreeSet<u64>,
}

impl Shared<'_> {
    pub(super) fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    pub(super) fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    pub(super) fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn batch_finished(&self, seq: u64) {
        let mut flow = self.flow();
        flow.finished.insert(seq);
        loop {
            let next = flow.done_through + 1;
            if !flow.finished.remove(&next) {
                break;
            }
            flow.done_through = next;
        }
        self.changed.notify_all();
    }

    /// Waits until every batch up to `seq` is finished. Interrupted (Ctrl-C) while waiting:
    /// the workers then skip what is queued, so those batches never finish.
    pub(super) fn wait_through(&self, seq: u64) -> Result<()> {
        let mut flow = self.flow();
        while flow.done_through < seq {
            if self.cancelled() {
                return Err(Error::Interrupted);
            }
            flow = self
                .changed
                .wait_timeout(flow, std::time::Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }
}
