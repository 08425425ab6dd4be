//! Buffers for direct I/O (`O_DIRECT`), which needs the memory, the file offset and the length
//! of every transfer aligned to the device's block size.

/// Alignment of direct-I/O buffers, offsets and lengths (covers 512-byte and 4 KiB sectors).
pub(crate) const ALIGN: usize = 4096;

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

/// A heap buffer whose first byte is aligned to [`ALIGN`] and whose length is a multiple of it.
pub(crate) struct AlignedBuf(Box<[Block]>);

impl AlignedBuf {
    /// A zeroed buffer of at least `bytes` bytes.
    pub(crate) fn new(bytes: usize) -> Self {
        AlignedBuf(vec![Block([0; ALIGN]); bytes.div_ceil(ALIGN).max(1)].into_boxed_slice())
    }

    /// Length in bytes: a multiple of [`ALIGN`], at least one block.
    pub(crate) fn len(&self) -> usize {
        self.0.len() * ALIGN
    }

    /// The whole buffer as bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `Block` is plain bytes with no padding; the slice covers exactly the boxed
        // blocks and borrows them.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.len()) }
    }

    /// The whole buffer as writable bytes.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.len()) }
    }
}

/// `x` rounded down to a multiple of [`ALIGN`].
pub(crate) fn align_down(x: u64) -> u64 {
    x / ALIGN as u64 * ALIGN as u64
}

/// `x` rounded up to a multiple of [`ALIGN`].
pub(crate) fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN as u64) * ALIGN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_sized() {
        let mut b = AlignedBuf::new(5000);
        assert_eq!(b.len(), 8192);
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        b.as_mut_slice()[8191] = 7;
        assert_eq!(b.as_slice()[8191], 7);
        assert_eq!((align_down(4097), align_up(4097)), (4096, 8192));
        assert_eq!((align_down(4096), align_up(4096)), (4096, 4096));
        assert_eq!(align_up(0), 0);
    }
}
