//! The retry budget a remote backend shares across all operations of a command
//! (`--retry-timeout`): it runs from the start of the first attempt of a run of failures, so a
//! dead server ends the command within it, whatever the command was doing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Since when every attempt has failed (None: the last one succeeded).
#[derive(Debug, Default)]
pub(crate) struct FailingSince(Mutex<Option<Instant>>);

impl FailingSince {
    /// How long the server has been failing for, if it is.
    pub(crate) fn failing_for(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Records the outcome of an attempt started at `started`: a failure counts from the
    /// attempt's start (a server that stopped answering failed then).
    pub(crate) fn record(&self, ok: bool, started: Instant) {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            *f = None;
        } else if f.is_none_or(|t| started < t) {
            *f = Some(started);
        }
    }
}
