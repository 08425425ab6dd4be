//! Changing snapshots after they were made: their tags (`cairn tag`) and their trees without
//! excluded paths (`cairn rewrite`, for a secret that should never have been backed up).
//!
//! A snapshot file is never edited: a changed snapshot is a new file whose `original` names
//! the one it was made from (repo-format.md §9). Invariants:
//! - A rewritten tree is in a durable pack named by a durable index file (through the one
//!   blob saver, `src/saver.rs`) before any snapshot names it (repo-format.md §10.2).
//! - A snapshot is removed only after every new snapshot of the same run is durable (its
//!   `put` returned), so a crash leaves the old snapshot, the new one, or both; never neither.
//! - A snapshot that would not change is left alone and keeps its id.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::backup::filter::Selection;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Known};
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, Tree};

/// The longest tag accepted, in bytes.
pub const MAX_TAG_LEN: usize = 256;

/// The tag `cairn rewrite` adds to the snapshots it writes (as `repair snapshots` adds
/// `repaired`).
pub const REWRITE_TAG: &str = "rewrite";

/// Checks a tag given on a command line: not empty, at most [`MAX_TAG_LEN`] bytes, no comma
/// (`forget --keep-tag T1,T2` splits on commas), no control characters, and no white space at
/// either end (`--keep-tag` trims it).
pub fn check_tag(tag: &str) -> Result<()> {
    let why = if tag.is_empty() {
        "is empty"
    } else if tag.len() > MAX_TAG_LEN {
        "is longer than 256 bytes"
    } else if tag.contains(',') {
        "contains a comma (forget --keep-tag T1,T2 reads a comma as between two tags)"
    } else if tag.chars().any(char::is_control) {
        "contains a control character"
    } else if tag.trim() != tag {
        "begins or ends with white space"
    } else {
        return Ok(());
    };
    Err(Error::InvalidInput(format!("tag {tag:?} {why}")))
}

/// What `cairn tag` does to each snapshot's tags: add some and remove some, or replace them
/// all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagEdit {
    /// Tags to add (`--add`), each once, after the tags already there.
    pub add: Vec<String>,
    /// Tags to remove (`--remove`), every occurrence.
    pub remove: Vec<String>,
    /// The tags to have instead of the present ones (`--set`); `Some(empty)` removes all.
    pub set: Option<Vec<String>>,
}

impl TagEdit {
    /// Builds an edit from `--add`, `--remove` and `--set` values, refusing bad tags, `--set`
    /// together with `--add` or `--remove`, a tag both added and removed, and no change at
    /// all. A `--set` value that is empty (`--set ''`) stands for no tag: given alone it
    /// removes every tag.
    pub fn new(add: Vec<String>, remove: Vec<String>, set: Vec<String>) -> Result<TagEdit> {
        if !set.is_empty() && (!add.is_empty() || !remove.is_empty()) {
            return Err(Error::InvalidInput(
                "--set replaces all tags and cannot be combined with --add or --remove".into(),
            ));
        }
        if add.is_empty() && remove.is_empty() && set.is_empty() {
            return Err(Error::InvalidInput(
                "no tag change given: use --add, --remove or --set".into(),
            ));
        }
        for t in add.iter().chain(&remove) {
            check_tag(t)?;
        }
        if let Some(t) = add.iter().find(|t| remove.contains(t)) {
            return Err(Error::InvalidInput(format!(
                "tag {t:?} is both added and removed"
            )));
        }
        let set = if set.is_empty() {
            None
        } else {
            let mut tags = Vec::new();
            for t in set.into_iter().filter(|t| !t.is_empty()) {
                check_tag(&t)?;
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            Some(tags)
        };
        Ok(TagEdit { add, remove, set })
    }

    /// The tags a snapshot tagged `tags` gets.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        if let Some(set) = &self.set {
            return set.clone();
        }
        let mut out: Vec<String> = tags
            .iter()
            .filter(|t| !self.remove.contains(t))
            .cloned()
            .collect();
        for t in &self.add {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// What [`change_tags`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagReport {
    /// (original, new) for each snapshot whose tags changed; the original is removed.
    pub changed: Vec<(SnapshotId, SnapshotId)>,
    /// Snapshots whose tags the edit would not change: left alone, with their ids.
    pub unchanged: Vec<SnapshotId>,
}

/// Applies `edit` to each of `snapshots`: a snapshot whose tags change is saved anew with
/// them (recording its id as `original`), and only then is it removed.
pub fn change_tags(
    repo: &Repository,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    edit: &TagEdit,
) -> Result<TagReport> {
    let mut rep = TagReport::default();
    for (id, mut snap) in snapshots {
        let tags = edit.apply(&snap.tags);
        if tags == snap.tags {
            rep.unchanged.push(id);
            continue;
        }
        snap.tags = tags;
        snap.original = Some(id);
        let new = repo.save_snapshot(&snap)?;
        // Invariant: the new snapshot is durable (its put returned) before the old one goes.
        repo.remove_snapshot(&id)?;
        rep.changed.push((id, new));
    }
    Ok(rep)
}

/// Entries counted below a path: what a removed entry took out of its snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Regular files (each path of a hard-linked file counted, as backup counts them).
    pub files: u64,
    /// Directories, the removed directory itself included.
    pub dirs: u64,
    /// Symbolic links, FIFOs, device nodes and sockets.
    pub other: u64,
    /// Size of the regular files, in bytes.
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.other += o.other;
        self.bytes += o.bytes;
    }
}

