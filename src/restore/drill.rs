//! Recovery drills: restore a sample (or all) of a snapshot to scratch space, verify every byte
//! against the snapshot, measure the throughput, and project how long restoring the whole
//! snapshot from this repository would take (the recovery time objective a DR plan needs).
//! Each result is sealed into `drills/` ([`record`]) so `drill --history` shows when recovery
//! was last proven; running a drill and recording it are separate steps, so a drill of a
//! read-only repository still proves recovery even though its result cannot be kept there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::crypto::ObjectKind;
use crate::error::Result;
use crate::format::{
    decode_object, encode_object, from_msgpack, to_msgpack_named, Compression, Expect,
};
use crate::id::{content_hash, SnapshotId};
use crate::repo::{backend_err, Repository};
use crate::restore::{restore, select_path, RestoreOptions, RestoreProgress};
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// How [`drill`] runs (`cairn drill`'s options).
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// Share of files (by count) to restore, 0 < p <= 100; 100 restores everything.
    pub sample_percent: f64,
    /// Scratch directory to restore into (must be empty or absent).
    pub target: PathBuf,
    /// Seeds the sample, so a drill can be repeated exactly.
    pub seed: u64,
    /// When the drill runs, nanoseconds since the Unix epoch; becomes [`DrillRecord::time_ns`].
    pub now_ns: i64,
    /// Name of the host running the drill; becomes [`DrillRecord::host`].
    pub host: String,
}

/// A drill's result, as stored (sealed MessagePack map, kind 9) in `drills/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The record format version; this build writes 1.
    pub version: u32,
    /// When the drill ran, nanoseconds since the Unix epoch (`time` in `cairn drill --json`).
    pub time_ns: i64,
    /// Name of the host the drill ran on.
    pub host: String,
    /// The snapshot drilled (`snapshot_id`).
    pub snapshot: SnapshotId,
    /// Share of the snapshot's files sampled, in percent (100: a full drill).
    pub sample_percent: f64,
    /// Regular files in the whole snapshot.
    pub files_total: u64,
    /// Bytes a restore of the whole snapshot writes (file sizes, holes included).
    pub bytes_total: u64,
    /// Sampled files restored, re-read and found equal to the snapshot.
    pub files_verified: u64,
    /// File content bytes restored and verified.
    pub bytes_verified: u64,
    /// Wall-clock time of the sample's restore and verification, in seconds.
    pub duration_s: f64,
    /// Bytes restored and verified per second.
    pub throughput_bps: f64,
    /// `bytes_total / throughput_bps`: projected time to restore the whole snapshot.
    pub projected_full_s: f64,
    /// True when every sampled file was restored and verified (`cairn drill` exits 0).
    pub ok: bool,
    /// Files that could not be restored or verified, with why.
    pub failures: Vec<String>,
}

