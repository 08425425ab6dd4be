#![no_main]
//! Fuzz target `sealed`: see `targets::sealed` (fuzz/targets.rs) for what it feeds and checks.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::sealed(data);
});