/// One entry a rewrite leaves out (with everything below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The entry's absolute path in the snapshot, as bytes.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: NodeKind,
    /// What is left out with it: itself and, for a directory, everything below it (as far
    /// as its trees can be read: a lost subtree counts as an empty directory).
    pub counts: Counts,
}

/// One snapshot [`rewrite_snapshots`] changed (or, in a dry run, would change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The snapshot rewritten.
    pub original: SnapshotId,
    /// Its rewritten copy; None in a dry run.
    pub new: Option<SnapshotId>,
    /// True when an earlier rewrite with the same result was found and used instead of
    /// writing another copy.
    pub existing: bool,
    /// The entries left out, outermost only, in tree order.
    pub removed: Vec<Removed>,
    /// The sum of the removed entries' counts.
    pub totals: Counts,
}

/// What [`rewrite_snapshots`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteReport {
    /// Snapshots holding excluded paths, in the order given.
    pub rewritten: Vec<Rewritten>,
    /// Snapshots holding no excluded path: left alone, with their ids.
    pub unchanged: Vec<SnapshotId>,
    /// Originals removed (with `forget`), after every new snapshot was durable.
    pub forgotten: Vec<SnapshotId>,
    /// New tree blobs stored.
    pub trees_added: u64,
}

/// What [`rewrite_snapshots`] should do.
#[derive(Clone, Debug)]
pub struct RewriteOptions {
    /// The paths to leave out (backup's `--exclude` patterns, matched the same way against the
    /// snapshot's absolute paths).
    pub exclude: Selection,
    /// Remove each rewritten original once every new snapshot is durable.
    pub forget: bool,
    /// Only work out what would be removed; write nothing.
    pub dry_run: bool,
}