/// What [`drill`] found: the record to keep, and each file that failed by its exact path in
/// the snapshot (the record's `failures` are text, for people).
#[derive(Clone, Debug)]
pub struct DrillOutcome {
    /// The result, ready for [`record`].
    pub record: DrillRecord,
    /// Each problem: the absolute path in the snapshot of the entry it concerns, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// A stable pseudo-random choice per path: the same seed picks the same files.
fn picked(seed: u64, path: &Path, percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
    let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    (v as f64 / u64::MAX as f64) * 100.0 < percent
}

/// Runs a drill of `snap`; writes nothing to the repository (see [`record`]).
pub fn drill(
    repo: &Repository,
    id: SnapshotId,
    snap: &Snapshot,
    opts: &DrillOptions,
    progress: &dyn RestoreProgress,
) -> Result<DrillOutcome> {
    let totals = crate::stats::stats(repo, &[snap.tree])?;
    // Choose the sample up front: at least one file when the snapshot has any.
    let mut chosen: HashSet<PathBuf> = HashSet::new();
    let mut first_file: Option<PathBuf> = None;
    crate::restore::walk(repo, snap.tree, Path::new("/"), &mut |path, node| {
        if node.kind == NodeKind::File {
            if first_file.is_none() {
                first_file = Some(path.to_path_buf());
            }
            if picked(opts.seed, path, opts.sample_percent) {
                chosen.insert(path.to_path_buf());
            }
        }
        Ok(())
    })?;
    if chosen.is_empty() {
        chosen.extend(first_file);
    }
    let chosen = Arc::new(chosen);
    let sel = chosen.clone();
    let ropts = RestoreOptions {
        target: opts.target.clone(),
        verify: true,
        select: Some(Arc::new(move |p: &Path, n: &Node| {
            n.kind == NodeKind::File && sel.contains(p)
        })),
        ..RestoreOptions::default()
    };
    let root = select_path(repo, snap.tree, "")?;
    let start = Instant::now();
    let out = restore(repo, &root, &ropts, progress)?;
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    let throughput = out.bytes as f64 / secs;
    let failed: Vec<(PathBuf, String)> = out
        .damaged
        .iter()
        .chain(&out.errors)
        .map(|e| (strip(&e.path, &opts.target), e.error.clone()))
        .collect();
    let failures = failed
        .iter()
        .map(|(p, e)| format!("{}: {e}", p.display()))
        .collect();
    let record = DrillRecord {
        version: 1,
        time_ns: opts.now_ns,
        host: opts.host.clone(),
        snapshot: id,
        sample_percent: opts.sample_percent,
        files_total: totals.files,
        bytes_total: totals.restore_size,
        files_verified: out.verified_files,
        bytes_verified: out.bytes,
        duration_s: secs,
        throughput_bps: throughput,
        projected_full_s: if throughput > 0.0 {
            totals.restore_size as f64 / throughput
        } else {
            0.0
        },
        ok: out.ok(),
        failures,
    };
    Ok(DrillOutcome { record, failed })
}

/// The snapshot path of a restored file.
fn strip(path: &Path, target: &Path) -> PathBuf {
    Path::new("/").join(path.strip_prefix(target).unwrap_or(path))
}

/// Seals a drill's result into `drills/`, for `drill --history` and `plan status`.
pub fn record(repo: &Repository, r: &DrillRecord) -> Result<()> {
    let plain = to_msgpack_named(r)?;
    let sealed = encode_object(
        repo.keys(),
        ObjectKind::Drill,
        &[],
        &plain,
        Compression::Auto,
    )?;
    let name = hex::encode(content_hash(&sealed));
    repo.backend()
        .put(FileKind::Drill, &name, &sealed)
        .map_err(backend_err(FileKind::Drill, &name))
}

/// Every readable drill record, oldest first.
pub fn history(repo: &Repository) -> Result<Vec<DrillRecord>> {
    let mut out = Vec::new();
    for (name, size) in repo.list(FileKind::Drill)? {
        if size == 0 || size > 1 << 20 {
            repo.warn(format!("ignoring drill record {name} ({size} bytes)"));
            continue;
        }
        let rec = repo
            .backend()
            .get(FileKind::Drill, &name)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                decode_object(
                    repo.keys(),
                    ObjectKind::Drill,
                    &[],
                    &b,
                    Expect::AtMost(1 << 20),
                )
                .map_err(|e| e.to_string())
            })
            .and_then(|p| {
                from_msgpack::<DrillRecord>(&p, "drill record").map_err(|e| e.to_string())
            });
        match rec {
            Ok(r) => out.push(r),
            Err(e) => repo.warn(format!("ignoring drill record {name}: {e}")),
        }
    }
    out.sort_by_key(|r| r.time_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_stable_and_roughly_proportional() {
        let paths: Vec<PathBuf> = (0..10_000)
            .map(|i| PathBuf::from(format!("/d/f{i}")))
            .collect();
        let n = paths.iter().filter(|p| picked(7, p, 10.0)).count();
        assert!((800..1200).contains(&n), "{n} of 10000 at 10%");
        let again = paths.iter().filter(|p| picked(7, p, 10.0)).count();
        assert_eq!(n, again);
        assert_ne!(
            paths
                .iter()
                .filter(|p| picked(7, p, 10.0))
                .collect::<Vec<_>>(),
            paths
                .iter()
                .filter(|p| picked(8, p, 10.0))
                .collect::<Vec<_>>()
        );
        assert!(paths.iter().all(|p| picked(1, p, 100.0)));
    }
}
