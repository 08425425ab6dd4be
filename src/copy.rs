//! Copying snapshots into another repository (docs/cli.md `cairn copy`), which has its own keys.
//!
//! Blob ids are keyed (repo-format.md §2), so the same plaintext has different ids in the two
//! repositories: every chunk is re-identified under the destination's `id` key, every tree is
//! rewritten with the destination's chunk and tree ids and re-encoded (§7.2), and blobs are
//! resealed under the destination's `enc` key. Chunk boundaries are kept as they are: a copy
//! deduplicates against data *backed up* into the destination only when both repositories cut
//! files alike (`init --copy-chunker-params-from`, §2).
//!
//! Invariants:
//! - Only blobs the destination lacks are written; the destination's blob saver
//!   (src/saver.rs: its index, plus the blobs written in this run) alone decides "new or known".
//! - Commit order per snapshot (§10.2): packs durable → index file → snapshot. An interrupted
//!   copy leaves at most unreferenced packs (`prune` removes them) and never a snapshot whose
//!   data is missing.
//! - A source snapshot already in the destination (same time, host, paths and tags, and the same
//!   origin, see [`Snapshot::copied_from`]) is skipped, so copying again writes nothing.
//! - The local map (source blob id → destination blob id) is a hint only: a chunk is skipped only
//!   if the destination's index has the mapped id, and a whole subtree only after the mapped
//!   destination tree has been checked, through the destination's own trees, to have every tree
//!   and chunk below it in the index. Deleting the map costs time, never correctness.
//!
//! Memory: one chunk in flight, plus the open packs (at most two, each up to the destination's
//! pack size) and the id maps (about 100 bytes per blob).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::id::{BlobId, RepoId, SnapshotId, TreeId, ID_LEN};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Known};
use crate::snapshot::Snapshot;

/// How often written packs are named in an index file within one long snapshot.
const INDEX_EVERY: Duration = Duration::from_secs(300);
/// How often the map file is rewritten (and after the last snapshot).
const MAP_SAVE_EVERY: Duration = Duration::from_secs(60);

/// Options for [`copy`].
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// The local id-map file for this pair of repositories (created if missing, rewritten
    /// atomically after each copied snapshot). `None`: no map is kept between runs.
    pub map_file: Option<PathBuf>,
    /// Set from outside (Ctrl-C) to stop at the next blob: the copy fails with
    /// [`Error::Interrupted`]; snapshots copied so far stay.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What happened to one source snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct CopiedSnapshot {
    /// The snapshot's id in the source repository.
    pub source: SnapshotId,
    /// The copy in the destination: new, or the one already there.
    pub destination: SnapshotId,
    /// True when the destination already had it (nothing was written).
    pub skipped: bool,
    /// Blobs written for this snapshot.
    pub blobs_sent: u64,
    /// Plaintext bytes of those blobs.
    pub data_sent: u64,
    /// Bytes of pack files written for this snapshot (sealed blobs and pack headers).
    pub bytes_sent: u64,
    /// Chunk plaintext read from the source.
    pub data_read: u64,
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyReport {
    /// One entry per source snapshot handled, in the order given.
    pub snapshots: Vec<CopiedSnapshot>,
    /// Snapshots written to the destination (`snapshots_copied` in `cairn copy --json`).
    pub copied: u64,
    /// Snapshots the destination already held (`snapshots_skipped`).
    pub skipped: u64,
    /// Blobs written to the destination, over all snapshots.
    pub blobs_sent: u64,
    /// Plaintext bytes of those blobs.
    pub data_sent: u64,
    /// Bytes of pack files written (index and snapshot files add a few hundred bytes each).
    pub bytes_sent: u64,
    /// Chunk plaintext read from the source, in bytes, over all snapshots.
    pub data_read: u64,
}

/// Progress callbacks; the library draws nothing.
pub trait CopyProgress {
    /// The source snapshot `source` is next, before it is known whether it is skipped.
    fn snapshot_started(&self, _source: &SnapshotId, _snapshot: &Snapshot) {}
    /// A blob was written to the destination (plaintext length).
    fn blob_sent(&self, _len: u64) {}
    /// A source snapshot was copied (and is durable) or skipped; not called when it fails.
    fn snapshot_done(&self, _result: &CopiedSnapshot) {}
}

/// A progress sink that ignores everything.
pub struct NoCopyProgress;
impl CopyProgress for NoCopyProgress {}

