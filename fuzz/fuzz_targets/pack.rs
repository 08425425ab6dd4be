#![no_main]
//! Fuzz target `pack`: see `targets::pack` (fuzz/targets.rs) for what it feeds and checks.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::pack(data);
});
