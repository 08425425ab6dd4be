//! The Reed-Solomon code of a parity group (repo-format.md §14.1), slice by slice. The code is
//! position-wise at 64-byte granularity: bytes `[a, b)` of the recovery shards depend only on
//! bytes `[a, b)` of the data columns, so any 64-byte-aligned slice of the rows is encoded or
//! decoded on its own, and memory stays at (G + P) × slice. The only file naming
//! `reed-solomon-simd`.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::error::{Error, Result};

fn rs_err(e: reed_solomon_simd::Error) -> Error {
    Error::InvalidInput(format!("Reed-Solomon: {e}"))
}

/// Recovery shards `0..p` of `columns` (G slices of one length, a non-zero multiple of 64).
#[cfg(test)]
pub fn encode(p: usize, columns: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    Encoder::default().encode(p, columns)
}

/// An encoder kept from slice to slice: its work space (tens of MiB for a group of 20) is
/// allocated once, not once per slice (measured: the allocations cost more than the encoding).
#[derive(Default)]
pub struct Encoder {
    enc: Option<ReedSolomonEncoder>,
}

impl Encoder {
    /// As [`encode`].
    pub fn encode(&mut self, p: usize, columns: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        let len = columns.first().map_or(0, |c| c.len());
        let enc = match &mut self.enc {
            Some(e) => {
                e.reset(columns.len(), p, len).map_err(rs_err)?;
                e
            }
            None => self
                .enc
                .insert(ReedSolomonEncoder::new(columns.len(), p, len).map_err(rs_err)?),
        };
        for c in columns {
            enc.add_original_shard(c).map_err(rs_err)?;
        }
        let out = enc.encode().map_err(rs_err)?;
        Ok(out.recovery_iter().map(<[u8]>::to_vec).collect())
    }
}

/// Restores the missing data columns of one slice. `data[i]` is data column `i`'s slice or
/// None when erased; `parity[j]` likewise for recovery shard `j`. Returns `(i, bytes)` for each
/// erased data column; an error when more than `parity.len()` columns are erased.
#[cfg(test)]
pub fn decode(data: &[Option<&[u8]>], parity: &[Option<&[u8]>]) -> Result<Vec<(usize, Vec<u8>)>> {
    Decoder::default().decode(data, parity)
}

/// A decoder kept from slice to slice, as [`Encoder`] is: its work space is allocated once per
/// rebuild, not once per run of damaged rows.
#[derive(Default)]
pub struct Decoder {
    dec: Option<ReedSolomonDecoder>,
}

impl Decoder {
    /// As [`decode`].
    pub fn decode(
        &mut self,
        data: &[Option<&[u8]>],
        parity: &[Option<&[u8]>],
    ) -> Result<Vec<(usize, Vec<u8>)>> {
        let missing: Vec<usize> = (0..data.len()).filter(|i| data[*i].is_none()).collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let len = data
            .iter()
            .chain(parity)
            .flatten()
            .map(|s| s.len())
            .next()
            .ok_or_else(|| Error::InvalidInput("Reed-Solomon: nothing to decode from".into()))?;
        let dec = match &mut self.dec {
            Some(d) => {
                d.reset(data.len(), parity.len(), len).map_err(rs_err)?;
                d
            }
            None => self
                .dec
                .insert(ReedSolomonDecoder::new(data.len(), parity.len(), len).map_err(rs_err)?),
        };
        for (i, s) in data.iter().enumerate() {
            if let Some(s) = s {
                dec.add_original_shard(i, s).map_err(rs_err)?;
            }
        }
        for (j, s) in parity.iter().enumerate() {
            if let Some(s) = s {
                dec.add_recovery_shard(j, s).map_err(rs_err)?;
            }
        }
        let out = dec.decode().map_err(rs_err)?;
        missing
            .into_iter()
            .map(|i| {
                out.restored_original(i)
                    .map(|b| (i, b.to_vec()))
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("Reed-Solomon: column {i} not restored"))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(g: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
        (0..g)
            .map(|i| {
                (0..len)
                    .map(|b| {
                        (b as u8)
                            .wrapping_mul(31)
                            .wrapping_add(seed ^ (i as u8 * 7))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn slice_wise_encoding_equals_whole_shard_encoding() {
        let (g, p, len) = (5, 3, 3 * 4096 + 192);
        let cols = columns(g, len, 1);
        let refs: Vec<&[u8]> = cols.iter().map(Vec::as_slice).collect();
        let whole = encode(p, &refs).expect("test");
        for slice in [64, 4096, 8192 + 64] {
            let mut pieces = vec![Vec::new(); p];
            let mut at = 0;
            while at < len {
                let end = (at + slice).min(len);
                let s: Vec<&[u8]> = cols.iter().map(|c| &c[at..end]).collect();
                for (j, r) in encode(p, &s).expect("test").into_iter().enumerate() {
                    pieces[j].extend_from_slice(&r);
                }
                at = end;
            }
            assert_eq!(pieces, whole, "slices of {slice}");
        }
    }

    #[test]
    fn any_p_erased_columns_of_a_row_are_restored_whichever_they_are() {
        let (g, p, len) = (4, 2, 4096);
        let cols = columns(g, len, 9);
        let refs: Vec<&[u8]> = cols.iter().map(Vec::as_slice).collect();
        let rec = encode(p, &refs).expect("test");
        // Every pair of the G + P columns erased (data, parity, or one of each).
        for a in 0..g + p {
            for b in a..g + p {
                let data: Vec<Option<&[u8]>> = (0..g)
                    .map(|i| (i != a && i != b).then_some(cols[i].as_slice()))
                    .collect();
                let par: Vec<Option<&[u8]>> = (0..p)
                    .map(|j| (g + j != a && g + j != b).then_some(rec[j].as_slice()))
                    .collect();
                for (i, bytes) in decode(&data, &par).expect("test") {
                    assert_eq!(bytes, cols[i], "erased {a} and {b}");
                }
            }
        }
        // One more than P erased cannot be decoded.
        let data = [None, None, None, Some(cols[3].as_slice())];
        let par = [Some(rec[0].as_slice()), Some(rec[1].as_slice())];
        assert!(decode(&data, &par).is_err());
    }

    #[test]
    fn a_group_of_one_pack_is_protected_too() {
        let cols = columns(1, 128, 3);
        let rec = encode(1, &[cols[0].as_slice()]).expect("test");
        let back = decode(&[None], &[Some(rec[0].as_slice())]).expect("test");
        assert_eq!(back, vec![(0, cols[0].clone())]);
    }
}
