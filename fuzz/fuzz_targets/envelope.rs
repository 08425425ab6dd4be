#![no_main]
//! Fuzz target `envelope`: see `targets::envelope` (fuzz/targets.rs) for what it feeds and checks.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::envelope(data);
});