/// The identity a copy carries: the snapshot it was first made as.
pub(crate) fn origin(id: &SnapshotId, snap: &Snapshot) -> SnapshotId {
    snap.copied_from.unwrap_or(*id)
}

/// Same time, host, paths and tags: what `copy` requires besides a common origin.
pub(crate) fn same_metadata(a: &Snapshot, b: &Snapshot) -> bool {
    a.time_ns == b.time_ns && a.host == b.host && a.paths == b.paths && a.tags == b.tags
}

/// Copies `snapshots` (of `src`, oldest first for parents to map) into `dst`. Both indexes
/// must be loaded.
pub fn copy(
    src: &Repository,
    dst: &mut Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &CopyOptions,
    progress: &dyn CopyProgress,
) -> Result<CopyReport> {
    if src.id() == dst.id() {
        return Err(Error::InvalidInput(
            "source and destination are the same repository".into(),
        ));
    }
    // Destination snapshots by origin: a source snapshot whose origin is a destination
    // snapshot's origin (or the destination snapshot itself) is already there.
    let mut by_origin: HashMap<SnapshotId, Vec<(SnapshotId, Snapshot)>> = HashMap::new();
    for (id, s) in dst.snapshots()? {
        by_origin.entry(origin(&id, &s)).or_default().push((id, s));
    }
    let map = match &opts.map_file {
        Some(p) => IdMap::load(p, src.id(), dst.id()),
        None => HashMap::new(),
    };
    let mut c = Copier {
        src,
        saver: BlobSaver::new(dst, Known::IndexOrQueued),
        dst,
        cancel: opts.cancel.clone(),
        progress,
        map,
        map_file: opts.map_file.clone(),
        map_dirty: false,
        map_saved: Instant::now(),
        indexed: Instant::now(),
        trees: HashMap::new(),
        complete: HashSet::new(),
        cur: Counters::default(),
    };
    let mut report = CopyReport::default();
    for (src_id, snap) in snapshots {
        progress.snapshot_started(src_id, snap);
        let key = origin(src_id, snap);
        let existing = by_origin
            .get(&key)
            .and_then(|v| v.iter().find(|(_, d)| same_metadata(d, snap)))
            .map(|(id, _)| *id);
        let done = if let Some(dst_id) = existing {
            report.skipped += 1;
            CopiedSnapshot {
                source: *src_id,
                destination: dst_id,
                skipped: true,
                blobs_sent: 0,
                data_sent: 0,
                bytes_sent: 0,
                data_read: 0,
            }
        } else {
            let root = match c.copy_tree(snap.tree) {
                Ok(root) => root,
                Err(e) => {
                    // What was written stays usable: a rerun (after Ctrl-C, say) does not send it
                    // again. Best effort; the copy fails with the first error either way.
                    if c.commit_packs().is_ok() {
                        c.save_map(true);
                    }
                    return Err(e);
                }
            };
            c.commit_packs()?;
            let mut copied = snap.clone();
            copied.tree = root;
            copied.copied_from = Some(key);
            // References to other snapshots point at their copies, or nowhere.
            let find = |p: &SnapshotId| -> Option<SnapshotId> {
                let o = snapshots
                    .iter()
                    .find(|(i, _)| i == p)
                    .map(|(i, s)| origin(i, s))
                    .or_else(|| src.read_snapshot(p).ok().map(|s| origin(p, &s)))
                    .unwrap_or(*p);
                by_origin.get(&o).and_then(|v| v.first()).map(|(i, _)| *i)
            };
            copied.parent = snap.parent.as_ref().and_then(find);
            copied.original = snap.original.as_ref().and_then(find);
            // Invariant: every blob of `root` is in a durable index file of `dst`.
            let dst_id = c.dst.save_snapshot(&copied)?;
            by_origin.entry(key).or_default().push((dst_id, copied));
            c.save_map(false);
            report.copied += 1;
            let n = std::mem::take(&mut c.cur);
            CopiedSnapshot {
                source: *src_id,
                destination: dst_id,
                skipped: false,
                blobs_sent: n.blobs,
                data_sent: n.data,
                bytes_sent: n.bytes,
                data_read: n.read,
            }
        };
        report.blobs_sent += done.blobs_sent;
        report.data_sent += done.data_sent;
        report.bytes_sent += done.bytes_sent;
        report.data_read += done.data_read;
        progress.snapshot_done(&done);
        report.snapshots.push(done);
    }
    c.save_map(true);
    // The destination's new packs get parity when its config asks for it.
    crate::parity::after_write(c.dst);
    Ok(report)
}

