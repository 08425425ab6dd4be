//! `cairn key list|add|remove|passwd`

use cairn::format::crypto::KdfParams;
use cairn::format::id::KeyId;
use serde_json::json;

use super::output::outln;
use super::{output, password, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(clap::Subcommand, Debug)]
enum KeyCmd {
    /// List the key files; the one in use is marked
    List,
    /// Add a password that opens the repository (--put-only: one that can only make backups)
    Add {
        #[command(flatten)]
        pw: NewPw,
        /// Make a put-only key: it can make backups, but cannot read anything stored (file
        /// contents, names, trees, other snapshots) and cannot delete (repo-format.md §2.2)
        #[arg(long)]
        put_only: bool,
    },
    /// Remove a key file (not the last, not the one in use)
    Remove {
        /// Key id (full or a unique prefix)
        id: String,
    },
    /// Change the password in use
    Passwd(NewPw),
}

#[derive(clap::Args, Debug)]
struct NewPw {
    /// Read the new password from this file's first line (else CAIRN_NEW_PASSWORD or a prompt)
    #[arg(long, value_name = "F")]
    new_password_file: Option<std::path::PathBuf>,
    /// Argon2id memory in MiB for the new key file
    #[arg(long, value_name = "MIB", default_value_t = 64, hide = true)]
    kdf_memory_mib: u32,
}

fn new_password(n: &NewPw) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    password::read_from(
        n.new_password_file.as_deref(),
        None,
        "CAIRN_NEW_PASSWORD",
        true,
        "new",
    )
}

fn kdf(n: &NewPw) -> KdfParams {
    KdfParams {
        m_cost_kib: n.kdf_memory_mib.saturating_mul(1024),
        ..KdfParams::default()
    }
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    match a.cmd {
        KeyCmd::List => {
            let keys = repo.list_keys()?;
            if ctx.g.json {
                let arr: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id.to_hex(),
                            "current": k.id == repo.key_id(),
                            "host": k.info.as_ref().map(|i| i.host.clone()),
                            "user": k.info.as_ref().map(|i| i.user.clone()),
                            "created": k.info.as_ref().map(|i| output::rfc3339(i.created_ns, 0)),
                            "kdf_memory_kib": k.params.map(|p| p.m_cost_kib),
                            "kdf_passes": k.params.map(|p| p.t_cost),
                            "error": k.error,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&arr)?)?;
            } else {
                outln!("  ID        Host / user          Created              KDF")?;
                for k in &keys {
                    let cur = if k.id == repo.key_id() { "*" } else { " " };
                    let who = k
                        .info
                        .as_ref()
                        .map(|i| format!("{}@{}", i.user, i.host))
                        .unwrap_or_else(|| "(other password)".into());
                    let created = k
                        .info
                        .as_ref()
                        .map(|i| output::local_time(i.created_ns))
                        .unwrap_or_default();
                    let kdf = match (&k.params, &k.error) {
                        (Some(p), _) => {
                            format!("argon2id {} MiB x{}", p.m_cost_kib / 1024, p.t_cost)
                        }
                        (None, Some(e)) => format!("DAMAGED: {e}"),
                        _ => String::new(),
                    };
                    outln!(
                        "{cur} {:<9} {:<20} {:<20} {kdf}",
                        k.id.short(),
                        who,
                        created
                    )?;
                }
            }
        }
        KeyCmd::Add { pw: n, put_only } => {
            let pw = new_password(&n)?;
            let (host, user, now) = (super::hostname(), super::username(), super::now_ns());
            if put_only {
                let _lock = ctx.lock(&repo, true, "key add --put-only")?;
                let id = repo.add_put_only_key(&pw, kdf(&n), &host, &user, now)?;
                report(ctx, "added put-only key", &id)?;
            } else {
                let id = repo.add_key(&pw, kdf(&n), &host, &user, now)?;
                report(ctx, "added", &id)?;
            }
        }
        KeyCmd::Remove { id } => {
            let keys = repo.list_keys()?;
            let hits: Vec<KeyId> = keys
                .iter()
                .map(|k| k.id)
                .filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let target = match hits.as_slice() {
                [one] if id.len() >= 4 => *one,
                [] => anyhow::bail!("no key matches {id:?}"),
                _ => anyhow::bail!("key selector {id:?} is ambiguous or shorter than 4 hex digits"),
            };
            repo.remove_key(&target)?;
            report(ctx, "removed", &target)?;
        }
        KeyCmd::Passwd(n) => {
            let pw = new_password(&n)?;
            let id = repo.change_password(
                &pw,
                kdf(&n),
                &super::hostname(),
                &super::username(),
                super::now_ns(),
            )?;
            report(ctx, "changed password; new key", &id)?;
        }
    }
    Ok(EXIT_OK)
}

fn report(ctx: &Ctx, what: &str, id: &KeyId) -> anyhow::Result<()> {
    if ctx.g.json {
        output::json_line(&json!({"result": what, "key_id": id.to_hex()}))
    } else {
        if !ctx.g.quiet {
            outln!("{what} {}", id.to_hex())?;
        }
        Ok(())
    }
}
