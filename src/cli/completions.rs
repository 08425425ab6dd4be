//! `cairn completions SHELL` and `cairn man DIR`

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

use super::{Cli, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    // Generated into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cairn", &mut script);
    super::output::stdout().write_all(&script)?;
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write cairn.1 and one page per command into
    dir: PathBuf,
}

/// Writes `cairn.1` and `cairn-<command>.1` for every subcommand.
pub fn man(a: ManArgs) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&a.dir)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, &a.dir)?;
    Ok(EXIT_OK)
}
