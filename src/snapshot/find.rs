//! Finding entries by glob across snapshots (`cairn find`).
//!
//! Patterns follow restic's `find`: a pattern without `/` matches an entry's name, a pattern
//! with `/` matches its path (anchored at the snapshot root when it starts with `/`, otherwise
//! any trailing run of path components). `*` and `?` never cross `/`; `**` does.
//!
//! Invariant: a tree is loaded and searched at most once per [`Finder`] for each place its
//! result can differ. With name patterns only, a subtree's matches do not depend on where it
//! sits, so they are kept by tree id alone; with a path pattern they are kept by tree id and
//! the path of the directory. A hundred snapshots of the same tree thus cost one search plus
//! a hundred cache look-ups.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Timestamp};

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    /// Glob patterns; an entry matches when any of them does.
    pub patterns: Vec<String>,
    /// Compare names and paths without regard to case.
    pub ignore_case: bool,
    /// Only entries modified at or before this time.
    pub newest: Option<Timestamp>,
    /// Only entries modified at or after this time.
    pub oldest: Option<Timestamp>,
}

/// One matching entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Absolute path in the snapshot, from its root `/` (bytes; names need not be UTF-8).
    pub path: PathBuf,
    /// What the entry is.
    pub kind: NodeKind,
    /// Content length (files), target length (symlinks), 0 otherwise.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// A match below some directory, its path relative to that directory.
#[derive(Clone, Debug)]
struct Rel {
    rel: Vec<u8>,
    kind: NodeKind,
    size: u64,
    mtime: Timestamp,
    mode: u32,
}

/// Compiled patterns and bounds.
struct Matcher {
    names: GlobSet,
    paths: GlobSet,
    newest: Option<Timestamp>,
    oldest: Option<Timestamp>,
}

impl Matcher {
    fn new(opts: &FindOptions) -> Result<Matcher> {
        if opts.patterns.is_empty() {
            return Err(Error::InvalidInput(
                "find needs at least one pattern".into(),
            ));
        }
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in &opts.patterns {
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "pattern {p:?} matches no entry: give a name or a path (the root `/` is not listed)"
                )));
            }
            let (set, glob) = if trimmed.contains('/') {
                // Paths are matched without their leading `/`; an unanchored pattern may
                // match any trailing run of components.
                let glob = match trimmed.strip_prefix('/') {
                    Some(anchored) => anchored.trim_start_matches('/').to_string(),
                    None => format!("**/{trimmed}"),
                };
                (&mut paths, glob)
            } else {
                (&mut names, trimmed.to_string())
            };
            let g = GlobBuilder::new(&glob)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(opts.ignore_case)
                .build()
                .map_err(|e| Error::InvalidInput(format!("pattern {p:?}: {e}")))?;
            set.add(g);
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("patterns: {e}")))
        };
        if let (Some(n), Some(o)) = (opts.newest, opts.oldest) {
            if n < o {
                return Err(Error::InvalidInput(
                    "--newest is before --oldest: no entry can match".into(),
                ));
            }
        }
        Ok(Matcher {
            names: build(names)?,
            paths: build(paths)?,
            newest: opts.newest,
            oldest: opts.oldest,
        })
    }

    fn has_path_patterns(&self) -> bool {
        !self.paths.is_empty()
    }

    /// `path` is the entry's absolute path without the leading `/`.
    fn matches(&self, node: &Node, path: &[u8]) -> bool {
        if self.newest.is_some_and(|n| node.mtime > n)
            || self.oldest.is_some_and(|o| node.mtime < o)
        {
            return false;
        }
        (!self.names.is_empty()
            && self
                .names
                .is_match_candidate(&Candidate::new(OsStr::from_bytes(&node.name))))
            || (!self.paths.is_empty()
                && self
                    .paths
                    .is_match_candidate(&Candidate::new(OsStr::from_bytes(path))))
    }
}

/// A subtree's id, and its path when a path pattern makes its matches depend on it.
type CacheKey = (TreeId, Option<Vec<u8>>);

