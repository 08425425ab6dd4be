//! Making an entry where something may already stand: directories made or opened, and what
//! [`Overwrite`] says about an existing entry (replaced, kept — and with `--verify` compared —
//! or reported as an obstacle). Nothing is followed: a symlink in the way is removed as itself.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::delete::Sweep;
use super::links::split_rel;
use super::verify::verify_reader;
use super::walk::{FrameState, Restorer};
use super::Overwrite;
use crate::safe_fs::{kind_name, Dir};
use crate::tree::{Node, NodeKind};

/// Whether an entry may be made where the snapshot has it.
pub(super) enum Way {
    /// Nothing is there (any more).
    Clear,
    /// Something stays there (kept, or reported as an obstacle).
    Blocked,
}

impl Restorer<'_, '_> {
    /// Makes (or opens the existing) directory of frame `j` in its parent, which is open.
    pub(super) fn make_dir(&mut self, j: usize) -> FrameState {
        let FrameState::Open(parent) = &self.stack[j - 1].state else {
            return FrameState::Failed;
        };
        let parent = parent.clone();
        let parent_made = self.stack[j - 1].made;
        let name = split_rel(&self.stack[j].rel).1.to_vec();
        let path = self.shown(&self.stack[j].rel);
        // In a directory this restore made, nothing is there yet: no look first. Should
        // something be there anyway, the make fails and the look below decides.
        if parent_made {
            match parent.create_dir(&name, 0o700) {
                Ok(()) => return self.open_made(j, &parent, &name, &path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.io_error(&path, "cannot create the directory", &e);
                    return FrameState::Failed;
                }
            }
        }
        let existing = match parent.stat(&name) {
            Ok(s) => s,
            Err(e) => {
                self.error(
                    &path,
                    format_args!("cannot look at the existing entry: {e}"),
                );
                return FrameState::Failed;
            }
        };
        match existing {
            Some(st) if st.kind == NodeKind::Dir => match parent.open_dir(&name) {
                Ok(d) => {
                    if let Ok(st) = d.stat_self() {
                        self.stack[j].id = Some((st.dev, st.ino));
                        if self.shared.opts.overwrite == Overwrite::Never {
                            self.stack[j].times = Some((st.atime, st.mtime));
                        }
                    }
                    FrameState::Open(Arc::new(d))
                }
                Err(e) => {
                    self.error(
                        &path,
                        format_args!("cannot open the existing directory: {e}"),
                    );
                    FrameState::Failed
                }
            },
            Some(st) if self.shared.opts.overwrite == Overwrite::Never => {
                self.error(
                    &path,
                    format_args!(
                        "not restored: a {} is in the way where the snapshot has a directory \
                         (kept: --overwrite never)",
                        kind_name(st.kind)
                    ),
                );
                FrameState::Failed
            }
            Some(st) => {
                // A file, symlink or special file where the snapshot has a directory: removed
                // (a symlink as itself, never what it points to).
                if let Err(e) = parent.remove_file(&name) {
                    self.error(
                        &path,
                        format_args!("cannot replace the existing {}: {e}", kind_name(st.kind)),
                    );
                    return FrameState::Failed;
                }
                match parent.create_dir(&name, 0o700) {
                    Ok(()) => self.open_made(j, &parent, &name, &path),
                    Err(e) => {
                        self.io_error(&path, "cannot create the directory", &e);
                        FrameState::Failed
                    }
                }
            }
            None => match parent.create_dir(&name, 0o700) {
                Ok(()) => self.open_made(j, &parent, &name, &path),
                Err(e) => {
                    self.io_error(&path, "cannot create the directory", &e);
                    FrameState::Failed
                }
            },
        }
    }

    /// Opens a directory this restore just made.
    fn open_made(&mut self, j: usize, parent: &Dir, name: &[u8], path: &Path) -> FrameState {
        match parent.open_dir(name) {
            Ok(d) => {
                self.stack[j].made = true;
                self.stack[j].id = d.stat_self().ok().map(|st| (st.dev, st.ino));
                FrameState::Open(Arc::new(d))
            }
            Err(e) => {
                self.error(path, format_args!("cannot open the new directory: {e}"));
                FrameState::Failed
            }
        }
    }

