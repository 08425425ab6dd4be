//! Verifying: a restored file (`--verify`), or an existing file kept in its place, is read
//! back and every chunk checked against its keyed id, every hole against zeros.

use std::fs;
use std::io::Read;

use crate::repo::Repository;
use crate::tree::Node;

/// Reads a restored (or kept) file and checks every chunk against its keyed id and every hole
/// is zeros.
pub(super) fn verify_reader(repo: &Repository, mut f: fs::File, node: &Node) -> Result<(), String> {
    let mut buf = Vec::new();
    for (i, part) in node.content.iter().enumerate() {
        buf.clear();
        (&mut f)
            .take(part.len())
            .read_to_end(&mut buf)
            .map_err(|e| format!("verify: read failed: {e}"))?;
        if buf.len() as u64 != part.len() {
            return Err(format!(
                "verify: file is shorter than the snapshot says (part {i})"
            ));
        }
        let ok = match part.chunk() {
            Some(id) => repo.keys().chunk_id(&buf) == id,
            None => buf.iter().all(|&b| b == 0),
        };
        if !ok {
            return Err(format!(
                "verify: content differs from the snapshot in part {i}"
            ));
        }
    }
    let mut extra = [0u8; 1];
    match f.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err("verify: file is longer than the snapshot says".into()),
        Err(e) => Err(format!("verify: {e}")),
    }
}
