//! Why a file could not be restored: damaged or missing data in the repository, a full disk, or
//! another failure of the target; and the errors that tell these apart.

use std::io;

/// Why a file could not be restored.
pub(super) enum Problem {
    /// Its data in the repository is damaged or missing.
    Damage(String),
    /// The target's file system is full.
    DiskFull(String),
    /// Writing it failed otherwise (permissions, I/O errors of the target's disk...).
    Target(String),
}

/// Everything that went wrong with one file.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message naming every problem, and whether the repository's data is to blame
    /// (damage) rather than the target (a full disk, a failed write).
    pub(super) fn describe(&self) -> (String, bool) {
        let mut damage = Vec::new();
        let mut target = Vec::new();
        let mut full = false;
        for p in &self.0 {
            match p {
                Problem::Damage(m) => damage.push(m.as_str()),
                Problem::DiskFull(m) => {
                    full = true;
                    target.push(m.as_str())
                }
                Problem::Target(m) => target.push(m.as_str()),
            }
        }
        if full {
            (
                format!("not restored: the disk is full ({})", target.join("; ")),
                false,
            )
        } else if !target.is_empty() {
            (format!("not restored: {}", target.join("; ")), false)
        } else {
            (
                format!(
                    "not restored, its data is damaged or missing: {}",
                    damage.join("; ")
                ),
                true,
            )
        }
    }
}

/// Whether an error is this machine running short (of descriptors or memory), not damage.
pub(super) fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// Whether an error means the file system is out of space (or the user out of quota).
pub(super) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}