#[derive(Default)]
struct Counters {
    blobs: u64,
    data: u64,
    bytes: u64,
    read: u64,
}

struct Copier<'a> {
    src: &'a Repository,
    dst: &'a mut Repository,
    cancel: Option<Arc<AtomicBool>>,
    progress: &'a dyn CopyProgress,
    /// Source blob → destination blob: hints from the map file, and what this run learned.
    map: HashMap<BlobId, BlobId>,
    map_file: Option<PathBuf>,
    /// The map has entries the file lacks.
    map_dirty: bool,
    map_saved: Instant,
    /// When pending packs were last named by an index file.
    indexed: Instant,
    /// Source trees copied or verified in this run → their destination trees.
    trees: HashMap<TreeId, TreeId>,
    /// Destination trees known to have everything below them in the destination.
    complete: HashSet<BlobId>,
    /// Decides what the destination lacks and writes it into the destination's packs.
    saver: BlobSaver,
    cur: Counters,
}

impl Translate for Copier<'_> {
    fn chunk(&mut self, id: BlobId) -> Result<Option<BlobId>> {
        self.copy_chunk(id).map(Some)
    }

    fn tree(&mut self, id: TreeId) -> Result<Option<TreeId>> {
        self.copy_tree(id).map(Some)
    }
}

impl Copier<'_> {
    fn learn(&mut self, src: BlobId, dst: BlobId) {
        if self.map.insert(src, dst) != Some(dst) {
            self.map_dirty = true;
        }
    }

    /// Rewrites the map file if it lacks entries, at most every [`MAP_SAVE_EVERY`] unless `now`.
    /// A map that cannot be written costs time on the next run, nothing else: a warning.
    fn save_map(&mut self, now: bool) {
        let Some(path) = &self.map_file else {
            return;
        };
        if !self.map_dirty || (!now && self.map_saved.elapsed() < MAP_SAVE_EVERY) {
            return;
        }
        match IdMap::save(path, self.src.id(), self.dst.id(), &self.map, self.dst) {
            Ok(()) => {
                self.map_dirty = false;
                self.map_saved = Instant::now();
            }
            Err(e) => {
                self.dst.warn(format!(
                    "could not save the copy map {}: {e}",
                    path.display()
                ));
                self.map_file = None;
            }
        }
    }

    fn has(&self, id: &BlobId) -> bool {
        self.saver.has(self.dst, id)
    }

    fn check_cancel(&self) -> Result<()> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// The destination id of a source chunk, stored if the destination lacks it.
    fn copy_chunk(&mut self, id: BlobId) -> Result<BlobId> {
        if let Some(d) = self.map.get(&id) {
            if self.has(d) {
                return Ok(*d);
            }
        }
        self.check_cancel()?;
        let loc = self
            .src
            .index()
            .get(&id)
            .ok_or_else(|| Error::BlobMissing { id: id.to_hex() })?;
        if loc.entry.kind != BlobKind::Data {
            return Err(Error::corrupt(
                format!("data blob {} in the source", id.short()),
                "the index lists it as a tree",
            ));
        }
        // Opened and checked against its source id before anything is written.
        let plain = self.src.read_blob_at(&loc.pack, &loc.entry)?;
        self.cur.read += plain.len() as u64;
        let d = self.dst.keys().chunk_id(&plain);
        self.learn(id, d);
        self.store(BlobKind::Data, d, &plain)?;
        Ok(d)
    }

    /// The destination id of a source tree, with everything below it stored.
    fn copy_tree(&mut self, id: TreeId) -> Result<TreeId> {
        if let Some(d) = self.trees.get(&id) {
            return Ok(*d);
        }
        if let Some(d) = self.map.get(&id.0).copied() {
            if self.dst_complete(d)? {
                self.trees.insert(id, TreeId(d));
                return Ok(TreeId(d));
            }
        }
        let tree = self.src.read_tree(&id)?;
        let keys = self.dst.keys().clone();
        let Some((d, bytes)) = reidentify_tree(tree, &keys, self)? else {
            return Err(Error::InvalidInput(format!(
                "tree {} cannot be re-identified",
                id.0.short()
            )));
        };
        self.store(BlobKind::Tree, d, &bytes)?;
        self.learn(id.0, d);
        self.trees.insert(id, TreeId(d));
        self.complete.insert(d);
        Ok(TreeId(d))
    }

    /// Whether destination tree `id` and every tree and chunk below it are in the destination.
    /// Reads destination trees only (metadata), never data.
    fn dst_complete(&mut self, id: BlobId) -> Result<bool> {
        if self.complete.contains(&id) {
            return Ok(true);
        }
        match self.dst.index().get(&id) {
            Some(loc) if loc.entry.kind == BlobKind::Tree => {}
            _ => return Ok(false),
        }
        let Ok(tree) = self.dst.read_tree(&TreeId(id)) else {
            return Ok(false);
        };
        for node in &tree.nodes {
            if !node.chunks().all(|c| self.has(&c)) {
                return Ok(false);
            }
            if let Some(sub) = node.subtree {
                if !self.dst_complete(sub.0)? {
                    return Ok(false);
                }
            }
        }
        self.complete.insert(id);
        Ok(true)
    }

    /// Saves a blob under the destination's keys unless the destination has it.
    fn store(&mut self, kind: BlobKind, id: BlobId, plain: &[u8]) -> Result<()> {
        if !self.saver.save(self.dst, kind, id, plain)? {
            return Ok(());
        }
        self.cur.blobs += 1;
        self.cur.data += plain.len() as u64;
        self.progress.blob_sent(plain.len() as u64);
        if self.saver.has_stored() && self.indexed.elapsed() >= INDEX_EVERY {
            // A checkpoint within a long snapshot: a copy killed later resends none of this.
            self.cur.bytes += self.saver.index_stored(self.dst)?;
            self.indexed = Instant::now();
            self.save_map(false);
        }
        Ok(())
    }

    /// Writes the open packs and names every written pack in an index file.
    fn commit_packs(&mut self) -> Result<()> {
        // Invariant (in the saver): every pack named is durable (put returned).
        self.cur.bytes += self.saver.commit(self.dst)?;
        self.indexed = Instant::now();
        Ok(())
    }
}

