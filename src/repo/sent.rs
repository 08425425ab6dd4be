//! The local record of what a put-only key sent from this machine (repo-format.md §10.6).
//!
//! A put-only key cannot read the index, the snapshots or the trees it wrote (they are sealed
//! to the repository's public key). To deduplicate and to skip unchanged files it keeps, in
//! this machine's cache directory, the plaintext of the index files, trees and snapshots it
//! wrote, and never reads them back from the repository. An entry counts only while the
//! repository still lists the file it describes: an index file whose name is gone (a prune
//! rewrote the index), a pack that is gone, or a snapshot that was forgotten is ignored, so the
//! record can never make a backup reference data the repository no longer holds.
//!
//! Layout: `<dir>/index/<id>`, `<dir>/trees/<id>`, `<dir>/snapshots/<id>`, each the MessagePack
//! plaintext of the object as sealed (an index file, a tree encoding, a snapshot), written to a
//! temporary name and renamed into place; directories `0700`, files `0600`.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Repository;
use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::format::from_msgpack;
use crate::id::{IndexId, SnapshotId, TreeId};
use crate::index::{Index, IndexFile};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// Largest record file read back (index files and snapshots are bounded alike in the
/// repository; repo-format.md §4.5).
const MAX_RECORD_FILE: u64 = crate::format::MAX_METADATA_LEN as u64;

/// Where the record lives: a directory of this machine's cache.
#[derive(Clone, Debug)]
pub(crate) struct SentRecord {
    dir: PathBuf,
}

impl SentRecord {
    fn path(&self, kind: &str, name: &str) -> PathBuf {
        self.dir.join(kind).join(name)
    }

    /// Writes one entry (temporary name, then rename), unless it is there already.
    fn put(&self, kind: &str, name: &str, plain: &[u8]) -> std::io::Result<()> {
        let path = self.path(kind, name);
        if path.is_file() {
            return Ok(());
        }
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = self.dir.join(kind);
        // Plaintext names and metadata: for this user only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(plain)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    }

    fn get(&self, kind: &str, name: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path(kind, name);
        let len = fs::metadata(&path)?.len();
        if len > MAX_RECORD_FILE {
            return Err(std::io::Error::other(format!(
                "{} is {len} bytes, more than any record can be",
                path.display()
            )));
        }
        fs::read(path)
    }

    /// Names in one of the record's directories (missing: none).
    fn names(&self, kind: &str) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.dir.join(kind)) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }
}

impl Repository {
    /// Keeps a put-only key's record of what it sends in `dir` (this repository's directory of
    /// the local cache, `put-only/` in it); without one, a put-only backup deduplicates only
    /// within itself and reads every file. Does nothing for a full key.
    pub fn use_sent_record(&mut self, dir: &Path) {
        if self.keys.is_put_only() {
            self.sent = Some(SentRecord {
                dir: dir.to_path_buf(),
            });
        }
    }

    /// A put-only key's index: the packs its record names that the repository still lists,
    /// from index files the repository still lists (repo-format.md §10.6).
    pub(super) fn load_sent_index(&mut self) -> Result<()> {
        let mut index = Index::new();
        let mut ids = Vec::new();
        if let Some(record) = self.sent.clone() {
            let listed: HashSet<String> = self.list_names(FileKind::Index)?.into_iter().collect();
            let packs: HashSet<String> = self.list_names(FileKind::Pack)?.into_iter().collect();
            for name in record.names("index") {
                if !listed.contains(&name) {
                    continue;
                }
                let file: IndexFile = match record
                    .get("index", &name)
                    .map_err(|e| e.to_string())
                    .and_then(|b| from_msgpack(&b, &name).map_err(|e| e.to_string()))
                {
                    Ok(f) => f,
                    Err(e) => {
                        self.warn(format!(
                            "ignoring this machine's record of index file {name}: {e}"
                        ));
                        continue;
                    }
                };
                let Some(id) = IndexId::from_hex(&name) else {
                    continue;
                };
                let kept = IndexFile {
                    supersedes: Vec::new(),
                    packs: file
                        .packs
                        .into_iter()
                        .filter(|p| packs.contains(&p.id.to_hex()))
                        .collect(),
                };
                index
                    .add_index_file(id, &kept)
                    .map_err(|source| Error::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                ids.push(id);
            }
        }
        self.index = index;
        self.index_files = ids;
        Ok(())
    }

    /// Records an index file a put-only key wrote (after it is durable in the repository).
    pub(super) fn record_sent_index(&self, id: &IndexId, plain: &[u8]) {
        self.record("index", &id.to_hex(), plain);
    }

    /// Records a snapshot a put-only key wrote (after it is durable in the repository).
    pub(super) fn record_sent_snapshot(&self, id: &SnapshotId, plain: &[u8]) {
        self.record("snapshots", &id.to_hex(), plain);
    }

    /// Records a tree a put-only key's backup made. It counts only once an index file the
    /// record holds names it ([`Self::read_tree`] looks it up in the index first).
    pub fn record_sent_tree(&self, id: &TreeId, encoding: &[u8]) {
        self.record("trees", &id.0.to_hex(), encoding);
    }

    fn record(&self, kind: &str, name: &str, plain: &[u8]) {
        if let Some(r) = &self.sent {
            if let Err(e) = r.put(kind, name, plain) {
                self.warn(format!(
                    "this machine's record of what it sent ({}) could not be written: {e}; the next backup sends more than it must",
                    r.dir.display()
                ));
            }
        }
    }

    /// A put-only key's snapshots: those its record holds that the repository still lists,
    /// oldest first.
    pub(super) fn sent_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let Some(record) = &self.sent else {
            return Ok(Vec::new());
        };
        let listed: HashSet<String> = self.list_names(FileKind::Snapshot)?.into_iter().collect();
        let mut out = Vec::new();
        for name in record.names("snapshots") {
            let Some(id) = SnapshotId::from_hex(&name) else {
                continue;
            };
            if !listed.contains(&name) {
                continue;
            }
            match record
                .get("snapshots", &name)
                .map_err(|e| e.to_string())
                .and_then(|b| from_msgpack::<Snapshot>(&b, &name).map_err(|e| e.to_string()))
            {
                Ok(s) => out.push((id, s)),
                Err(e) => self.warn(format!(
                    "ignoring this machine's record of snapshot {}: {e}",
                    id.short()
                )),
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// A tree a put-only key sent, from its record: only when its index names it.
    pub(super) fn sent_tree(&self, id: &TreeId) -> Result<Tree> {
        let refused = || Error::PutOnly("read a tree it did not send from this machine".into());
        let record = self.sent.as_ref().ok_or_else(refused)?;
        if !self.index.contains(&id.0) {
            return Err(refused());
        }
        let plain = record.get("trees", &id.0.to_hex()).map_err(|_| refused())?;
        // The record is this machine's own; still, a tree that does not hash to its id is not
        // used.
        if self.keys.tree_id(&plain) != id.0 {
            return Err(Error::corrupt(
                format!("this machine's record of tree {}", id.0.short()),
                "its content does not hash to its id",
            ));
        }
        Tree::decode(&plain, id)
    }
}
