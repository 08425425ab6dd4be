//! A fault-injecting wrapper for crash tests: the N-th mutating operation (put or delete) fails
//! as if the process died there, and so does every operation after it. Because a backend's put
//! is atomic and durable, what survives such a "crash" is exactly the operations that returned
//! before it; reopening the inner backend shows the repository as a restarted process would.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Backend, FileKind};

/// A [`Backend`] wrapper that lets a fixed number of mutating operations (create, put,
/// delete) through to `inner`, then fails the next one and every operation after it, reads
/// included, with "injected crash".
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    /// Mutating operations allowed before the crash (u64::MAX: never crash).
    budget: u64,
    done: AtomicU64,
    crashed: AtomicBool,
}

impl FaultBackend {
    /// Crashes at mutating operation number `crash_at` (0-based).
    pub fn new(inner: Arc<dyn Backend>, crash_at: u64) -> Self {
        FaultBackend {
            inner,
            budget: crash_at,
            done: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    /// Mutating operations that completed.
    pub fn operations(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// True once the injected crash has happened (an operation was refused).
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    fn mutate<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        if self.crashed() || self.done.load(Ordering::SeqCst) >= self.budget {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other("injected crash"));
        }
        let r = f()?;
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }

    fn read<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        if self.crashed() {
            return Err(io::Error::other("injected crash"));
        }
        f()
    }
}

impl Backend for FaultBackend {
    fn location(&self) -> String {
        format!("fault({})", self.inner.location())
    }
    fn create(&self) -> io::Result<()> {
        self.mutate(|| self.inner.create())
    }
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.mutate(|| self.inner.put(kind, name, data))
    }
    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        self.read(|| self.inner.get_at_most(kind, name, limit))
    }
    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        self.read(|| self.inner.get_range(kind, name, offset, len))
    }
    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        self.read(|| self.inner.list(kind))
    }
    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.mutate(|| self.inner.delete(kind, name))
    }
}