/// Gives the id in another repository of a chunk or a tree (repo-format.md §2: ids are keyed
/// per repository), or None when it has none.
pub(crate) trait Translate {
    /// The other repository's id of chunk `id`.
    fn chunk(&mut self, id: BlobId) -> Result<Option<BlobId>>;
    /// The other repository's id of tree `id` (everything below it translated).
    fn tree(&mut self, id: TreeId) -> Result<Option<TreeId>>;
}

/// Rewrites `tree` with the other repository's chunk and tree ids and encodes it (§7.2);
/// returns its id there (hashed with `keys`, the other repository's) and its bytes, or None
/// when some id below it has no translation. Copy translates into its destination this way,
/// `repair packs --from` out of its sibling.
pub(crate) fn reidentify_tree(
    mut tree: crate::tree::Tree,
    keys: &crate::crypto::MasterKeys,
    t: &mut impl Translate,
) -> Result<Option<(BlobId, Vec<u8>)>> {
    for node in &mut tree.nodes {
        for part in &mut node.content {
            if let Some(c) = part.0 {
                let Some(d) = t.chunk(c)? else {
                    return Ok(None);
                };
                part.0 = Some(d);
            }
        }
        if let Some(sub) = node.subtree {
            let Some(d) = t.tree(sub)? else {
                return Ok(None);
            };
            node.subtree = Some(d);
        }
    }
    let bytes = tree.encode()?;
    Ok(Some((keys.tree_id(&bytes), bytes)))
}

/// The pairs (blob id in `src` → blob id in `dst`) of the map file a copy from `src` into `dst`
/// left at `path`; empty when the file is missing, damaged or made for another pair. A hint
/// only: whoever uses an entry verifies it.
pub(crate) fn load_id_map(path: &Path, src: RepoId, dst: RepoId) -> HashMap<BlobId, BlobId> {
    IdMap::load(path, src, dst)
}

/// The local map file: `MAGIC`, source repository id, destination repository id, then
/// (source blob id, destination blob id) pairs, 64 bytes each. Anything else is ignored.
struct IdMap;

const MAGIC: &[u8; 16] = b"cairn copy map 1";
const HEADER_LEN: usize = MAGIC.len() + 2 * ID_LEN;
const RECORD_LEN: usize = 2 * ID_LEN;

