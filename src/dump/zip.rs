//! Zip output, written as a stream (the writer never seeks): every entry stored, not
//! compressed, with a data descriptor after its content; zip64 fields for files of 4 GiB or
//! more and for large archives. Each entry carries its Unix permission bits (`& 0o777`: zip
//! has no setuid, setgid or sticky bits) and its mtime twice: as the DOS time (UTC, two-second
//! steps, 1980–2107) and as an extended-timestamp field (0x5455, whole seconds) that `unzip`
//! prefers.
//!
//! Zip names and symlink targets are UTF-8 strings: an entry whose name or target is not
//! UTF-8 stops the dump with an error naming it (tar keeps such names exactly). Zip has no
//! hard links (each path is stored with its content) and no special files (FIFOs, devices
//! and sockets are left out and listed in the summary).

use std::io::Write;
use std::path::Path;

use zip::write::{FileOptions, FullFileOptions, StreamWriter};
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{visit, ContentReader, DumpOptions, DumpSummary, Guard, Selected, Sink};
use crate::error::{Error, Result};
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
    let mut sink = ZipSink {
        repo,
        opts,
        zip: ZipWriter::new_stream(guard),
        summary: DumpSummary::default(),
    };
    let result = visit(repo, selected, opts, &mut sink);
    if let Err(e) = result {
        // Dropping the writer would finish the archive; a failed dump must not look whole.
        failed.set();
        return Err(e);
    }
    let out = sink.zip.finish().map_err(|e| zip_err(e, &opts.output))?;
    out.into_inner()
        .into_inner()
        .flush()
        .map_err(|e| Error::io(&opts.output, e))?;
    Ok(sink.summary)
}

struct ZipSink<'a, W: Write> {
    repo: &'a Repository,
    opts: &'a DumpOptions,
    zip: ZipWriter<StreamWriter<Guard<W>>>,
    summary: DumpSummary,
}

impl<W: Write> Sink for ZipSink<'_, W> {
    fn entry(&mut self, path: &Path, node: &Node) -> Result<()> {
        let skip = |why: &str| (path.to_path_buf(), why.to_string());
        let name = match node.kind {
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Socket => {
                self.summary.skipped.push(skip(&format!(
                    "a zip archive cannot hold a {}",
                    node.kind.name()
                )));
                return Ok(());
            }
            _ => utf8(path.as_os_str().as_encoded_bytes(), path, "name")?,
        };
        let options = options(node)?;
        let output = self.opts.output.as_path();
        match node.kind {
            // A directory is an empty entry named `name/`. Not `add_directory`: on a stream
            // (zip 6.0) it sets the data-descriptor flag without writing the descriptor, and
            // Info-ZIP `unzip` then rejects the archive as overlapping ("possible zip bomb").
            // Readers take the trailing `/` as what makes an entry a directory.
            NodeKind::Dir => self
                .zip
                .start_file(format!("{name}/"), options)
                .map_err(|e| zip_err(e, output))?,
            NodeKind::Symlink => {
                let target = utf8(
                    node.target.as_deref().unwrap_or_default(),
                    path,
                    "link target",
                )?;
                self.zip
                    .add_symlink(name, target, options)
                    .map_err(|e| zip_err(e, output))?
            }
            _ => {
                self.zip
                    .start_file(name, options.large_file(node.size >= u32::MAX as u64))
                    .map_err(|e| zip_err(e, output))?;
                let mut reader = ContentReader::new(self.repo, node, self.opts.cancel.clone());
                self.summary.bytes += super::copy(&mut reader, &mut self.zip, self.opts)?;
            }
        }
        self.summary.entries += 1;
        Ok(())
    }
}

fn utf8<'a>(bytes: &'a [u8], path: &Path, what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| {
        Error::InvalidInput(format!(
            "{}: its {what} is not UTF-8, which a zip archive cannot hold; dump it with --archive tar, which keeps name bytes exactly",
            path.display()
        ))
    })
}

/// Stored, with the node's permission bits and mtime (DOS time and extended timestamp).
fn options(node: &Node) -> Result<FullFileOptions<'static>> {
    let secs = node.mtime.0;
    let dos = jiff::Timestamp::from_second(secs)
        .ok()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC))
        .and_then(|z| {
            DateTime::from_date_and_time(
                u16::try_from(z.year()).ok()?,
                z.month() as u8,
                z.day() as u8,
                z.hour() as u8,
                z.minute() as u8,
                z.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default();
    let mut o: FullFileOptions<'static> = FileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(node.mode & 0o777)
        .last_modified_time(dos);
    // Extended timestamp (Info-ZIP "UT"): flags (bit 0: mtime present), mtime as u32 LE.
    let ut = u32::try_from(secs.max(0)).unwrap_or(u32::MAX);
    let mut field = vec![1u8];
    field.extend_from_slice(&ut.to_le_bytes());
    o.add_extra_data(0x5455, &field, false)
        .map_err(|e| Error::InvalidInput(format!("zip extra field: {e}")))?;
    Ok(o)
}

fn zip_err(e: zip::result::ZipError, output: &Path) -> Error {
    match e {
        zip::result::ZipError::Io(io) => super::from_io(io, output),
        other => Error::InvalidInput(format!("writing the zip archive: {other}")),
    }
}
