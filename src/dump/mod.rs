//! `cairn dump`: one entry of a snapshot as a byte stream — a file's content, or a directory
//! (or any entry) as a tar or zip archive.
//!
//! Everything streams: file content is read one chunk at a time ([`ContentReader`]), so memory
//! stays at one chunk whatever the file size, and archives are written front to back to a
//! writer that need not seek (a pipe). Where the archive goes is the caller's business.
//!
//! An archive of a directory holds the directory itself under its name (`docs/`, `docs/a.txt`,
//! like `tar -C parent -c docs`); the snapshot root `/` has no name, so its archive holds the
//! root's entries. Hard links: tar writes the second and later paths of a link group as
//! hard-link entries to the first; zip has no hard links and stores each path's content.

mod content;
mod tar;
mod zip;

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use content::ContentReader;

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// The archive formats `dump` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// POSIX tar with GNU long names and PAX sub-second times: names are kept as bytes.
    Tar,
    /// Zip, every entry stored (not compressed), zip64 where sizes need it; names must be
    /// UTF-8.
    Zip,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tar" => Ok(ArchiveFormat::Tar),
            "zip" => Ok(ArchiveFormat::Zip),
            _ => Err(format!("archive format {s:?} is not tar or zip")),
        }
    }
}

/// What a path inside a snapshot names.
#[derive(Clone, Debug)]
pub enum Selected {
    /// The snapshot's root directory `/` (it has no name or metadata of its own).
    Root(TreeId),
    /// Any entry below the root: a directory, file, symlink or special file.
    Entry(Box<Node>),
}

/// Follows `path` (components separated by `/`, bytes) down from `root`. A missing component,
/// or one below a non-directory, is an error naming the path.
pub fn resolve(repo: &Repository, root: TreeId, path: &[u8]) -> Result<Selected> {
    let mut cur = Selected::Root(root);
    let shown = || String::from_utf8_lossy(path).into_owned();
    for comp in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        let tree = match &cur {
            Selected::Root(t) => *t,
            Selected::Entry(n) => n.subtree.ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: {:?} is a {}, not a directory",
                    shown(),
                    String::from_utf8_lossy(&n.name),
                    n.kind.name()
                ))
            })?,
        };
        if comp == b".." {
            return Err(Error::InvalidInput(format!(
                "{}: `..` is not allowed in a snapshot path",
                shown()
            )));
        }
        let t = repo.read_tree(&tree)?;
        let node = t.find(comp).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: no entry {:?} in the snapshot",
                shown(),
                String::from_utf8_lossy(comp)
            ))
        })?;
        cur = Selected::Entry(Box::new(node.clone()));
    }
    Ok(cur)
}

/// What an archive holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Entries written (directories, files, links, special files).
    pub entries: u64,
    /// File content bytes written.
    pub bytes: u64,
    /// Entries the format cannot hold, left out, with why (sockets; special files in zip).
    pub skipped: Vec<(PathBuf, String)>,
}

/// How a dump runs.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Set from outside (Ctrl-C) to stop at the next chunk with [`Error::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Names the output in messages about writing it (`standard output`, a file's path).
    pub output: PathBuf,
}

impl DumpOptions {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Writes a regular file's content to `out`, one chunk at a time; returns the bytes written.
pub fn write_content(
    repo: &Repository,
    node: &Node,
    out: &mut dyn Write,
    opts: &DumpOptions,
) -> Result<u64> {
    if node.kind != NodeKind::File {
        return Err(Error::InvalidInput(format!(
            "{:?} is a {}, which has no content to write; dump it as an archive (--archive tar)",
            String::from_utf8_lossy(&node.name),
            node.kind.name()
        )));
    }
    let mut reader = ContentReader::new(repo, node, opts.cancel.clone());
    copy(&mut reader, out, opts)
}

/// Writes `selected` as an archive to `out` (see the module docs for the layout).
pub fn write_archive<W: Write>(
    repo: &Repository,
    selected: &Selected,
    format: ArchiveFormat,
    out: W,
    opts: &DumpOptions,
) -> Result<DumpSummary> {
    match format {
        ArchiveFormat::Tar => tar::write(repo, selected, out, opts),
        ArchiveFormat::Zip => zip::write(repo, selected, out, opts),
    }
}

/// One entry met by [`visit`]: its path in the archive and its node.
pub(crate) trait Sink {
    fn entry(&mut self, path: &Path, node: &Node) -> Result<()>;
}

/// Calls `sink` for `selected` and everything below it, a directory before its entries.
pub(crate) fn visit(
    repo: &Repository,
    selected: &Selected,
    opts: &DumpOptions,
    sink: &mut dyn Sink,
) -> Result<()> {
    match selected {
        Selected::Root(tree) => visit_tree(repo, *tree, Path::new(""), opts, sink),
        Selected::Entry(node) => {
            let path = PathBuf::from(OsStr::from_bytes(&node.name));
            sink.entry(&path, node)?;
            if let Some(sub) = node.subtree {
                visit_tree(repo, sub, &path, opts, sink)?;
            }
            Ok(())
        }
    }
}

fn visit_tree(
    repo: &Repository,
    tree: TreeId,
    dir: &Path,
    opts: &DumpOptions,
    sink: &mut dyn Sink,
) -> Result<()> {
    let t = repo.read_tree(&tree)?;
    for node in &t.nodes {
        if opts.cancelled() {
            return Err(Error::Interrupted);
        }
        let path = dir.join(OsStr::from_bytes(&node.name));
        sink.entry(&path, node)?;
        if let Some(sub) = node.subtree {
            visit_tree(repo, sub, &path, opts, sink)?;
        }
    }
    Ok(())
}

/// Copies a content reader into `out`; a repository error inside the reader comes back as
/// itself, a write error names the output.
fn copy(reader: &mut ContentReader<'_>, out: &mut dyn Write, opts: &DumpOptions) -> Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match io::Read::read(reader, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_io(e, &opts.output)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(&opts.output, e))?;
        total += n as u64;
    }
}

/// A writer that fails every write once its flag is set: an archive writer that finishes
/// the archive when dropped then cannot make a failed dump look complete.
pub(crate) struct Guard<W> {
    inner: W,
    failed: Arc<AtomicBool>,
}

/// Sets a [`Guard`]'s flag.
pub(crate) struct Fail(Arc<AtomicBool>);

impl Fail {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<W> Guard<W> {
    pub(crate) fn new(inner: W) -> Self {
        Guard {
            inner,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }
    pub(crate) fn flag(&self) -> Fail {
        Fail(self.failed.clone())
    }
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Guard<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(io::Error::other(
                "the dump failed; the archive is left unfinished",
            ));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.flush()
    }
}

/// An I/O error from an archive writer: the repository error a [`ContentReader`] wrapped, or
/// a failure writing the output.
pub(crate) fn from_io(e: io::Error, output: &Path) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::io(output, e),
    }
}
