//! The repository config (repo-format.md §3): sealed, named `config`, written once by `init`.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::RepoId;

/// The highest format version this code reads (repo-format.md §12, "Version history"): 2, a
/// repository that may hold objects sealed to its public key (repo-format.md §4.6).
pub const FORMAT_VERSION: u32 = PUT_ONLY_FORMAT_VERSION;
/// The format version `init` writes: 1, readable by every cairn.
pub const INIT_FORMAT_VERSION: u32 = 1;
/// The format version of a repository that has (or had) a put-only key: objects sealed to its
/// public key may be in it, which a cairn that reads only format 1 would take for damage.
pub const PUT_ONLY_FORMAT_VERSION: u32 = 2;

/// Default pack target size: 16 MiB. A backup holds at most (uploads + 2) packs in memory, and
/// 16 MiB files are as easy on USB disks and object stores as larger ones.
pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;
/// Smallest pack target size a config may carry: 1 MiB, in bytes (repo-format.md §3.1, §6.3).
pub const MIN_PACK_SIZE: u32 = 1 << 20;
/// Largest pack target size a config may carry: 512 MiB, in bytes (repo-format.md §3.1, §6.3).
pub const MAX_PACK_SIZE: u32 = 512 << 20;

/// The plaintext of the sealed `config` file, a MessagePack map in field order
/// (repo-format.md §3.1). Fixed by `init`; a reader refuses values outside the bounds there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// The repository format version: [`INIT_FORMAT_VERSION`], or [`PUT_ONLY_FORMAT_VERSION`]
    /// once a put-only key was added; above [`FORMAT_VERSION`] is refused as "needs a newer
    /// cairn", `0` is damage.
    pub version: u32,
    /// The repository's own identity, 32 random bytes drawn by `init`.
    pub id: RepoId,
    /// Chunk size bounds in bytes for content-defined chunking (repo-format.md §5).
    pub chunker: ChunkerParams,
    /// Compression policy for new blobs: `auto`, `off` or `zstd:N` with N in 1..=19
    /// (repo-format.md §4.4).
    pub compression: String,
    /// Target pack size in bytes, within [`MIN_PACK_SIZE`]..=[`MAX_PACK_SIZE`].
    pub pack_size: u32,
    /// Parity across packs, as a percentage 1..=50 (repo-format.md §3.1, §14.3); absent: no
    /// parity is maintained. Written only when set, so a config without parity is
    /// byte-for-byte what earlier versions wrote; an older cairn ignores the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<u32>,
}

impl crate::Repository {
    /// The parity group shape the config asks for (repo-format.md §14.3); None without parity.
    pub fn parity_shape(&self) -> crate::Result<Option<crate::parity::Shape>> {
        self.config()
            .parity
            .map(crate::parity::Shape::for_percent)
            .transpose()
    }

    /// Records a parity percentage in the config (`repair parity --parity N%`): the new
    /// sealed config replaces the old one in one rename on a local directory. Key files keep
    /// their copies of the config as it was: a config restored from such a copy has the old
    /// setting, which `repair parity` sets again. Returns whether anything changed.
    pub fn set_parity(&mut self, percent: Option<u32>) -> crate::Result<bool> {
        if let Some(p) = percent {
            crate::parity::Shape::for_percent(p)?;
        }
        if self.config.parity == percent {
            return Ok(false);
        }
        let mut config = self.config.clone();
        config.parity = percent;
        self.replace_config(config)?;
        Ok(true)
    }

    /// Raises the config's format version to [`PUT_ONLY_FORMAT_VERSION`] before the first
    /// put-only key is added, so that a cairn reading only format 1 refuses the repository
    /// instead of taking objects sealed to its public key for damage. Returns whether anything
    /// changed.
    pub fn raise_to_put_only_format(&mut self) -> crate::Result<bool> {
        if self.config.version >= PUT_ONLY_FORMAT_VERSION {
            return Ok(false);
        }
        let mut config = self.config.clone();
        config.version = PUT_ONLY_FORMAT_VERSION;
        self.replace_config(config)?;
        Ok(true)
    }

    /// Seals `config` and puts it in place of the stored one (one rename on a local directory).
    fn replace_config(&mut self, config: RepoConfig) -> crate::Result<()> {
        use crate::backend::{FileKind, CONFIG_NAME};
        if self.keys.is_put_only() {
            return Err(crate::Error::InvalidInput(
                "a put-only key cannot change the config".into(),
            ));
        }
        let plain = crate::format::to_msgpack_named(&config)?;
        let sealed = crate::format::encode_object(
            &self.keys,
            crate::crypto::ObjectKind::Config,
            &[],
            &plain,
            crate::format::Compression::Off,
        )?;
        self.backend
            .replace(FileKind::Config, CONFIG_NAME, &sealed)
            .map_err(super::backend_err(FileKind::Config, CONFIG_NAME))?;
        self.config = config;
        self.config_bytes = sealed;
        Ok(())
    }
}
