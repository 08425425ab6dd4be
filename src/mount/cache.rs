//! The mount's cache of opened data blobs: least recently used first out, bounded by the bytes
//! it holds. A blob being fetched is in the cache already (an empty slot), so two readers that
//! want the same blob at once fetch it once: the second waits for the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::id::BlobId;
use crate::Repository;

/// What a slot ends with: the blob's plaintext, or the errno a read reports.
type Filled = Result<Arc<Vec<u8>>, i32>;

struct Slot {
    value: Arc<OnceLock<Filled>>,
    /// When the slot was last used (a counter, not a clock).
    stamp: u64,
    /// The bytes it counts against the budget (0 while it is being fetched).
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<BlobId, Slot>,
    /// Slots by last use, oldest first.
    by_use: BTreeMap<u64, BlobId>,
    bytes: usize,
    clock: u64,
}

/// Opened data blobs, at most `budget` bytes of them (plus the blobs being read at the moment).
pub struct BlobCache {
    repo: Arc<RwLock<Repository>>,
    budget: usize,
    inner: Mutex<Inner>,
}

impl BlobCache {
    /// An empty cache in front of `repo` holding at most `budget` bytes of plaintext.
    pub fn new(repo: Arc<RwLock<Repository>>, budget: usize) -> Self {
        BlobCache {
            repo,
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The blob's plaintext: from the cache, or read, opened and verified through the
    /// repository. A failed read is not kept; the errno is `EIO`.
    pub fn get(&self, id: &BlobId) -> Filled {
        let slot = {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            match inner.slots.get_mut(id) {
                Some(s) => {
                    let old = std::mem::replace(&mut s.stamp, now);
                    let value = s.value.clone();
                    inner.by_use.remove(&old);
                    inner.by_use.insert(now, *id);
                    value
                }
                None => {
                    let value = Arc::new(OnceLock::new());
                    inner.slots.insert(
                        *id,
                        Slot {
                            value: value.clone(),
                            stamp: now,
                            bytes: 0,
                        },
                    );
                    inner.by_use.insert(now, *id);
                    value
                }
            }
        };
        let mut fetched = false;
        let result = slot
            .get_or_init(|| {
                fetched = true;
                self.repo
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .read_blob(id)
                    .map(Arc::new)
                    .map_err(|_| libc::EIO)
            })
            .clone();
        if fetched {
            self.settle(id, &slot, &result);
        }
        result
    }

    /// Counts a fetched blob against the budget (or drops a failed one) and evicts the least
    /// recently used blobs until the cache fits.
    fn settle(&self, id: &BlobId, slot: &Arc<OnceLock<Filled>>, result: &Filled) {
        let mut inner = self.lock();
        let same = inner
            .slots
            .get(id)
            .is_some_and(|s| Arc::ptr_eq(&s.value, slot));
        if !same {
            return;
        }
        match result {
            Ok(data) => {
                if let Some(s) = inner.slots.get_mut(id) {
                    s.bytes = data.len();
                }
                inner.bytes += data.len();
            }
            Err(_) => {
                if let Some(s) = inner.slots.remove(id) {
                    inner.by_use.remove(&s.stamp);
                }
            }
        }
        while inner.bytes > self.budget && inner.slots.len() > 1 {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some(s) = inner.slots.remove(&oldest) {
                inner.bytes -= s.bytes;
            }
        }
    }

    /// The bytes of plaintext the cache holds now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlobKind;
    use crate::saver::{BlobSaver, Known};
    use crate::testutil::{bytes, mem_repo};

    /// Blob ids with their plaintext.
    type Blobs = Vec<(BlobId, Vec<u8>)>;

    /// A repository holding `n` data blobs of `len` bytes each; their ids and contents.
    fn repo_with_blobs(n: u64, len: usize) -> (Arc<RwLock<Repository>>, Blobs) {
        let (_, mut repo) = mem_repo(b"pw");
        let mut saver = BlobSaver::new(&repo, Known::IndexOrQueued);
        let mut blobs = Vec::new();
        for seed in 0..n {
            let plain = bytes(seed, len);
            let id = repo.keys().chunk_id(&plain);
            saver.save(&repo, BlobKind::Data, id, &plain).expect("save");
            blobs.push((id, plain));
        }
        saver.commit(&mut repo).expect("commit");
        (Arc::new(RwLock::new(repo)), blobs)
    }

    #[test]
    fn the_cache_returns_each_blobs_plaintext_and_stays_within_its_budget() {
        let (repo, blobs) = repo_with_blobs(10, 1000);
        let cache = BlobCache::new(repo, 3500);
        for _ in 0..2 {
            for (id, plain) in &blobs {
                assert_eq!(cache.get(id).expect("blob").as_slice(), plain.as_slice());
                assert!(cache.bytes() <= 3500, "{} bytes held", cache.bytes());
            }
        }
        assert_eq!(cache.bytes(), 3000, "the three most recent blobs stay");
    }

    #[test]
    fn the_least_recently_used_blob_is_the_one_evicted() {
        let (repo, blobs) = repo_with_blobs(3, 1000);
        let cache = BlobCache::new(repo.clone(), 2000);
        let (a, b, c) = (&blobs[0].0, &blobs[1].0, &blobs[2].0);
        cache.get(a).expect("a");
        cache.get(b).expect("b");
        cache.get(a).expect("a again: now b is the oldest");
        cache.get(c).expect("c evicts b");
        let held: Vec<bool> = [a, b, c]
            .iter()
            .map(|id| cache.lock().slots.contains_key(*id))
            .collect();
        assert_eq!(held, [true, false, true]);
    }

    #[test]
    fn a_blob_that_cannot_be_read_is_an_io_error_and_is_not_kept() {
        let (repo, _) = repo_with_blobs(1, 10);
        let cache = BlobCache::new(repo, 1 << 20);
        let unknown = BlobId([7u8; 32]);
        assert_eq!(cache.get(&unknown), Err(libc::EIO));
        assert!(cache.lock().slots.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
