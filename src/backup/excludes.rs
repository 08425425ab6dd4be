//! What a backup leaves out (patterns, cache and marker directories, large files, other
//! filesystems, the repository itself), and listing directories: each directory's entries,
//! sorted and filtered, with their metadata, read ahead of the walk on a thread of their own.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

/// What a backup leaves out (restic's options of the same names).
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    /// `--exclude` / `--iexclude` / `--exclude-file` patterns.
    pub patterns: Option<crate::filter::Selection>,
    /// Skip directories holding a valid `CACHEDIR.TAG`.
    pub caches: bool,
    /// Skip directories holding a file of one of these names.
    pub if_present: Vec<String>,
    /// Skip files larger than this many bytes.
    pub larger_than: Option<u64>,
    /// Do not descend into other filesystems (mount points are kept, empty).
    pub one_file_system: bool,
    /// The repository's own directory, left out wherever the walk meets it (a backup of `/data`
    /// into `/data/repo`), whatever path leads there: compared by device and inode, not by
    /// name, so symlinks, bind mounts, relative paths and trailing slashes make no difference.
    pub repository: Option<DirId>,
}

/// A directory's identity: device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirId {
    /// The id of the device holding the directory (`st_dev`).
    pub dev: u64,
    /// The directory's inode number on that device (`st_ino`).
    pub ino: u64,
}

