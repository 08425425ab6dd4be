//! The `cairn` binary: parse arguments, run one command, print, exit with cli.md's code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    cli::main()
}

/// glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), after
/// which pack-sized buffers come from the heap and stay resident when freed. A fixed threshold
/// keeps pack buffers (which backup recycles itself) in their own mappings, returned to the OS
/// when dropped, while chunk-sized blocks are reused from the heap: peak memory follows what is
/// in use.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Fixing the threshold also fixes the trim threshold (128 KiB): freed heap tops would
        // be returned and faulted in again for every chunk.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}
