//! The fuzz targets on stable, without libFuzzer: every file of `fuzz/corpus-seed/<target>/`
//! and a few thousand deterministic mutations of them (bit flips, byte changes, truncations,
//! inserted and deleted ranges, splices, random bytes) go through the same functions the
//! libFuzzer targets call (`fuzz/targets.rs`). Errors are fine; a panic fails the test and
//! prints the input in hex, ready for `xxd -r -p > crash && fuzz/target/.../<target> crash`.
//!
//! Every seed must also be *accepted* by its parser, so a format change that leaves the corpus
//! behind is noticed (regenerate it with fuzz/examples/gen_seeds.rs).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};

use std::path::{Path, PathBuf};
use targets::{mutate, Rng};

/// Mutated inputs per target (spread over its seeds). 8,000 is enough to find, in about a
/// second per target, both parser panics that the format-review hardening fixed (tree content
/// lengths that overflow, chunker bounds fastcdc asserts on). Mutating ciphertext only ever
/// tests that the AEAD refuses it, so the sealed inputs get fewer.
fn mutations(target: &str) -> usize {
    match target {
        "pack" | "sealed" => 2000,
        _ => 8000,
    }
}

/// How many inputs the key-file target may run Argon2 on (a few ms each, more unoptimized);
/// the rest are parsed and validated only.
const KEY_FILE_DERIVATIONS: usize = 12;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus-seed")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, b)
        })
        .collect()
}

/// Runs `f` on `input`; on a panic, says which input did it, in hex, and fails.
fn run(target: &str, what: &str, input: &[u8], f: &dyn Fn(&[u8]) -> bool) -> bool {
    match catch_unwind(AssertUnwindSafe(|| f(input))) {
        Ok(accepted) => accepted,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fuzz target `{target}` panicked on {what} ({} bytes): {msg}\ninput hex: {}",
                input.len(),
                hex::encode(input)
            );
        }
    }
}

fn replay(target: &str) {
    let f = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let seeds = seeds(target);
    for (path, bytes) in &seeds {
        assert!(
            run(target, &path.display().to_string(), bytes, &f),
            "seed {} is not accepted by `{target}`: regenerate the corpus (fuzz/README.md)",
            path.display()
        );
    }
    // Seeded by the target's name, so each target gets its own deterministic sequence.
    let mut rng = Rng(target.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    let mut derivations = 0;
    for i in 0..mutations(target) {
        let (path, seed) = &seeds[i % seeds.len()];
        let other = &seeds[rng.below(seeds.len())].1;
        let input = mutate(&mut rng, seed, other);
        let what = format!("mutation {i} of {}", path.display());
        if target == "key_file" {
            // Argon2 only while the ration lasts: parsing and validation run on every input.
            let p = cairn::format::crypto::key_file_params(&input);
            let derive =
                derivations < KEY_FILE_DERIVATIONS && p.as_ref().is_ok_and(targets::is_cheap);
            derivations += derive as usize;
            run(target, &what, &input, &|d| {
                targets::key_file_opts(d, derive)
            });
        } else {
            run(target, &what, &input, &f);
        }
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// Every target in fuzz/targets.rs has a test here.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in targets::TARGETS {
                assert!(tested.contains(name), "fuzz target `{name}` has no replay test");
            }
        }
    };
}

replay_tests!(
    pack,
    pack_header,
    sealed,
    envelope,
    index,
    tree,
    snapshot,
    key_file,
    config,
    lock
);
