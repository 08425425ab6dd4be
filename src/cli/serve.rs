//! `cairn serve`

use anyhow::{anyhow, Context};
use cairn::backend::{LocalBackend, Location};
use cairn::serve::{serve, ServeOptions};

use super::{Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Allow creating objects only: refuse deleting or replacing any (lock files excepted), so
    /// a client cannot destroy what is stored
    #[arg(long)]
    append_only: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let location = ctx.location()?;
    let Location::Local(path) = Location::parse(&location)? else {
        return Err(anyhow!(
            "cairn serve serves a directory on this machine; {location} is not one"
        ));
    };
    let backend = LocalBackend::new(path);
    serve(
        &backend,
        ServeOptions {
            append_only: a.append_only,
        },
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )
    .with_context(|| format!("serving {location}"))?;
    Ok(EXIT_OK)
}
