//! Password sources (cli.md "Global options"): file, command, CAIRN_PASSWORD, terminal prompt.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};
use zeroize::Zeroizing;

use super::Global;

/// Returns the first line of `bytes` without its line ending.
fn first_line(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    Zeroizing::new(line.to_vec())
}

/// Reads the repository password; `create` asks twice on a terminal.
pub fn read(g: &Global, create: bool) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    read_from(
        g.password_file.as_deref(),
        g.password_command.as_deref(),
        "CAIRN_PASSWORD",
        create,
        "repository",
    )
}

/// Reads a password from the first source given: file, command, environment variable, prompt.
pub fn read_from(
    file: Option<&std::path::Path>,
    command: Option<&str>,
    env_var: &str,
    create: bool,
    what: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let pw = if let Some(path) = file {
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("reading password file {}", path.display()))?,
        );
        first_line(&bytes)
    } else if let Some(cmd) = command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running password command {cmd:?}"))?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            bail!("password command {cmd:?} failed ({})", out.status);
        }
        first_line(&stdout)
    } else if let Some(v) = std::env::var_os(env_var) {
        use std::os::unix::ffi::OsStringExt;
        Zeroizing::new(v.into_vec())
    } else if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(format!("enter {what} password: "))?;
        if create {
            let again = rpassword::prompt_password(format!("enter {what} password again: "))?;
            if again != pw {
                bail!("the passwords do not match");
            }
        }
        Zeroizing::new(pw.into_bytes())
    } else {
        return Err(anyhow!(
            "no {what} password given and no terminal to ask on: set {env_var}, or use --password-file or --password-command"
        ));
    };
    if pw.is_empty() {
        bail!("the {what} password is empty");
    }
    Ok(pw)
}