impl DirId {
    /// The directory at `path` (following symlinks, as the path given is meant).
    pub fn of(path: &Path) -> io::Result<DirId> {
        let m = fs::metadata(path)?;
        Ok(DirId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn is(&self, meta: &fs::Metadata) -> bool {
        meta.is_dir() && meta.dev() == self.dev && meta.ino() == self.ino
    }
}

/// The first bytes of a valid CACHEDIR.TAG (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excludes {
    pub(super) fn is_repository(&self, meta: &fs::Metadata) -> bool {
        self.repository.is_some_and(|r| r.is(meta))
    }

    pub(super) fn excludes_path(&self, path: &Path) -> bool {
        self.patterns.as_ref().is_some_and(|p| !p.accepts(path))
    }

    /// Whether a directory's contents are left out because of a marker file in it.
    pub(super) fn marks_dir(&self, dir: &Path) -> bool {
        if self.caches {
            let mut sig = [0u8; 43];
            if File::open(dir.join("CACHEDIR.TAG"))
                .and_then(|mut f| f.read_exact(&mut sig))
                .is_ok_and(|_| sig == CACHEDIR_SIGNATURE)
            {
                return true;
            }
        }
        self.if_present
            .iter()
            .any(|n| fs::symlink_metadata(dir.join(n)).is_ok())
    }
}

/// Directory listings the reader ahead may hold before the walk takes them.
pub(super) const PREFETCH_DIRS: usize = 64;

/// A directory's entries (not excluded by pattern or, for directories, by a marker file in
/// them), sorted by name, each with its metadata (not following symlinks) or why it could not
/// be had.
pub(super) struct Listing {
    pub(super) path: PathBuf,
    pub(super) entries: Vec<(OsString, io::Result<fs::Metadata>)>,
    /// Errors reading the directory itself.
    pub(super) errors: Vec<io::Error>,
    /// The repository's own directory, found among the entries and left out.
    pub(super) repository: Option<PathBuf>,
}

/// Lists a directory. Entries keep it open, so each is stat'ed relative to it (fstatat), not
/// through its whole path again.
pub(super) fn list_dir(path: &Path, exclude: &Excludes) -> Listing {
    let mut errors = Vec::new();
    let mut found = Vec::new();
    match fs::read_dir(path) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => found.push((e.file_name(), e)),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut entries = Vec::with_capacity(found.len());
    let mut repository = None;
    for (name, e) in found {
        let child = path.join(&name);
        if exclude.excludes_path(&child) {
            continue;
        }
        let meta = e.metadata();
        if meta.as_ref().is_ok_and(|m| exclude.is_repository(m)) {
            repository = Some(child);
            continue;
        }
        if meta.as_ref().is_ok_and(|m| m.is_dir()) && exclude.marks_dir(&child) {
            continue;
        }
        entries.push((name, meta));
    }
    Listing {
        path: path.to_path_buf(),
        entries,
        errors,
        repository,
    }
}

/// Lists every directory the walk will enter, in the order it enters them (depth first, by
/// name), and sends the listings; stops when the walk no longer takes them.
pub(super) fn prefetch_listings(roots: &[PathBuf], exclude: &Excludes, tx: &Sender<Listing>) {
    fn walk(dir: &Path, dev: u64, exclude: &Excludes, tx: &Sender<Listing>) -> bool {
        let listing = list_dir(dir, exclude);
        let subdirs: Vec<PathBuf> = listing
            .entries
            .iter()
            .filter_map(|(name, meta)| {
                let m = meta.as_ref().ok().filter(|m| m.is_dir())?;
                let child = dir.join(name);
                let other_fs = exclude.one_file_system && m.dev() != dev;
                (!other_fs).then_some(child)
            })
            .collect();
        if tx.send(listing).is_err() {
            return false;
        }
        subdirs.iter().all(|d| walk(d, dev, exclude, tx))
    }
    for root in roots {
        match fs::symlink_metadata(root) {
            Ok(m) if m.is_dir() && !walk(root, m.dev(), exclude, tx) => return,
            _ => {}
        }
    }
}

/// The walk's side of the listings read ahead.
pub(super) struct Prefetch {
    pub(super) rx: Receiver<Listing>,
    pub(super) peeked: Option<Listing>,
}

impl Prefetch {
    /// The listing of `path` if it was read ahead. Both sides go depth first by name, which
    /// is the order of paths compared component by component: listings before `path` are of
    /// directories the walk did not enter, and one after it means `path` was not read ahead
    /// (the caller lists it itself).
    pub(super) fn take(&mut self, path: &Path) -> Option<Listing> {
        loop {
            let next = match self.peeked.take() {
                Some(l) => l,
                None => self.rx.recv().ok()?,
            };
            match next.path.as_path().cmp(path) {
                std::cmp::Ordering::Equal => return Some(next),
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => {
                    self.peeked = Some(next);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn listing(path: &str) -> Listing {
        Listing {
            path: PathBuf::from(path),
            entries: Vec::new(),
            errors: Vec::new(),
            repository: None,
        }
    }

    /// The walk takes listings by path: ones it skipped are dropped, and one that was not
    /// read ahead is answered None without losing the listings after it.
    #[test]
    fn prefetched_listings_are_matched_by_path_in_walk_order() {
        let (tx, rx) = bounded(16);
        for p in ["/a", "/a/b", "/a/b/c", "/a/b-", "/a/d", "/e"] {
            tx.send(listing(p)).expect("test");
        }
        drop(tx);
        let mut pf = Prefetch { rx, peeked: None };
        let got = |l: Option<Listing>| l.map(|l| l.path.display().to_string());
        assert_eq!(got(pf.take(Path::new("/a"))), Some("/a".into()));
        // "/a/b" and everything under it were not entered; "/a/b-" sorts after "/a/b/c".
        assert_eq!(got(pf.take(Path::new("/a/b-"))), Some("/a/b-".into()));
        // Not read ahead: None, and "/a/d" is still there.
        assert_eq!(got(pf.take(Path::new("/a/c"))), None);
        assert_eq!(got(pf.take(Path::new("/a/d"))), Some("/a/d".into()));
        assert_eq!(got(pf.take(Path::new("/e"))), Some("/e".into()));
        assert_eq!(got(pf.take(Path::new("/f"))), None);
    }

    /// What the reader ahead lists is what the walk would: entries sorted by name bytes,
    /// excluded names and marked directories left out, directories entered in order.
    #[test]
    fn the_reader_ahead_lists_directories_in_walk_order() {
        let dir = tempfile::tempdir().expect("test");
        let root = dir.path().join("root");
        for d in ["b/x", "a", "c/skip-me", "marked"] {
            fs::create_dir_all(root.join(d)).expect("test");
        }
        fs::write(root.join("marked/.nobackup"), b"").expect("test");
        fs::write(root.join("a/file"), b"1").expect("test");
        let exclude = Excludes {
            patterns: Some(
                crate::filter::Selection::new(&[], &["skip-me".to_string()], &[]).expect("test"),
            ),
            if_present: vec![".nobackup".into()],
            ..Excludes::default()
        };
        let (tx, rx) = bounded(16);
        prefetch_listings(std::slice::from_ref(&root), &exclude, &tx);
        drop(tx);
        let seen: Vec<(String, Vec<String>)> = rx
            .iter()
            .map(|l| {
                let rel = l
                    .path
                    .strip_prefix(&root)
                    .expect("test")
                    .display()
                    .to_string();
                let names = l
                    .entries
                    .iter()
                    .map(|(n, _)| n.to_string_lossy().into_owned())
                    .collect();
                (rel, names)
            })
            .collect();
        let want: Vec<(String, Vec<String>)> = vec![
            ("".into(), vec!["a".into(), "b".into(), "c".into()]),
            ("a".into(), vec!["file".into()]),
            ("b".into(), vec!["x".into()]),
            ("b/x".into(), vec![]),
            ("c".into(), vec![]),
        ];
        assert_eq!(seen, want);
    }
}
