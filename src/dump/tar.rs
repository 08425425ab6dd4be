//! Tar output: a GNU-format header per entry (long names and link targets as GNU `L`/`K`
//! records, so name bytes are kept exactly), a PAX `mtime` record before any entry whose
//! time has sub-second or pre-1970 parts, and hard-link entries for the second and later
//! paths of a link group.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::{from_io, visit, ContentReader, DumpOptions, DumpSummary, Guard, Selected, Sink};
use crate::error::Result;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

pub(super) fn write<W: Write>(
    repo: &Repository,
    selected: &Selected,
    out: W,
    opts: &DumpOptions,
) -> Result<DumpSummary> {
    let guard = Guard::new(out);
    let failed = guard.flag();
    let mut sink = TarSink {
        repo,
        opts,
        builder: Builder::new(guard),
        links: HashMap::new(),
        summary: DumpSummary::default(),
    };
    if let Err(e) = visit(repo, selected, opts, &mut sink) {
        // Dropping the builder writes the end-of-archive blocks; a failed dump must not look
        // whole.
        failed.set();
        return Err(e);
    }
    sink.builder
        .into_inner()
        .and_then(|g| {
            let mut w = g.into_inner();
            w.flush()
        })
        .map_err(|e| from_io(e, &opts.output))?;
    Ok(sink.summary)
}

struct TarSink<'a, W: Write> {
    repo: &'a Repository,
    opts: &'a DumpOptions,
    builder: Builder<Guard<W>>,
    /// First archive path of each hard-link group written so far.
    links: HashMap<(u64, u64), PathBuf>,
    summary: DumpSummary,
}

impl<W: Write> Sink for TarSink<'_, W> {
    fn entry(&mut self, path: &Path, node: &Node) -> Result<()> {
        let err = |e| from_io(e, &self.opts.output);
        let mut h = Header::new_gnu();
        h.set_mode(node.mode & 0o7777);
        h.set_uid(node.uid.into());
        h.set_gid(node.gid.into());
        h.set_mtime(node.mtime.0.max(0) as u64);
        if let Some(u) = node.user.as_deref().filter(|u| u.len() <= 32) {
            let _ = h.set_username(u);
        }
        if let Some(g) = node.group.as_deref().filter(|g| g.len() <= 32) {
            let _ = h.set_groupname(g);
        }
        h.set_size(0);
        let link_first = node.link_group().and_then(|g| self.links.get(&g).cloned());
        if node.kind != NodeKind::Socket {
            if let Some(rec) = pax_mtime(node) {
                let mut x = Header::new_ustar();
                x.set_entry_type(EntryType::XHeader);
                x.set_path("././@PaxHeader").map_err(err)?;
                x.set_mode(0o644);
                x.set_size(rec.len() as u64);
                x.set_cksum();
                self.builder.append(&x, rec.as_slice()).map_err(err)?;
            }
        }
        if let Some(first) = link_first {
            h.set_entry_type(EntryType::Link);
            self.builder
                .append_link(&mut h, path, &first)
                .map_err(err)?;
            self.summary.entries += 1;
            return Ok(());
        }
        match node.kind {
            NodeKind::Dir => {
                h.set_entry_type(EntryType::Directory);
                self.builder
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(err)?;
            }
            NodeKind::File => {
                h.set_entry_type(EntryType::Regular);
                h.set_size(node.size);
                let reader = ContentReader::new(self.repo, node, self.opts.cancel.clone());
                self.builder
                    .append_data(&mut h, path, reader)
                    .map_err(err)?;
                self.summary.bytes += node.size;
            }
            NodeKind::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                let target = node.target.as_deref().unwrap_or_default();
                self.builder
                    .append_link(&mut h, path, std::ffi::OsStr::from_bytes(target))
                    .map_err(err)?;
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                h.set_entry_type(match node.kind {
                    NodeKind::Fifo => EntryType::Fifo,
                    NodeKind::CharDevice => EntryType::Char,
                    _ => EntryType::Block,
                });
                if node.kind != NodeKind::Fifo {
                    h.set_device_major(libc::major(node.rdev)).map_err(err)?;
                    h.set_device_minor(libc::minor(node.rdev)).map_err(err)?;
                }
                self.builder
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(err)?;
            }
            NodeKind::Socket => {
                self.summary
                    .skipped
                    .push((path.to_path_buf(), "a socket cannot be archived".into()));
                return Ok(());
            }
        }
        if let Some(g) = node.link_group() {
            self.links.insert(g, path.to_path_buf());
        }
        self.summary.entries += 1;
        Ok(())
    }
}

/// The PAX extended header data carrying `node`'s exact mtime, when the header's whole,
/// non-negative seconds cannot.
fn pax_mtime(node: &Node) -> Option<Vec<u8>> {
    let (s, ns) = (node.mtime.0, node.mtime.1);
    if ns == 0 && s >= 0 {
        return None;
    }
    // A decimal number of seconds: -1.7 is (-2 s, 300_000_000 ns).
    let value = if s >= 0 {
        format!("{s}.{ns:09}")
    } else if ns == 0 {
        format!("{s}")
    } else {
        format!("-{}.{:09}", -(s + 1), 1_000_000_000 - ns)
    };
    Some(pax_record("mtime", value.as_bytes()))
}

/// One PAX record: `LEN KEY=VALUE\n`, LEN counting the whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for v in [
            &b"1"[..],
            &[b'x'; 5],
            &[b'y'; 90],
            &[b'z'; 994],
            &[b'w'; 9990],
        ] {
            let r = pax_record("mtime", v);
            let (len, _) = r.split_at(r.iter().position(|&b| b == b' ').expect("space"));
            let len: usize = std::str::from_utf8(len)
                .expect("digits")
                .parse()
                .expect("n");
            assert_eq!(len, r.len(), "{}", String::from_utf8_lossy(&r));
        }
    }

    #[test]
    fn negative_and_fractional_times_are_exact_decimals() {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        for ((s, ns), want) in [
            ((5, 0), None),
            ((5, 7), Some("5.000000007")),
            ((-2, 300_000_000), Some("-1.700000000")),
            ((-1, 1), Some("-0.999999999")),
            ((-3, 0), Some("-3")),
        ] {
            n.mtime = crate::tree::Timestamp(s, ns);
            let got = pax_mtime(&n).map(|r| {
                let r = String::from_utf8(r).expect("utf-8");
                r.split_once('=').expect("=").1.trim_end().to_string()
            });
            assert_eq!(got.as_deref(), want, "({s}, {ns})");
        }
    }
}