/// Searches snapshot trees, remembering each subtree's result (see the module docs).
pub struct Finder<'r> {
    repo: &'r Repository,
    matcher: Matcher,
    /// Matches below a tree, relative to it, by tree id (and the tree's path without its
    /// leading `/` when a path pattern makes the result depend on it).
    cache: HashMap<CacheKey, Arc<Vec<Rel>>>,
    trees_loaded: u64,
    cancel: Option<Arc<AtomicBool>>,
}

impl<'r> Finder<'r> {
    /// Compiles the patterns; a malformed pattern or impossible bounds are an error naming it.
    pub fn new(
        repo: &'r Repository,
        opts: &FindOptions,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Finder<'r>> {
        Ok(Finder {
            repo,
            matcher: Matcher::new(opts)?,
            cache: HashMap::new(),
            trees_loaded: 0,
            cancel,
        })
    }

    /// How many tree blobs this finder has read so far.
    pub fn trees_loaded(&self) -> u64 {
        self.trees_loaded
    }

    /// The matches in the snapshot whose root tree is `root`, in tree order (depth first,
    /// names sorted by bytes, a directory before its entries).
    pub fn search(&mut self, root: TreeId) -> Result<Vec<Found>> {
        let rel = self.below(root, b"")?;
        Ok(rel
            .iter()
            .map(|r| {
                let mut path = Vec::with_capacity(r.rel.len() + 1);
                path.push(b'/');
                path.extend_from_slice(&r.rel);
                Found {
                    path: PathBuf::from(OsStr::from_bytes(&path)),
                    kind: r.kind,
                    size: r.size,
                    mtime: r.mtime,
                    mode: r.mode,
                }
            })
            .collect())
    }

    /// Matches below `tree`, which sits at `dir` (its absolute path without the leading `/`).
    fn below(&mut self, tree: TreeId, dir: &[u8]) -> Result<Arc<Vec<Rel>>> {
        let key = (tree, self.matcher.has_path_patterns().then(|| dir.to_vec()));
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Error::Interrupted);
        }
        let t = self.repo.read_tree(&tree)?;
        self.trees_loaded += 1;
        let mut out = Vec::new();
        for node in &t.nodes {
            let path = join(dir, &node.name);
            if self.matcher.matches(node, &path) {
                out.push(Rel {
                    rel: node.name.clone(),
                    kind: node.kind,
                    size: node.size,
                    mtime: node.mtime,
                    mode: node.mode,
                });
            }
            if let Some(sub) = node.subtree {
                let inner = self.below(sub, &path)?;
                out.extend(inner.iter().map(|r| Rel {
                    rel: join(&node.name, &r.rel),
                    ..r.clone()
                }));
            }
        }
        let out = Arc::new(out);
        self.cache.insert(key, out.clone());
        Ok(out)
    }
}

