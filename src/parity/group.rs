//! One parity group against storage: computing its parity files from its packs, and rebuilding
//! damaged packs from what is left of its columns (repo-format.md §11.1, §11.4). Everything is
//! read in slices of [`SLICE`] bytes of every column, so memory stays at (G + P) × slice plus
//! the P shards being written or the packs being rebuilt.

use std::io;

use serde_bytes::ByteBuf;

use super::code;
use super::format::{self, Member, ParityHeader, HASH_LEN, SECTOR};
use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::id::{content_hash, PackId};
use crate::repo::Repository;

/// Bytes of every column read at once: 1 MiB (256 rows), so a group of 20 + 2 holds 22 MiB.
pub const SLICE: usize = 1 << 20;

/// One slice of one column as read: its bytes (erased sectors zeroed) and which of its sectors
/// are erased (unreadable, past a truncated end, or not hashing to their entry).
struct Column {
    bytes: Vec<u8>,
    erased: Vec<bool>,
}

/// A column of the group in storage: where it is, how long it is, its sector hashes.
pub(crate) struct Source<'a> {
    pub kind: FileKind,
    /// None: the file is known to be gone (every sector within `len` is erased).
    pub name: Option<String>,
    pub len: u64,
    pub hashes: &'a [u8],
}

/// Reads bytes `[off, off + slice_len)` of a column (zeros past its length). An I/O error on
/// the range is retried sector by sector, so a failing sector costs only itself; a missing file
/// erases everything and is not asked again.
fn read_column(backend: &dyn Backend, src: &mut Source<'_>, off: u64, slice_len: usize) -> Column {
    let rows = slice_len.div_ceil(SECTOR);
    let mut c = Column {
        bytes: vec![0; slice_len],
        erased: vec![false; rows],
    };
    let end = (off + slice_len as u64).min(src.len);
    if off >= end {
        return c;
    }
    let real = (end - off) as usize;
    let real_rows = real.div_ceil(SECTOR);
    let Some(name) = src.name.clone() else {
        c.erased[..real_rows].iter_mut().for_each(|e| *e = true);
        return c;
    };
    match backend.get_range(src.kind, &name, off, real) {
        Ok(b) if b.len() == real => c.bytes[..real].copy_from_slice(&b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            src.name = None;
            c.erased[..real_rows].iter_mut().for_each(|e| *e = true);
            return c;
        }
        _ => {
            for k in 0..real_rows {
                let a = k * SECTOR;
                let n = SECTOR.min(real - a);
                match backend.get_range(src.kind, &name, off + a as u64, n) {
                    Ok(b) if b.len() == n => c.bytes[a..a + n].copy_from_slice(&b),
                    _ => c.erased[k] = true,
                }
            }
        }
    }
    let first = (off / SECTOR as u64) as usize;
    for k in 0..real_rows {
        if c.erased[k] {
            continue;
        }
        let a = k * SECTOR;
        let n = SECTOR.min(real - a);
        let h = src
            .hashes
            .get((first + k) * HASH_LEN..(first + k + 1) * HASH_LEN);
        if h != Some(&format::sector_hash(&c.bytes[a..a + n])[..]) {
            c.erased[k] = true;
        }
    }
    for k in 0..real_rows {
        if c.erased[k] {
            let a = k * SECTOR;
            let n = SECTOR.min(slice_len - a);
            c.bytes[a..a + n].fill(0);
        }
    }
    c
}

/// Why a pack could not join a group: it is unreadable, or its bytes do not hash to its name.
pub(crate) struct BadMember {
    pub id: PackId,
    pub why: String,
}