impl IdMap {
    fn load(path: &Path, src: RepoId, dst: RepoId) -> HashMap<BlobId, BlobId> {
        let mut bytes = Vec::new();
        let ok = fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .is_ok();
        let mut out = HashMap::new();
        if !ok
            || bytes.len() < HEADER_LEN
            || (bytes.len() - HEADER_LEN) % RECORD_LEN != 0
            || &bytes[..MAGIC.len()] != MAGIC
            || bytes[MAGIC.len()..MAGIC.len() + ID_LEN] != src.0
            || bytes[MAGIC.len() + ID_LEN..HEADER_LEN] != dst.0
        {
            return out;
        }
        for rec in bytes[HEADER_LEN..].chunks_exact(RECORD_LEN) {
            let mut a = [0u8; ID_LEN];
            let mut b = [0u8; ID_LEN];
            a.copy_from_slice(&rec[..ID_LEN]);
            b.copy_from_slice(&rec[ID_LEN..]);
            out.insert(BlobId(a), BlobId(b));
        }
        out
    }

    /// Writes the entries whose destination blob is indexed, via a temporary file and rename.
    fn save(
        path: &Path,
        src: RepoId,
        dst_id: RepoId,
        map: &HashMap<BlobId, BlobId>,
        dst: &Repository,
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(HEADER_LEN + map.len() * RECORD_LEN);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&src.0);
        buf.extend_from_slice(&dst_id.0);
        for (a, b) in map {
            if dst.index().contains(b) {
                buf.extend_from_slice(&a.0);
                buf.extend_from_slice(&b.0);
            }
        }
        // Owner-only (0600 in a 0700 directory), like the rest of the cache.
        crate::backend::write_private_file(path, &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, FileKind};
    use crate::backup::{backup, BackupOptions, NoProgress};
    use crate::check::{check, CheckOptions, ReadData};
    use crate::testutil::{bytes, mem_repo as init};

    fn assert_clean(repo: &mut Repository) {
        let r = check(
            repo,
            &CheckOptions {
                read_data: ReadData::All,
                ..CheckOptions::default()
            },
        )
        .expect("check");
        assert!(r.ok(), "check: {:?}", r.errors);
    }

    #[test]
    fn a_stale_map_entry_never_skips_data_the_destination_lost() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("src");
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::write(dir.join("a"), bytes(1, 700_000)).expect("write");
        fs::write(dir.join("sub/b"), bytes(2, 300_000)).expect("write");
        let (_, mut src) = init(b"one");
        let opts = BackupOptions {
            paths: vec![dir.clone()],
            host: "h".into(),
            time_ns: 1,
            threads: 1,
            ..BackupOptions::default()
        };
        let s1 = backup(&mut src, &opts, &NoProgress).expect("backup");
        let snaps = src.snapshots().expect("snapshots");
        let (dst_backend, mut dst) = init(b"two");
        let copy_opts = CopyOptions {
            map_file: Some(tmp.path().join("map")),
            cancel: None,
        };
        let r = copy(&src, &mut dst, &snaps, &copy_opts, &NoCopyProgress).expect("copy");
        assert_eq!((r.copied, r.skipped), (1, 0));
        assert!(r.data_sent >= 1_000_000, "{r:?}");
        let first = r.snapshots[0].destination;
        assert_eq!(
            dst.read_snapshot(&first).expect("snap").copied_from,
            s1.snapshot_id
        );

        // Simulate a destination that forgot the snapshot and lost its data packs while an
        // unreferenced tree pack stayed (prune keeps packs below its repack threshold).
        dst.remove_snapshot(&first).expect("forget");
        for (pack, (_, entries)) in dst.entries_by_pack().expect("index") {
            if entries.iter().any(|e| e.kind == BlobKind::Data) {
                dst_backend
                    .delete(FileKind::Pack, &pack.to_hex())
                    .expect("delete");
            }
        }
        crate::check::repair::repair_index(&mut dst).expect("repair index");
        assert!(dst.index().blob_count() > 0, "trees stay indexed");

        // The map says every tree is there; the copy must notice the data is not.
        let r = copy(&src, &mut dst, &snaps, &copy_opts, &NoCopyProgress).expect("copy");
        assert_eq!((r.copied, r.skipped), (1, 0));
        assert!(r.data_sent >= 1_000_000, "data re-sent: {r:?}");
        assert_eq!(r.snapshots[0].blobs_sent as usize, {
            let n = dst.entries_by_pack().expect("index");
            n.values()
                .flat_map(|(_, e)| e)
                .filter(|e| e.kind == BlobKind::Data)
                .count()
        });
        assert_clean(&mut dst);

