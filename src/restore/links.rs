//! Hard links: the first restored path of each link group is remembered; a later member is
//! linked to it at once, or, while the first file is still being written, queued on that file
//! and made when it is finished (src/restore/finish.rs). A link that cannot be made is
//! restored as a copy.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::plan::PendingAt;
use super::walk::Restorer;
use crate::error::Result;
use crate::safe_fs::Dir;
use crate::tree::NodeKind;

/// The first restored path of a hard-link group, relative to the target.
#[derive(Clone)]
pub(super) struct FirstLink {
    pub(super) rel: PathBuf,
}

/// Where an entry goes: its directory and name, and its full path for messages.
pub(super) struct LinkAt {
    /// Relative to the target: its directory is opened (beneath the target) only when the
    /// link is made, so links waiting for their first file hold no descriptor.
    pub(super) rel: PathBuf,
    pub(super) path: PathBuf,
}

impl LinkAt {
    /// Makes this entry another link to `name` in `dir`.
    pub(super) fn link_to(&self, target: &Dir, dir: &Dir, name: &[u8]) -> io::Result<()> {
        let (parent, own) = split_rel(&self.rel);
        let at = target.open_beneath(parent)?;
        dir.hard_link(name, &at, own)
    }
}

/// The directory (relative to the target) and the name of an entry's relative path.
pub(super) fn split_rel(rel: &Path) -> (&Path, &[u8]) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().map(|n| n.as_bytes()).unwrap_or_default(),
    )
}

#[derive(Default)]
pub(super) struct Links {
    /// The file is finished: links are no longer queued here.
    pub(super) finished: bool,
    pub(super) paths: Vec<LinkAt>,
}

impl Restorer<'_, '_> {
    /// Makes `at` another link to `first`, now or (when `first` is still being written) when
    /// `first` is finished. False when that fails and a copy is to be restored instead.
    pub(super) fn link_to(
        &mut self,
        first: &FirstLink,
        pending: Option<PendingAt>,
        at: LinkAt,
        dir: &Dir,
        kind: NodeKind,
    ) -> Result<bool> {
        if let Some((seq, i)) = pending {
            let links = if seq == self.seq {
                self.batch.get(i).map(|f| &f.links)
            } else {
                self.recent
                    .iter()
                    .find(|b| b.seq == seq)
                    .and_then(|b| b.files.get(i))
                    .map(|f| &f.links)
            };
            if let Some(links) = links {
                let mut l = links.lock().unwrap_or_else(|p| p.into_inner());
                if !l.finished {
                    // Made (and counted) when the first link's content is complete.
                    l.paths.push(at);
                    return Ok(true);
                }
            }
            // That batch is finished: the first link exists (or was damaged and removed).
            self.shared.wait_through(seq)?;
        }
        let (parent, name) = split_rel(&first.rel);
        let (_, own) = split_rel(&at.rel);
        let linked = self
            .target
            .open_beneath(parent)
            .and_then(|d| d.hard_link(name, dir, own));
        match linked {
            Ok(()) => {
                if kind == NodeKind::File {
                    self.out.files += 1;
                } else {
                    self.out.other += 1;
                }
                Ok(true)
            }
            Err(e) => {
                let first = self.shown(&first.rel);
                self.error(
                    &at.path,
                    format_args!("hard link to {}: {e}; restoring a copy", first.display()),
                );
                Ok(false)
            }
        }
    }
}