/// Writes, for each of `snapshots` that holds a path `opts.exclude` matches, a new snapshot
/// without those paths: the same time, host, paths, parent and metadata of every other entry,
/// its id recorded as `original`, the tag [`REWRITE_TAG`] added, and its summary's counts of
/// what the snapshot holds (`total_files`, `total_bytes_processed`, `dirs`, `other_entries`)
/// reduced by what was left out; the counters of the backup run itself (`files_new`,
/// `bytes_read`, `data_added`, ...) stay as the backup recorded them.
///
/// `existing` is every snapshot in the repository: a snapshot already rewritten to the same
/// tree (an earlier run without `forget`) is not written again. Snapshots whose trees cannot
/// be read are an error before anything is written.
pub fn rewrite_snapshots(
    repo: &mut Repository,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    existing: &[(SnapshotId, Snapshot)],
    opts: &RewriteOptions,
) -> Result<RewriteReport> {
    let mut rep = RewriteReport::default();
    let mut filter = Filter {
        repo,
        exclude: &opts.exclude,
        memo: HashMap::new(),
        counted: HashMap::new(),
        new_trees: Vec::new(),
        new_ids: HashSet::new(),
    };
    let mut plans = Vec::new();
    for (id, snap) in snapshots {
        let (root, removed) = filter.tree(snap.tree, Path::new("/"))?;
        if removed.is_empty() {
            rep.unchanged.push(id);
            continue;
        }
        let mut totals = Counts::default();
        for r in &removed {
            totals.add(&r.counts);
        }
        plans.push((id, snap, root, removed, totals));
    }
    let new_trees = std::mem::take(&mut filter.new_trees);
    let mut out = Vec::new();
    for (id, snap, root, removed, totals) in plans {
        let new = rewritten(id, snap, root, &totals);
        let earlier = existing.iter().find(|(_, s)| same_rewrite(s, &new));
        out.push((
            new,
            Rewritten {
                original: id,
                new: earlier.map(|(e, _)| *e),
                existing: earlier.is_some(),
                removed,
                totals,
            },
        ));
    }
    if opts.dry_run {
        rep.rewritten = out
            .into_iter()
            .map(|(_, r)| Rewritten { new: None, ..r })
            .collect();
        return Ok(rep);
    }
    // Invariant: the new trees are in a durable pack and index before any snapshot names them.
    let mut saver = BlobSaver::new(repo, Known::IndexOrQueued);
    for (id, bytes) in &new_trees {
        if saver.save(repo, BlobKind::Tree, *id, bytes)? {
            rep.trees_added += 1;
        }
    }
    saver.commit(repo)?;
    for (snap, mut r) in out {
        if r.new.is_none() {
            r.new = Some(repo.save_snapshot(&snap)?);
        }
        rep.rewritten.push(r);
    }
    if opts.forget {
        // Invariant: every new snapshot of this run is durable before an original goes.
        for r in &rep.rewritten {
            repo.remove_snapshot(&r.original)?;
            rep.forgotten.push(r.original);
        }
    }
    Ok(rep)
}

/// The rewritten copy of snapshot `id` with root tree `root`.
fn rewritten(id: SnapshotId, mut snap: Snapshot, root: TreeId, removed: &Counts) -> Snapshot {
    snap.tree = root;
    snap.original = Some(id);
    if !snap.tags.iter().any(|t| t == REWRITE_TAG) {
        snap.tags.push(REWRITE_TAG.to_string());
    }
    let s = &mut snap.summary;
    s.total_files = s.total_files.saturating_sub(removed.files);
    s.total_bytes_processed = s.total_bytes_processed.saturating_sub(removed.bytes);
    s.dirs = s.dirs.saturating_sub(removed.dirs);
    s.other_entries = s.other_entries.saturating_sub(removed.other);
    snap
}

/// Whether `a` is `b` written already: the same snapshot in all but `program_version`.
fn same_rewrite(a: &Snapshot, b: &Snapshot) -> bool {
    Snapshot {
        program_version: b.program_version.clone(),
        ..a.clone()
    } == *b
}

/// The tree walk of a rewrite, shared by every snapshot of a run: a directory met again at
/// the same path (the same tree in the next snapshot) is filtered once.
struct Filter<'a> {
    repo: &'a Repository,
    exclude: &'a Selection,
    /// (tree, path) → (filtered tree, entries removed below).
    memo: HashMap<(TreeId, PathBuf), (TreeId, Vec<Removed>)>,
    /// What a removed subtree holds, by tree id.
    counted: HashMap<TreeId, Counts>,
    /// New trees to store, each once.
    new_trees: Vec<(BlobId, Vec<u8>)>,
    /// The ids in `new_trees`.
    new_ids: HashSet<BlobId>,
}

