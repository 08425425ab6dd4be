//! A regular file's content as a [`Read`]: chunks are fetched, verified and handed out one at
//! a time; holes are zeros that are never stored. Memory: one chunk (at most the chunker's
//! maximum chunk size) whatever the file's size.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::Error;
use crate::repo::Repository;
use crate::tree::{ContentPart, Node};

/// Reads a file node's content from the repository. A repository error comes out of
/// [`Read::read`] as an `io::Error` wrapping the [`crate::Error`] (`io::Error::downcast`
/// gets it back).
pub struct ContentReader<'r> {
    repo: &'r Repository,
    parts: std::vec::IntoIter<ContentPart>,
    /// The chunk being handed out, and how much of it is gone.
    chunk: Vec<u8>,
    pos: usize,
    /// Zero bytes still to hand out for a hole.
    zeros: u64,
    cancel: Option<Arc<AtomicBool>>,
}

impl<'r> ContentReader<'r> {
    /// A reader over `node`'s content parts (empty for a non-file).
    pub fn new(repo: &'r Repository, node: &Node, cancel: Option<Arc<AtomicBool>>) -> Self {
        ContentReader {
            repo,
            parts: node.content.clone().into_iter(),
            chunk: Vec::new(),
            pos: 0,
            zeros: 0,
            cancel,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.zeros > 0 {
                let n = (buf.len() as u64).min(self.zeros) as usize;
                buf[..n].fill(0);
                self.zeros -= n as u64;
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let Some(part) = self.parts.next() else {
                return Ok(0);
            };
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(io::Error::other(Error::Interrupted));
            }
            match part.chunk() {
                None => self.zeros = part.len(),
                Some(id) => {
                    let data = self.repo.read_blob(&id).map_err(io::Error::other)?;
                    if data.len() as u64 != part.len() {
                        return Err(io::Error::other(Error::corrupt(
                            format!("data blob {}", id.short()),
                            format!(
                                "it holds {} bytes, the file's tree says {}",
                                data.len(),
                                part.len()
                            ),
                        )));
                    }
                    self.chunk = data;
                    self.pos = 0;
                }
            }
        }
    }
}
