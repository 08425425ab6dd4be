//! Snapshots: writing, reading (a later format named as such), listing, and selecting one by
//! `latest`, id or prefix through a [`SnapshotFilter`].

use super::{backend_err, Repository};
use crate::backend::FileKind;
use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{encode_object, from_msgpack, to_msgpack_named};
use crate::id::{content_hash, SnapshotId};
use crate::snapshot::{Snapshot, SNAPSHOT_VERSION};

impl Repository {
    /// Writes a snapshot durably. Invariant: every blob it references is in a durable index file.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let plain = to_msgpack_named(snap)?;
        let sealed = encode_object(
            &self.keys,
            ObjectKind::Snapshot,
            &[],
            &plain,
            self.compression,
        )?;
        let id = SnapshotId(content_hash(&sealed));
        self.backend
            .put(FileKind::Snapshot, &id.to_hex(), &sealed)
            .map_err(backend_err(FileKind::Snapshot, &id.to_hex()))?;
        self.record_sent_snapshot(&id, &plain);
        Ok(id)
    }

    /// Removes a snapshot file (its data stays until `prune`).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.require_full_key("delete snapshots")?;
        let name = id.to_hex();
        self.backend
            .delete(FileKind::Snapshot, &name)
            .map_err(backend_err(FileKind::Snapshot, &name))
    }

    /// Reads a snapshot; its `version` alone first, so that a snapshot of a later format is
    /// named as such even when it no longer parses as this one (repo-format.md §9, §12).
    pub fn read_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        if self.is_put_only() {
            return self
                .sent_snapshots()?
                .into_iter()
                .find(|(i, _)| i == id)
                .map(|(_, s)| s)
                .ok_or_else(|| {
                    Error::PutOnly(format!(
                        "read snapshot {}, which this machine's record does not hold",
                        id.short()
                    ))
                });
        }
        let name = id.to_hex();
        let path = FileKind::Snapshot.path(&name);
        let plain = self.read_sealed_plain(FileKind::Snapshot, ObjectKind::Snapshot, &name)?;
        let v: VersionOnly = from_msgpack(&plain, &path)?;
        if v.version == 0 {
            return Err(Error::corrupt(path, "snapshot version 0"));
        }
        if v.version > SNAPSHOT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: format!("snapshot {}", id.short()),
                found: v.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        from_msgpack(&plain, &path)
    }

    /// Every readable snapshot, oldest first. Damaged ones (and ones of a later format) are
    /// skipped with a warning.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (out, skipped) = self.snapshots_and_skipped()?;
        for (id, e) in skipped {
            self.warn(format!("skipping snapshot {}: {e}", id.short()));
        }
        Ok(out)
    }

    /// The readable snapshots, oldest first, and why the others could not be read.
    fn snapshots_and_skipped(&self) -> Result<SnapshotsAndSkipped> {
        if self.is_put_only() {
            // Only what this machine sent, from its own record (repo-format.md §10.6).
            return Ok((self.sent_snapshots()?, Vec::new()));
        }
        let listed = self.list(FileKind::Snapshot)?;
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (name, size) in listed {
            let Some(id) = SnapshotId::from_hex(&name) else {
                continue;
            };
            if size > 16 << 20 {
                skipped.push((
                    id,
                    Error::corrupt(
                        FileKind::Snapshot.path(&name),
                        format!("{size} bytes is more than any snapshot can be"),
                    ),
                ));
                continue;
            }
            match self.read_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) => skipped.push((id, e)),
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok((out, skipped))
    }

    /// Resolves `latest`, a full id or a unique prefix of ≥ 4 hex digits.
    pub fn find_snapshot(
        &self,
        selector: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        let (all, mut skipped) = self.snapshots_and_skipped()?;
        let result = select_snapshot(all, selector, filter);
        if matches!(result, Err(Error::SnapshotNotFound(_))) && selector != "latest" {
            // An id of exactly one snapshot that could not be read: say why, not "no snapshot".
            let sel = selector.to_ascii_lowercase();
            let hits: Vec<usize> = (0..skipped.len())
                .filter(|&i| skipped[i].0.to_hex().starts_with(&sel))
                .collect();
            if let [i] = hits[..] {
                return Err(skipped.swap_remove(i).1);
            }
        }
        if matches!(result, Err(Error::SnapshotNotFound(_))) && selector == "latest" {
            // The latest may be among the unreadable ones: say why, not only "no snapshot".
            if let Some((id, e)) = skipped.first() {
                let n = skipped.len();
                return Err(Error::InvalidInput(format!(
                    "no readable snapshot matches \"latest\": {n} snapshot file{} could not be \
                     read (snapshot {}: {e})",
                    if n == 1 { "" } else { "s" },
                    id.short()
                )));
            }
        }
        for (id, e) in skipped {
            self.warn(format!("skipping snapshot {}: {e}", id.short()));
        }
        result
    }
}

/// Readable snapshots, and the ones that could not be read with why.
type SnapshotsAndSkipped = (Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, Error)>);

/// Narrows `latest` to snapshots of a host, with a tag, or of a path.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// `--host` values: the snapshot's host must be one of them; empty: any host.
    pub hosts: Vec<String>,
    /// `--tag` values: the snapshot must have at least one of them; empty: any tags.
    pub tags: Vec<String>,
    /// `--path` values: the snapshot's paths must include every one, compared as strings;
    /// empty: any paths.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes all three conditions (docs/cli.md "Snapshot selectors and
    /// filters"). The default filter matches every snapshot.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}

/// Picks one snapshot from `all` (oldest first) by selector.
pub fn select_snapshot(
    all: Vec<(SnapshotId, Snapshot)>,
    selector: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot)> {
    if selector == "latest" {
        return all
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)))
            .ok_or_else(|| Error::SnapshotNotFound(selector.to_string()));
    }
    let sel = selector.to_ascii_lowercase();
    if sel.len() < 4 || sel.len() > 64 || !sel.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "snapshot selector {selector:?} is not `latest`, an id, or a prefix of at least 4 hex digits"
        )));
    }
    let mut hits: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&sel))
        .collect();
    match hits.len() {
        0 => Err(Error::SnapshotNotFound(selector.to_string())),
        1 => Ok(hits.remove(0)),
        n => Err(Error::SnapshotAmbiguous {
            selector: selector.to_string(),
            count: n,
        }),
    }
}