impl Filter<'_> {
    /// The id of `tree` (the directory at `path`) without excluded entries, and those entries.
    fn tree(&mut self, tree: TreeId, path: &Path) -> Result<(TreeId, Vec<Removed>)> {
        let key = (tree, path.to_path_buf());
        if let Some(done) = self.memo.get(&key) {
            return Ok(done.clone());
        }
        let t = self.repo.read_tree(&tree)?;
        let mut kept = Tree::default();
        let mut removed = Vec::new();
        for mut n in t.nodes {
            let p = path.join(OsStr::from_bytes(&n.name));
            if !self.exclude.accepts(&p) {
                let counts = self.count(&n);
                removed.push(Removed {
                    path: p.into_os_string().into_vec(),
                    kind: n.kind,
                    counts,
                });
                continue;
            }
            if let Some(sub) = n.subtree {
                let (id, below) = self.tree(sub, &p)?;
                n.subtree = Some(id);
                removed.extend(below);
            }
            kept.nodes.push(n);
        }
        let id = if removed.is_empty() {
            tree
        } else {
            let bytes = kept.encode()?;
            let id = self.repo.keys().tree_id(&bytes);
            if self.new_ids.insert(id) {
                self.new_trees.push((id, bytes));
            }
            TreeId(id)
        };
        self.memo.insert(key, (id, removed.clone()));
        Ok((id, removed))
    }

    /// What a removed node takes out: itself and everything below it that can be read.
    fn count(&mut self, n: &Node) -> Counts {
        let mut c = Counts::default();
        match n.kind {
            NodeKind::File => {
                c.files = 1;
                c.bytes = n.size;
            }
            NodeKind::Dir => {
                c.dirs = 1;
                if let Some(sub) = n.subtree {
                    c.add(&self.count_tree(sub));
                }
            }
            _ => c.other = 1,
        }
        c
    }

    fn count_tree(&mut self, tree: TreeId) -> Counts {
        if let Some(c) = self.counted.get(&tree) {
            return *c;
        }
        let mut c = Counts::default();
        // A removed subtree that cannot be read is being removed anyway: it counts as empty.
        if let Ok(t) = self.repo.read_tree(&tree) {
            for n in &t.nodes {
                c.add(&self.count(n));
            }
        }
        self.counted.insert(tree, c);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{backup, BackupOptions, NoProgress};
    use crate::testutil::{bytes, mem_repo};

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_edits_add_once_remove_every_copy_and_set_replaces() {
        let have = tags(&["a", "b", "a"]);
        let e = TagEdit::new(tags(&["c", "b"]), tags(&["a"]), vec![]).expect("test");
        assert_eq!(e.apply(&have), tags(&["b", "c"]));
        let e = TagEdit::new(vec![], vec![], tags(&["x", "y", "x"])).expect("test");
        assert_eq!(e.apply(&have), tags(&["x", "y"]));
        let e = TagEdit::new(vec![], vec![], tags(&[""])).expect("test");
        assert_eq!(e.apply(&have), Vec::<String>::new(), "--set '' clears");
        let e = TagEdit::new(vec![], tags(&["zz"]), vec![]).expect("test");
        assert_eq!(
            e.apply(&have),
            have,
            "removing an absent tag changes nothing"
        );
    }

    #[test]
    fn contradictory_empty_or_malformed_tag_edits_are_refused() {
        let bad = [
            (tags(&["a"]), vec![], tags(&["b"])),
            (vec![], tags(&["a"]), tags(&["b"])),
            (vec![], vec![], vec![]),
            (tags(&["a"]), tags(&["a"]), vec![]),
            (tags(&[""]), vec![], vec![]),
            (tags(&["a,b"]), vec![], vec![]),
            (vec![], tags(&["tab\there"]), vec![]),
            (tags(&[" lead"]), vec![], vec![]),
            (vec![], vec![], tags(&["ok", "new\nline"])),
            (vec!["x".repeat(MAX_TAG_LEN + 1)], vec![], vec![]),
        ];
        for (add, remove, set) in bad {
            let what = format!("{add:?} {remove:?} {set:?}");
            match TagEdit::new(add, remove, set) {
                Err(Error::InvalidInput(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(check_tag(&"x".repeat(MAX_TAG_LEN)).is_ok());
        assert!(check_tag("daily-ü").is_ok());
    }

    /// A source tree backed up twice (the second time with one more file), in a fresh
    /// repository.
    fn two_snapshots() -> (tempfile::TempDir, Repository, Vec<(SnapshotId, Snapshot)>) {
        let (dir, _, repo, snaps) = two_snapshots_in_memory();
        (dir, repo, snaps)
    }

    /// [`two_snapshots`], with the repository's backend.
    fn two_snapshots_in_memory() -> (
        tempfile::TempDir,
        std::sync::Arc<crate::backend::MemBackend>,
        Repository,
        Vec<(SnapshotId, Snapshot)>,
    ) {
        let (backend, mut repo) = mem_repo(b"pw");
        let dir = tempfile::tempdir().expect("test");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("keys/deep")).expect("test");
        std::fs::create_dir_all(src.join("docs")).expect("test");
        std::fs::write(src.join("keys/id_rsa"), bytes(1, 3000)).expect("test");
        std::fs::write(src.join("keys/deep/x"), b"12345").expect("test");
        std::fs::write(src.join("docs/secret.txt"), b"hunter2").expect("test");
        std::fs::write(src.join("docs/readme"), b"hello").expect("test");
        let opts = BackupOptions {
            paths: vec![src.clone()],
            host: "h".into(),
            threads: 1,
            ..BackupOptions::default()
        };
        backup(&mut repo, &opts, &NoProgress).expect("test");
        std::fs::write(src.join("docs/more"), b"more").expect("test");
        let opts = BackupOptions { time_ns: 1, ..opts };
        backup(&mut repo, &opts, &NoProgress).expect("test");
        let snaps = repo.snapshots().expect("test");
        assert_eq!(snaps.len(), 2);
        (dir, backend, repo, snaps)
    }

    fn exclude(patterns: &[&str]) -> Selection {
        Selection::new(&[], &tags(patterns), &[]).expect("test")
    }

    fn names(repo: &Repository, tree: TreeId, path: &Path, out: &mut Vec<String>) {
        for n in repo.read_tree(&tree).expect("test").nodes {
            let p = path.join(OsStr::from_bytes(&n.name));
            out.push(p.display().to_string());
            if let Some(sub) = n.subtree {
                names(repo, sub, &p, out);
            }
        }
    }

    #[test]
    fn a_rewrite_leaves_out_matching_paths_and_counts_what_went() {
        let (dir, mut repo, snaps) = two_snapshots();
        let src = dir.path().join("src");
        let opts = RewriteOptions {
            exclude: exclude(&["secret.txt", &format!("{}/keys", src.display())]),
            forget: false,
            dry_run: false,
        };
        let rep = rewrite_snapshots(&mut repo, snaps.clone(), &snaps, &opts).expect("test");
        assert_eq!(rep.rewritten.len(), 2);
        assert!(rep.unchanged.is_empty() && rep.forgotten.is_empty());
        for (r, (old, old_snap)) in rep.rewritten.iter().zip(&snaps) {
            assert_eq!(r.original, *old);
            let removed: Vec<String> = r
                .removed
                .iter()
                .map(|x| String::from_utf8_lossy(&x.path).into_owned())
                .collect();
            let want = [
                format!("{}/docs/secret.txt", src.display()),
                format!("{}/keys", src.display()),
            ];
            assert_eq!(removed, want);
            assert_eq!(
                r.totals,
                Counts {
                    files: 3,
                    dirs: 2,
                    other: 0,
                    bytes: 3000 + 5 + 7
                }
            );
            let new = repo.read_snapshot(&r.new.expect("written")).expect("test");
            assert_eq!(new.original, Some(*old));
            assert_eq!(new.time_ns, old_snap.time_ns);
            assert!(new.tags.contains(&REWRITE_TAG.to_string()));
            assert_eq!(new.summary.total_files, old_snap.summary.total_files - 3);
            assert_eq!(new.summary.dirs, old_snap.summary.dirs - 2);
            assert_eq!(new.summary.files_new, old_snap.summary.files_new);
            let mut seen = Vec::new();
            names(&repo, new.tree, Path::new("/"), &mut seen);
            assert!(seen.iter().any(|p| p.ends_with("docs/readme")), "{seen:?}");
            assert!(
                !seen
                    .iter()
                    .any(|p| p.contains("secret") || p.contains("keys")),
                "{seen:?}"
            );
        }
        // The originals stay (no forget); running again finds the earlier rewrites.
        let all = repo.snapshots().expect("test");
        assert_eq!(all.len(), 4);
        let again = rewrite_snapshots(&mut repo, snaps.clone(), &all, &opts).expect("test");
        assert!(again.rewritten.iter().all(|r| r.existing));
        assert_eq!(again.trees_added, 0);
        assert_eq!(repo.snapshots().expect("test").len(), 4, "no duplicates");
    }

    #[test]
    fn a_snapshot_without_excluded_paths_keeps_its_id_and_a_dry_run_writes_nothing() {
        let (_dir, mut repo, snaps) = two_snapshots();
        let opts = RewriteOptions {
            exclude: exclude(&["more"]),
            forget: true,
            dry_run: true,
        };
        let rep = rewrite_snapshots(&mut repo, snaps.clone(), &snaps, &opts).expect("test");
        assert_eq!(rep.unchanged, vec![snaps[0].0]);
        assert_eq!(rep.rewritten.len(), 1);
        assert_eq!(rep.rewritten[0].new, None);
        assert!(rep.forgotten.is_empty());
        assert_eq!(
            repo.snapshots().expect("test"),
            snaps,
            "dry run wrote nothing"
        );

        let opts = RewriteOptions {
            dry_run: false,
            ..opts
        };
        let rep = rewrite_snapshots(&mut repo, snaps.clone(), &snaps, &opts).expect("test");
        assert_eq!(rep.forgotten, vec![snaps[1].0]);
        let now: Vec<SnapshotId> = repo
            .snapshots()
            .expect("test")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert!(now.contains(&snaps[0].0), "unchanged one kept its id");
        assert!(!now.contains(&snaps[1].0), "original forgotten");
        assert!(now.contains(&rep.rewritten[0].new.expect("written")));
    }

    #[test]
    fn a_tag_change_replaces_the_snapshot_and_an_unchanged_one_keeps_its_id() {
        let (_dir, repo, snaps) = two_snapshots();
        let edit = TagEdit::new(tags(&["keep"]), vec![], vec![]).expect("test");
        let rep = change_tags(&repo, snaps[..1].to_vec(), &edit).expect("test");
        assert_eq!(rep.changed.len(), 1);
        let (old, new) = rep.changed[0];
        let s = repo.read_snapshot(&new).expect("test");
        assert_eq!((s.tags.clone(), s.original), (tags(&["keep"]), Some(old)));
        assert!(repo.read_snapshot(&old).is_err(), "original removed");
        let again = change_tags(&repo, vec![(new, s)], &edit).expect("test");
        assert_eq!(again.unchanged, vec![new]);
        assert!(again.changed.is_empty());
    }

    /// Every tree and chunk a snapshot names is in the index and readable.
    fn assert_complete(repo: &Repository, tree: TreeId) {
        for n in repo
            .read_tree(&tree)
            .expect("a tree the snapshot names")
            .nodes
        {
            assert!(
                n.chunks().all(|c| repo.index().contains(&c)),
                "chunk missing"
            );
            if let Some(sub) = n.subtree {
                assert_complete(repo, sub);
            }
        }
    }

    /// A crash at every write of `rewrite --forget` and of a tag change: each original
    /// survives, or its replacement does (complete, its trees indexed); never neither.
    #[test]
    fn a_crash_at_any_write_leaves_each_snapshot_or_its_replacement() {
        use crate::backend::{Backend, FaultBackend};
        for tagging in [false, true] {
            for crash_at in 0.. {
                let (_dir, mem, _, snaps) = two_snapshots_in_memory();
                let fault = std::sync::Arc::new(FaultBackend::new(mem.clone(), crash_at));
                let mut repo = Repository::open(fault.clone(), b"pw").expect("test");
                repo.load_index().expect("test");
                let result = if tagging {
                    let edit = TagEdit::new(tags(&["t"]), vec![], vec![]).expect("test");
                    change_tags(&repo, snaps.clone(), &edit).map(|_| ())
                } else {
                    let opts = RewriteOptions {
                        exclude: exclude(&["secret.txt", "keys"]),
                        forget: true,
                        dry_run: false,
                    };
                    rewrite_snapshots(&mut repo, snaps.clone(), &snaps, &opts).map(|_| ())
                };
                assert_eq!(result.is_err(), fault.crashed(), "crash at {crash_at}");
                let inner: std::sync::Arc<dyn Backend> = mem;
                let mut after = Repository::open(inner, b"pw").expect("test");
                after.load_index().expect("test");
                let now = after.snapshots().expect("test");
                for (old, _) in &snaps {
                    let present = now
                        .iter()
                        .any(|(id, s)| id == old || s.original == Some(*old));
                    assert!(
                        present,
                        "crash at {crash_at}: {} and its copy lost",
                        old.short()
                    );
                }
                for (_, s) in &now {
                    assert_complete(&after, s.tree);
                }
                if !fault.crashed() {
                    assert!(crash_at > 1, "the run writes something");
                    assert!(now.iter().all(|(_, s)| s.original.is_some()));
                    break;
                }
            }
        }
    }
}
