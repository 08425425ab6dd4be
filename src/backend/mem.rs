//! An in-memory backend for tests and benchmarks.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use super::{Backend, FileKind, ObjectTooLarge};

/// A [`Backend`] that holds every file in memory, keyed by kind and name; gone when dropped.
/// Puts are atomic and immediately "durable"; there is no OS lock.
#[derive(Default)]
pub struct MemBackend {
    files: Mutex<BTreeMap<(FileKind, String), Vec<u8>>>,
}

impl MemBackend {
    /// An empty store, location `memory`.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(FileKind, String), Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written object: inserts are atomic.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Total bytes stored (for tests).
    pub fn total_size(&self) -> u64 {
        self.lock().values().map(|v| v.len() as u64).sum()
    }
}

fn not_found(kind: FileKind, name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", kind.path(name)),
    )
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn create(&self) -> io::Result<()> {
        if self.lock().is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "not empty"))
        }
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.lock()
            .entry((kind, name.to_string()))
            .or_insert_with(|| data.to_vec());
        Ok(())
    }

    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let files = self.lock();
        let data = files
            .get(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        if data.len() as u64 > limit {
            return Err(ObjectTooLarge::error(
                kind,
                name,
                limit,
                Some(data.len() as u64),
            ));
        }
        Ok(data.clone())
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let files = self.lock();
        let data = files
            .get(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        data.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        Ok(self
            .lock()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, n), v)| (n.clone(), v.len() as u64))
            .collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.lock().remove(&(kind, name.to_string()));
        Ok(())
    }
}
