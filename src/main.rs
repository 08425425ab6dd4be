//! The `cairn` binary: parse arguments, run one command, print, exit with docs/cli.md's code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    raise_open_file_limit();
    cli::main()
}

/// A restore keeps the files of its batches in flight open (two descriptors for large ones);
/// the usual soft limit of 1024 is lower than the hard limit for historical reasons only
/// (select(2)), which cairn does not use. Raised to the hard limit, at most 65536.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed; no other memory is touched.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = lim.rlim_max.min(1 << 16);
            if lim.rlim_cur < want {
                lim.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), after
/// which pack-sized buffers come from the heap and stay resident when freed. A fixed threshold
/// keeps pack buffers (which backup recycles itself) in their own mappings, returned to the OS
/// when dropped, while chunk-sized blocks are reused from the heap: peak memory follows what is
/// in use. glibc also gives threads up to 8 heaps ("arenas") per core, each keeping up to the
/// trim threshold of freed memory: one per core plus the main one is enough for a pipeline
/// with one stage per core, and 4 MiB kept per heap covers a few chunks without faulting them
/// in again (2 MiB cost 10-30% of backup time, 8 MiB 6-10 MiB of peak memory).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores + 1).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            // Fixing the threshold also fixes the trim threshold (128 KiB): freed heap tops
            // would be returned and faulted in again for every chunk.
            libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