        // Once complete, a copy of the same snapshot is recognised and writes nothing.
        let before = dst_backend.total_size();
        let r = copy(&src, &mut dst, &snaps, &copy_opts, &NoCopyProgress).expect("copy");
        assert_eq!((r.copied, r.skipped, r.blobs_sent), (0, 1, 0));
        assert_eq!(dst_backend.total_size(), before);
    }

    /// Sets the cancel flag once `after` blobs were sent.
    struct CancelAfter {
        after: u64,
        sent: std::cell::Cell<u64>,
        flag: Arc<AtomicBool>,
    }

    impl CopyProgress for CancelAfter {
        fn blob_sent(&self, _len: u64) {
            self.sent.set(self.sent.get() + 1);
            if self.sent.get() >= self.after {
                self.flag.store(true, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn an_interrupted_copy_keeps_what_it_sent_for_the_next_run() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("src");
        fs::create_dir_all(&dir).expect("mkdir");
        // At least 4 chunks (2 MiB at most each), so the copy is stopped before its last one.
        fs::write(dir.join("a"), bytes(4, 8_000_000)).expect("write");
        let (_, mut src) = init(b"one");
        let opts = BackupOptions {
            paths: vec![dir.clone()],
            host: "h".into(),
            threads: 1,
            ..BackupOptions::default()
        };
        backup(&mut src, &opts, &NoProgress).expect("backup");
        let snaps = src.snapshots().expect("snapshots");
        let (_, mut dst) = init(b"two");
        let flag = Arc::new(AtomicBool::new(false));
        let copy_opts = CopyOptions {
            map_file: Some(tmp.path().join("map")),
            cancel: Some(flag.clone()),
        };
        let stop = CancelAfter {
            after: 3,
            sent: std::cell::Cell::new(0),
            flag: flag.clone(),
        };
        let e = copy(&src, &mut dst, &snaps, &copy_opts, &stop).expect_err("interrupted");
        assert!(matches!(e, Error::Interrupted), "{e}");
        assert!(dst.snapshots().expect("snapshots").is_empty());
        assert_eq!(dst.index().blob_count(), 3, "what was sent is indexed");
        assert_clean(&mut dst);

        flag.store(false, Ordering::Relaxed);
        let r = copy(&src, &mut dst, &snaps, &copy_opts, &NoCopyProgress).expect("copy");
        assert_eq!(r.copied, 1);
        let total = src.index().blob_count();
        assert_eq!(r.blobs_sent, total - 3, "{r:?}");
        assert!(
            r.data_read < 8_000_000,
            "sent chunks are not read again: {r:?}"
        );
        assert_clean(&mut dst);
    }

    #[test]
    fn a_garbled_map_file_is_ignored() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("src");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("a"), bytes(3, 200_000)).expect("write");
        let (_, mut src) = init(b"one");
        let opts = BackupOptions {
            paths: vec![dir.clone()],
            host: "h".into(),
            threads: 1,
            ..BackupOptions::default()
        };
        backup(&mut src, &opts, &NoProgress).expect("backup");
        let snaps = src.snapshots().expect("snapshots");
        let (_, mut dst) = init(b"two");
        let map = tmp.path().join("map");
        fs::write(&map, b"cairn copy map 1 and then garbage").expect("write");
        let copy_opts = CopyOptions {
            map_file: Some(map.clone()),
            cancel: None,
        };
        let r = copy(&src, &mut dst, &snaps, &copy_opts, &NoCopyProgress).expect("copy");
        assert_eq!(r.copied, 1);
        assert_clean(&mut dst);
        let saved = fs::read(&map).expect("map written");
        assert_eq!(&saved[..MAGIC.len()], MAGIC);
        assert_eq!((saved.len() - HEADER_LEN) % RECORD_LEN, 0);
        assert!(saved.len() > HEADER_LEN);
    }

    #[test]
    fn copying_into_the_same_repository_is_refused() {
        let (b, mut src) = init(b"one");
        let mut again = Repository::open(b, b"one").expect("open");
        again.load_index().expect("index");
        src.load_index().expect("index");
        let e = copy(
            &src,
            &mut again,
            &[],
            &CopyOptions::default(),
            &NoCopyProgress,
        )
        .expect_err("same repository");
        assert!(e.to_string().contains("same repository"), "{e}");
    }
}