/// Computes and stores the P parity files of a group of packs (`members`: id and length,
/// sorted by id). Every member is read back whole: one whose bytes cannot be read or do not
/// hash to its name is returned as bad and nothing is written. Returns the names written.
pub(crate) fn write_group(
    repo: &Repository,
    members: &[(PackId, u64)],
    p: usize,
) -> Result<std::result::Result<Vec<String>, Vec<BadMember>>> {
    let backend = repo.backend().as_ref();
    let longest = members.iter().map(|m| m.1).max().unwrap_or(0);
    let l = format::shard_len_for(longest);
    let mut hashers: Vec<blake3::Hasher> = members.iter().map(|_| blake3::Hasher::new()).collect();
    let mut hashes: Vec<Vec<u8>> = members
        .iter()
        .map(|m| Vec::with_capacity(format::sectors(m.1) * HASH_LEN))
        .collect();
    let mut shards: Vec<Vec<u8>> = vec![Vec::with_capacity(l as usize); p];
    let mut bad: Vec<BadMember> = Vec::new();
    let mut off = 0u64;
    while off < l {
        let slice_len = SLICE.min((l - off) as usize);
        let mut cols = Vec::with_capacity(members.len());
        for (i, (id, len)) in members.iter().enumerate() {
            let mut col = vec![0u8; slice_len];
            let end = (off + slice_len as u64).min(*len);
            if off < end && !bad.iter().any(|b| b.id == *id) {
                let n = (end - off) as usize;
                match backend.get_range(FileKind::Pack, &id.to_hex(), off, n) {
                    Ok(b) if b.len() == n => {
                        col[..n].copy_from_slice(&b);
                        hashers[i].update(&b);
                        for s in b.chunks(SECTOR) {
                            hashes[i].extend_from_slice(&format::sector_hash(s));
                        }
                    }
                    Ok(_) => bad.push(BadMember {
                        id: *id,
                        why: "it is shorter than listed".into(),
                    }),
                    Err(e) => bad.push(BadMember {
                        id: *id,
                        why: format!("it cannot be read: {e}"),
                    }),
                }
            }
            cols.push(col);
        }
        if bad.is_empty() {
            let refs: Vec<&[u8]> = cols.iter().map(Vec::as_slice).collect();
            for (j, r) in code::encode(p, &refs)?.into_iter().enumerate() {
                shards[j].extend_from_slice(&r);
            }
        }
        off += slice_len as u64;
    }
    for (i, (id, _)) in members.iter().enumerate() {
        if !bad.iter().any(|b| b.id == *id) && hashers[i].finalize().as_bytes() != &id.0 {
            bad.push(BadMember {
                id: *id,
                why: "its bytes do not hash to its name (damaged on the disk, or written wrong)"
                    .into(),
            });
        }
    }
    if !bad.is_empty() {
        return Ok(Err(bad));
    }
    let shard_hashes: Vec<ByteBuf> = shards
        .iter()
        .map(|s| {
            ByteBuf::from(
                s.chunks(SECTOR)
                    .flat_map(format::sector_hash)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let mut header = ParityHeader {
        version: format::HEADER_VERSION,
        index: 0,
        parity_count: p as u32,
        shard_len: l,
        members: members
            .iter()
            .zip(hashes)
            .map(|((id, len), h)| Member {
                id: *id,
                len: *len,
                hashes: ByteBuf::from(h),
            })
            .collect(),
        shard_hashes,
    };
    let mut names = Vec::with_capacity(p);
    for (j, shard) in shards.iter().enumerate() {
        header.index = j as u32;
        let file = format::encode_file(repo.keys(), &header, shard)?;
        let name = hex::encode(content_hash(&file));
        backend
            .put(FileKind::Parity, &name, &file)
            .map_err(crate::repo::backend_err(FileKind::Parity, &name))?;
        names.push(name);
    }
    Ok(Ok(names))
}

/// What rebuilding one damaged member came to.
pub(crate) enum Rebuilt {
    /// The pack's exact bytes (they hash to its name).
    Bytes(Vec<u8>),
    /// It cannot be rebuilt; why.
    Unhealable(String),
}

/// Rebuilds the data columns `targets` of a group from every readable, intact sector of its
/// G + P columns. `parity_files[j]`: the stored parity file holding shard `j`, if any.
pub(crate) fn rebuild(
    backend: &dyn Backend,
    header: &ParityHeader,
    parity_files: &[Option<String>],
    targets: &[usize],
) -> Result<Vec<(usize, Rebuilt)>> {
    let g = header.data_count();
    let p = header.parity();
    let l = header.shard_len;
    let mut sources: Vec<Source<'_>> = header
        .members
        .iter()
        .map(|m| Source {
            kind: FileKind::Pack,
            name: Some(m.id.to_hex()),
            len: m.len,
            hashes: &m.hashes,
        })
        .chain((0..p).map(|j| Source {
            kind: FileKind::Parity,
            name: parity_files.get(j).cloned().flatten(),
            len: l,
            hashes: &header.shard_hashes[j],
        }))
        .collect();
    let mut out: Vec<(usize, Vec<u8>, Option<String>)> = targets
        .iter()
        .map(|t| {
            (
                *t,
                Vec::with_capacity(header.members[*t].len as usize),
                None,
            )
        })
        .collect();
    let mut off = 0u64;
    while off < l {
        let slice_len = SLICE.min((l - off) as usize);
        let mut cols: Vec<Column> = sources
            .iter_mut()
            .map(|s| read_column(backend, s, off, slice_len))
            .collect();
        let rows = slice_len.div_ceil(SECTOR);
        let erased_at = |cols: &[Column], k: usize| -> Vec<usize> {
            (0..g + p).filter(|c| cols[*c].erased[k]).collect()
        };
        let mut k = 0;
        while k < rows {
            let set = erased_at(&cols, k);
            let mut end = k + 1;
            while end < rows && erased_at(&cols, end) == set {
                end += 1;
            }
            let data_erased = set.iter().any(|c| *c < g);
            if data_erased && set.len() > p {
                for (t, _, why) in out.iter_mut() {
                    if set.contains(t) && why.is_none() {
                        *why = Some(format!(
                            "at byte {}, {} of the group's {} columns are damaged or unreadable and it has {p} parity files",
                            off + (k * SECTOR) as u64,
                            set.len(),
                            g + p
                        ));
                    }
                }
            } else if data_erased {
                let a = k * SECTOR;
                let b = (end * SECTOR).min(slice_len);
                let restored = {
                    let data: Vec<Option<&[u8]>> = (0..g)
                        .map(|c| (!set.contains(&c)).then(|| &cols[c].bytes[a..b]))
                        .collect();
                    let par: Vec<Option<&[u8]>> = (0..p)
                        .map(|j| (!set.contains(&(g + j))).then(|| &cols[g + j].bytes[a..b]))
                        .collect();
                    code::decode(&data, &par)?
                };
                for (c, bytes) in restored {
                    cols[c].bytes[a..b].copy_from_slice(&bytes);
                }
            }
            k = end;
        }
        for (t, buf, _) in out.iter_mut() {
            let len = header.members[*t].len;
            if off < len {
                let n = ((len - off) as usize).min(slice_len);
                buf.extend_from_slice(&cols[*t].bytes[..n]);
            }
        }
        off += slice_len as u64;
    }
    Ok(out
        .into_iter()
        .map(|(t, buf, why)| {
            let id = header.members[t].id;
            let r = match why {
                Some(w) => Rebuilt::Unhealable(w),
                None if content_hash(&buf) == id.0 => Rebuilt::Bytes(buf),
                None => Rebuilt::Unhealable(
                    "the rebuilt bytes do not hash to its name (a parity file disagrees with its own sector hashes)"
                        .into(),
                ),
            };
            (t, r)
        })
        .collect())
}

/// Whether a stored file's bytes hash to its name, read in slices (an I/O error anywhere
/// says no, with the error).
pub(crate) fn verify_file(
    backend: &dyn Backend,
    kind: FileKind,
    name: &str,
    len: u64,
) -> std::result::Result<(), String> {
    let mut h = blake3::Hasher::new();
    let mut off = 0u64;
    while off < len {
        let n = SLICE.min((len - off) as usize);
        match backend.get_range(kind, name, off, n) {
            Ok(b) if b.len() == n => {
                h.update(&b);
            }
            Ok(_) => return Err("it is shorter than listed".into()),
            Err(e) => return Err(format!("it cannot be read: {e}")),
        }
        off += n as u64;
    }
    if hex::encode(h.finalize().as_bytes()) == name {
        Ok(())
    } else {
        Err("its bytes do not hash to its name".into())
    }
}

/// An error reading or decoding a parity file's header.
pub(crate) fn read_header(
    backend: &dyn Backend,
    repo: &Repository,
    name: &str,
    size: u64,
) -> Result<ParityHeader> {
    let what = FileKind::Parity.path(name);
    if size < format::TRAILER_LEN as u64 {
        return Err(Error::corrupt(what, "shorter than its trailer"));
    }
    let trailer = backend
        .get_range(
            FileKind::Parity,
            name,
            size - format::TRAILER_LEN as u64,
            format::TRAILER_LEN,
        )
        .map_err(crate::repo::backend_err(FileKind::Parity, name))?;
    let n = format::header_len(&trailer, size, &what)?;
    let sealed = backend
        .get_range(
            FileKind::Parity,
            name,
            size - (format::TRAILER_LEN + n) as u64,
            n,
        )
        .map_err(crate::repo::backend_err(FileKind::Parity, name))?;
    format::decode_header(repo.keys(), &sealed, size, &what)
}
