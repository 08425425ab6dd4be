//! Helpers shared by the library's unit tests.

use std::sync::Arc;

use crate::backend::MemBackend;
use crate::crypto::KdfParams;
use crate::repo::{InitOptions, Repository};

/// A fresh in-memory repository with 1 MiB packs and the cheapest key derivation, its index
/// loaded.
pub(crate) fn mem_repo(password: &[u8]) -> (Arc<MemBackend>, Repository) {
    let backend = Arc::new(MemBackend::new());
    let opts = InitOptions {
        pack_size: 1 << 20,
        kdf: KdfParams {
            m_cost_kib: KdfParams::MIN_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        },
        ..InitOptions::default()
    };
    let mut repo = Repository::init(backend.clone(), password, &opts).expect("init");
    repo.load_index().expect("index");
    (backend, repo)
}

/// xorshift: deterministic data and choices without a dependency. The state must not be 0.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` incompressible bytes, the same for the same seed.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}