    /// Decides about an entry that may exist where the snapshot has the non-directory `node`;
    /// removes it when it is to be replaced.
    pub(super) fn clear_the_way(
        &mut self,
        dir: &Dir,
        node: &Node,
        path: &Path,
        snap_path: &Path,
    ) -> Way {
        let st = match dir.stat(&node.name) {
            Ok(None) => return Way::Clear,
            Ok(Some(st)) => st,
            Err(e) => {
                self.error(path, format_args!("cannot look at the existing entry: {e}"));
                return Way::Blocked;
            }
        };
        let overwrite = self.shared.opts.overwrite;
        match overwrite {
            Overwrite::Never if st.kind != node.kind => {
                self.error(
                    path,
                    format_args!(
                        "not restored: a {} is in the way where the snapshot has a {} \
                         (kept: --overwrite never)",
                        kind_name(st.kind),
                        kind_name(node.kind)
                    ),
                );
                return Way::Blocked;
            }
            Overwrite::Never => {
                self.keep_existing(dir, node, path, "--overwrite never");
                return Way::Blocked;
            }
            Overwrite::IfChanged
                if node.kind == NodeKind::File
                    && st.kind == NodeKind::File
                    && st.size == node.size
                    && st.mtime == (node.mtime.0, node.mtime.1) =>
            {
                self.keep_existing(dir, node, path, "--overwrite if-changed");
                return Way::Blocked;
            }
            _ => {}
        }
        // Replace: unlinked first, so other hard links to the old file keep their content.
        let removed = if st.kind == NodeKind::Dir {
            if self.shared.opts.delete {
                // `--delete`: what fills it is not in the snapshot either.
                self.empty_in_the_way(dir, node, snap_path);
            }
            dir.remove_empty_dir(&node.name)
        } else {
            dir.remove_file(&node.name)
        };
        match removed {
            Ok(()) => Way::Clear,
            Err(e)
                if st.kind == NodeKind::Dir
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
            {
                self.error(
                    path,
                    format_args!(
                        "not restored: a directory that is not empty is in the way where the \
                         snapshot has a {} (left in place)",
                        kind_name(node.kind)
                    ),
                );
                Way::Blocked
            }
            Err(e) => {
                self.error(
                    path,
                    format_args!("cannot replace the existing {}: {e}", kind_name(st.kind)),
                );
                Way::Blocked
            }
        }
    }

    /// `--delete` with a directory where the snapshot has another kind of entry: removes what
    /// is inside it (as far as the selection allows), through its descriptor.
    fn empty_in_the_way(&mut self, dir: &Dir, node: &Node, snap_path: &Path) {
        let rel = self.top().rel.join(std::ffi::OsStr::from_bytes(&node.name));
        let opts = self.shared.opts;
        let mut sweep = Sweep::new(&opts.target, opts.select.as_ref(), false);
        match dir.open_dir(&node.name) {
            Ok(sub) => {
                sweep.contents(&sub, &rel, snap_path);
            }
            Err(e) => {
                let path = self.shown(&rel);
                self.error(
                    &path,
                    format_args!("--delete: cannot open the directory: {e}"),
                );
            }
        }
        self.out.deleted.append(&mut sweep.removed);
        self.out.errors.append(&mut sweep.errors);
    }

    /// Counts an existing entry kept in place; with `verify`, a kept file is read and compared
    /// with the snapshot (a difference is reported, the file is left as it is).
    fn keep_existing(&mut self, dir: &Dir, node: &Node, path: &Path, why: &str) {
        self.out.skipped += 1;
        if !self.shared.opts.verify || node.kind != NodeKind::File {
            return;
        }
        let checked = dir
            .open_file(&node.name)
            .map_err(|e| format!("verify: cannot open: {e}"))
            .and_then(|f| verify_reader(self.shared.repo, f, node));
        match checked {
            Ok(()) => self.out.verified_files += 1,
            Err(e) => self.error(
                path,
                format_args!(
                    "the existing file differs from the snapshot ({e}); left as it is ({why})"
                ),
            ),
        }
    }
}