/// `a/b` from `a` and `b` (just `b` when `a` is empty).
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{backup, BackupOptions, NoProgress};
    use crate::testutil::mem_repo;
    use std::path::Path;

    fn opts(patterns: &[&str]) -> FindOptions {
        FindOptions {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            ..FindOptions::default()
        }
    }

    fn paths(found: &[Found], base: &Path) -> Vec<String> {
        found
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(base)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| f.path.display().to_string())
            })
            .collect()
    }

    /// Backs up `src` into `repo` and returns the snapshot's root tree.
    fn snap(repo: &mut Repository, src: &Path) -> TreeId {
        let o = BackupOptions {
            paths: vec![src.to_path_buf()],
            host: "h".into(),
            threads: 1,
            ..BackupOptions::default()
        };
        backup(repo, &o, &NoProgress).expect("backup").snapshot.tree
    }

    fn tree(dir: &Path) {
        for (rel, data) in [
            ("a/x.txt", "1"),
            ("a/b/y.TXT", "2"),
            ("a/b/c/x.txt", "3"),
            ("d/z.log", "4"),
        ] {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, data).expect("write");
        }
    }

    #[test]
    fn a_hundred_snapshots_of_one_tree_load_each_tree_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        tree(&src);
        let (_b, mut repo) = mem_repo(b"pw");
        let root = snap(&mut repo, &src);
        for patterns in [&["*.txt"][..], &["a/b/*"][..], &["*.txt", "/**/c"][..]] {
            let mut one = Finder::new(&repo, &opts(patterns), None).expect("finder");
            let first = one.search(root).expect("search");
            let loads_for_one = one.trees_loaded();
            assert!(loads_for_one > 4, "{patterns:?}: every tree read once");
            for _ in 0..99 {
                assert_eq!(one.search(root).expect("search"), first);
            }
            assert_eq!(
                one.trees_loaded(),
                loads_for_one,
                "{patterns:?}: a hundred searches of one tree read no tree twice"
            );
        }
    }

    #[test]
    fn a_second_snapshot_reads_only_the_trees_that_changed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        tree(&src);
        let (_b, mut repo) = mem_repo(b"pw");
        let first = snap(&mut repo, &src);
        std::fs::write(src.join("d/new.txt"), "5").expect("write");
        let second = snap(&mut repo, &src);
        for patterns in [&["*.txt"][..], &["d/*"][..]] {
            let mut f = Finder::new(&repo, &opts(patterns), None).expect("finder");
            f.search(first).expect("search");
            let before = f.trees_loaded();
            let found = f.search(second).expect("search");
            assert!(
                found.iter().any(|x| x.path.ends_with("d/new.txt")),
                "{patterns:?}: the new file is found"
            );
            // `/`, each directory down to `src`, `src` and `d` changed; `a` and below did not.
            let depth = src.components().count() as u64;
            assert_eq!(
                f.trees_loaded() - before,
                depth + 1,
                "{patterns:?}: only the changed path is read again"
            );
        }
    }

    #[test]
    fn pattern_shapes_match_names_paths_and_case() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        tree(&src);
        let (_b, mut repo) = mem_repo(b"pw");
        let root = snap(&mut repo, &src);
        let s = src.to_str().expect("utf-8 tmp").trim_start_matches('/');
        let run = |pats: &[&str], ic: bool| {
            let mut o = opts(pats);
            o.ignore_case = ic;
            let mut f = Finder::new(&repo, &o, None).expect("finder");
            paths(&f.search(root).expect("search"), &src)
        };
        assert_eq!(run(&["*.txt"], false), ["a/b/c/x.txt", "a/x.txt"]);
        assert_eq!(
            run(&["*.txt"], true),
            ["a/b/c/x.txt", "a/b/y.TXT", "a/x.txt"]
        );
        assert_eq!(run(&["b/*"], false), ["a/b/c", "a/b/y.TXT"]);
        assert_eq!(run(&["a/**/x.txt"], false), ["a/b/c/x.txt", "a/x.txt"]);
        let anchored = format!("/{s}/a/*.txt");
        assert_eq!(run(&[anchored.as_str()], false), ["a/x.txt"]);
        assert_eq!(run(&["/a/*.txt"], false), Vec::<String>::new());
        assert_eq!(run(&["?.log", "c"], false), ["a/b/c", "d/z.log"]);
    }

    #[test]
    fn bad_patterns_and_bounds_are_refused_by_name() {
        let (_b, repo) = mem_repo(b"pw");
        for bad in [
            &[][..],
            &[""][..],
            &["/"][..],
            &["a[b"][..],
            &["ok", "x{y"][..],
        ] {
            let e = Finder::new(&repo, &opts(bad), None)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(matches!(e, Error::InvalidInput(_)), "{bad:?}: {e}");
        }
        let mut o = opts(&["*"]);
        o.newest = Some(Timestamp(10, 0));
        o.oldest = Some(Timestamp(20, 0));
        assert!(Finder::new(&repo, &o, None).is_err());
    }
}
