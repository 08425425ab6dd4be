#![no_main]
//! Fuzz target `pack_header`: see `targets::pack_header` (fuzz/targets.rs) for what it feeds and checks.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::pack_header(data);
});

// libFuzzer's byte-level mutations, and one time in three an integer of the MessagePack
// swapped for an edge value (targets::replace_msgpack_int): libFuzzer alone hardly ever grows
// an integer's encoding to a huge value.
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed % 3 == 0 {
        if let Some(n) = targets::mutate_msgpack_in_place(data, size, max_size, seed, 4) {
            return n;
        }
    }
    libfuzzer_sys::fuzzer_mutate(data, size, max_size)
});
