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
    /// The snapshot's time, in nanoseconds since the Unix epoch (one run gives every target
    /// the same).
    pub time_ns: i64,
    /// The host the snapshot records.
    pub host: String,
    /// The paths the snapshot records, sorted.
    pub paths: Vec<String>,
}

impl SnapshotKey {
    /// The key of snapshot `s`.
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

    fn snap(host: &str, paths: &[&str]) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "version": crate::snapshot::SNAPSHOT_VERSION,
            "time_ns": 0, "tz_offset_s": 0, "host": host, "user": "u", "uid": 0, "gid": 0,
            "paths": paths, "tags": [], "tree": vec![0u8; 32], "parent": null,
            "mode": "incremental", "program_version": "test", "summary": {},
        }))
        .expect("a valid snapshot")
    }

    #[test]
    fn a_plans_snapshots_have_its_host_and_exactly_its_paths_in_any_order() {
        let paths = ["/home/me/docs".to_string(), "/home/me/pics".to_string()];
        let yes = |s: &Snapshot| is_plan_snapshot(s, "laptop", &paths);
        assert!(yes(&snap("laptop", &["/home/me/docs", "/home/me/pics"])));
        assert!(yes(&snap("laptop", &["/home/me/pics", "/home/me/docs"])));
        assert!(!yes(&snap("desktop", &["/home/me/docs", "/home/me/pics"])));
        assert!(!yes(&snap("laptop", &["/home/me/docs"])), "fewer paths");
        assert!(!yes(&snap(
            "laptop",
            &["/home/me/docs", "/home/me/pics", "/tmp"]
        )));
        assert!(!yes(&snap("laptop", &["/home/me/docs", "/home/me/docs"])));
        assert!(!yes(&snap("laptop", &["/home/me/docs", "/home/me/pics/"])));
    }

    #[test]
    fn the_same_snapshot_on_two_targets_has_one_key_whatever_its_path_order() {
        let mut a = snap("h", &["/b", "/a"]);
        let mut b = snap("h", &["/a", "/b"]);
        a.time_ns = 7;
        b.time_ns = 7;
        assert_eq!(SnapshotKey::of(&a), SnapshotKey::of(&b));
        b.time_ns = 8;
        assert_ne!(SnapshotKey::of(&a), SnapshotKey::of(&b));
    }

    #[test]
    fn with_three_targets_each_lacks_the_union_minus_its_own() {
        let set = |ts: &[i64]| ts.iter().map(|t| key(*t)).collect::<BTreeSet<_>>();
        let m = missing(&[set(&[1, 2]), set(&[2, 3]), set(&[])]);
        assert_eq!(m[0], vec![key(3)]);
        assert_eq!(m[1], vec![key(1)]);
        assert_eq!(m[2], vec![key(1), key(2), key(3)], "oldest first");
        assert!(missing(&[]).is_empty());
    }
}
