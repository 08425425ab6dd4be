//! `cairn init`

use anyhow::Context;
use cairn::format::crypto::KdfParams;
use cairn::format::Compression;
use cairn::repo::InitOptions;
use cairn::Repository;
use serde_json::json;

use super::output::outln;
use super::{output, password, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target pack size in MiB (1..=512)
    #[arg(long, value_name = "MIB", default_value_t = cairn::repo::config::DEFAULT_PACK_SIZE >> 20)]
    pack_size: u32,
    /// Compression: auto, off or zstd:N (N = 1..=19)
    #[arg(long, default_value = "auto", value_parser = parse_compression)]
    compression: Compression,
    /// Use the chunker parameters and key of another repository, so data copied between the two deduplicates
    #[arg(long, value_name = "REPO")]
    copy_chunker_params_from: Option<String>,
    /// Parity across packs: N% (1..=50) or off; heals damaged sectors and lost pack files
    /// (README "Parity"). Default: 10% for a local directory, off for SFTP and S3
    #[arg(long, value_name = "N%|off", value_parser = parse_parity)]
    parity: Option<ParityArg>,
    /// Argon2id memory in MiB for the key file (default 64; at least 8)
    #[arg(long, value_name = "MIB", default_value_t = 64, hide = true)]
    kdf_memory_mib: u32,
}

/// `--parity N%|off`: Some(N), or None for off.
#[derive(Clone, Copy, Debug)]
struct ParityArg(Option<u32>);

fn parse_parity(s: &str) -> Result<ParityArg, String> {
    cairn::parity::parse_percent(s).map(ParityArg)
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let backend = ctx.backend()?;
    // A local directory that holds only what an interrupted init leaves is finished or redone
    // (a remote location that is not empty is refused: nothing there is looked at).
    let location = cairn::backend::Location::parse(&ctx.location()?)?;
    let finish_interrupted = match &location {
        cairn::backend::Location::Local(p) => {
            cairn::repo::holds_only_init_leftovers(p).unwrap_or(false)
        }
        _ => false,
    };
    // Reading every new pack back is cheap from a local disk, costly over a network.
    let parity = a.parity.map(|p| p.0).unwrap_or(match location {
        cairn::backend::Location::Local(_) => Some(cairn::parity::DEFAULT_PERCENT),
        _ => None,
    });
    let mut opts = InitOptions {
        pack_size: a.pack_size.saturating_mul(1 << 20),
        compression: a.compression,
        kdf: KdfParams {
            m_cost_kib: a.kdf_memory_mib.saturating_mul(1024),
            ..KdfParams::default()
        },
        host: super::hostname(),
        user: super::username(),
        now_ns: super::now_ns(),
        finish_interrupted,
        parity,
        ..InitOptions::default()
    };
    if let Some(other) = &a.copy_chunker_params_from {
        let src = ctx
            .open_at(other, false, || {
                password::read_from(
                    None,
                    None,
                    "CAIRN_FROM_PASSWORD",
                    false,
                    "source repository",
                )
                .or_else(|_| password::read(&ctx.g, false))
            })
            .with_context(|| format!("opening {other}"))?;
        opts.chunker_from = Some((src.config().chunker, src.keys().chunker.0));
    }
    let pw = password::read(&ctx.g, true)?;
    let repo = Repository::init(backend, &pw, &opts)?;
    ctx.print_warnings(&repo);
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "init",
            "repository_id": repo.id().to_hex(),
            "location": repo.backend().location(),
            "key_id": repo.key_id().to_hex(),
            "format_version": repo.config().version,
            "parity_percent": repo.config().parity,
        }))?;
    } else if !ctx.g.quiet {
        outln!(
            "created cairn repository {} at {}",
            repo.id().to_hex(),
            repo.backend().location()
        )?;
        match repo.config().parity {
            Some(p) => {
                outln!("parity {p}%: damaged or lost packs can be rebuilt (`cairn repair packs`)")?
            }
            None => outln!("parity off")?,
        }
        outln!("Keep the password safe: without it the data cannot be read back.")?;
    }
    Ok(EXIT_OK)
}
