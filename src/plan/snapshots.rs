//! Which snapshots are a plan's, and how its targets' copies line up: a plan's snapshots are
//! those with its host and paths; the same snapshot on two targets (each repository has its
//! own keys, so their ids differ) is recognised by time, host and paths.

use std::collections::BTreeSet;

use crate::snapshot::Snapshot;

/// Whether `s` is one of a plan's snapshots: the same host and the same set of paths
/// (`paths` as recorded, i.e. absolute; order does not matter).
pub fn is_plan_snapshot(s: &Snapshot, host: &str, paths: &[String]) -> bool {
    if s.host != host || s.paths.len() != paths.len() {
        return false;
    }
    let mut a: Vec<&String> = s.paths.iter().collect();
    let mut b: Vec<&String> = paths.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// What identifies "the same snapshot" across repositories, whose ids differ: its time, host
/// and sorted paths.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotKey {
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
}

impl SnapshotKey {
    pub fn of(s: &Snapshot) -> SnapshotKey {
        let mut paths = s.paths.clone();
        paths.sort();
        SnapshotKey {
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths,
        }
    }
}

/// For each target's set of snapshots, the snapshots some other target has and it lacks,
/// oldest first.
pub fn missing(sets: &[BTreeSet<SnapshotKey>]) -> Vec<Vec<SnapshotKey>> {
    let union: BTreeSet<&SnapshotKey> = sets.iter().flatten().collect();
    sets.iter()
        .map(|own| {
            union
                .iter()
                .filter(|k| !own.contains(**k))
                .map(|k| (*k).clone())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: i64) -> SnapshotKey {
        SnapshotKey {
            time_ns: t,
            host: "h".into(),
            paths: vec!["/d".into()],
        }
    }

    #[test]
    fn missing_lists_what_other_targets_have() {
        let a: BTreeSet<_> = [key(1), key(2), key(3)].into_iter().collect();
        let b: BTreeSet<_> = [key(2), key(3), key(4)].into_iter().collect();
        let m = missing(&[a.clone(), b]);
        assert_eq!(m[0], vec![key(4)]);
        assert_eq!(m[1], vec![key(1)]);
        assert_eq!(missing(&[a]), vec![Vec::<SnapshotKey>::new()]);
    }
}
