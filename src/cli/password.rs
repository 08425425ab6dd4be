//! Password sources (docs/cli.md "Passwords"): file, command, environment variable, terminal
//! prompt — each read with a bound (README "Input bounds").
//!
//! A password is the first line of a file or of a command's output, without its `\n` or
//! `\r\n`; an environment variable is used whole. A file is read only up to its first line end;
//! a command's whole output is read (it must end), and a command that prints more than the
//! bound is killed and reaped. A FIFO or pipe (`--password-file <(pass show cairn)`) is a file
//! like any other; one with no writer reads as empty. Waiting on a slow source never blocks a
//! Ctrl-C.

use std::io::IsTerminal;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, bail, Context};
use zeroize::Zeroizing;

use super::input::{self, End, Kind};
use super::Global;

/// The longest password: 64 KiB, far beyond any passphrase, yet a bound on what a password
/// file's first line, a password command's whole output and a password variable may hold.
pub const MAX_PASSWORD: usize = 64 * 1024;

/// Drops a trailing `\r` (a file written on Windows).
fn strip_cr(line: &mut Zeroizing<Vec<u8>>) {
    if line.last() == Some(&b'\r') {
        line.pop();
        // The spare capacity is wiped with the rest when the buffer drops.
    }
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
    file: Option<&Path>,
    command: Option<&str>,
    env_var: &str,
    create: bool,
    what: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let pw = if let Some(path) = file {
        from_file(path, what)?
    } else if let Some(cmd) = command {
        from_command(cmd, what)?
    } else if let Some(v) = std::env::var_os(env_var) {
        use std::os::unix::ffi::OsStringExt;
        let v = Zeroizing::new(v.into_vec());
        if v.len() > MAX_PASSWORD {
            bail!(
                "{env_var} is {} bytes long; a password is at most {} bytes",
                v.len(),
                MAX_PASSWORD
            );
        }
        v
    } else if std::io::stdin().is_terminal() {
        // The terminal's line discipline bounds a typed line (4096 bytes on Linux).
        let pw = Zeroizing::new(rpassword::prompt_password(format!(
            "enter {what} password: "
        ))?);
        if create {
            let again = Zeroizing::new(rpassword::prompt_password(format!(
                "enter {what} password again: "
            ))?);
            if again != pw {
                bail!("the passwords do not match");
            }
        }
        Zeroizing::new(pw.as_bytes().to_vec())
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

/// The first line of a file, read no further than its line end.
fn from_file(path: &Path, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let name = format!("{what} password file");
    let (mut f, kind) = input::open(path, &name)?;
    if kind == Kind::Device {
        bail!(
            "{name} {} is a device, not a file, a pipe or a terminal",
            path.display()
        );
    }
    let mut line = Zeroizing::new(Vec::new());
    let end = input::read_bounded(&mut f, MAX_PASSWORD, true, &mut line)
        .with_context(|| format!("reading {name} {}", path.display()))?;
    if end == End::Limit {
        bail!(
            "{name} {} has no line end in its first {} KiB: the password is the file's first line, at most {} bytes",
            path.display(),
            MAX_PASSWORD / 1024,
            MAX_PASSWORD
        );
    }
    strip_cr(&mut line);
    if line.is_empty() {
        let why = match (end, kind) {
            (End::Eof, Kind::Pipe) => " (a FIFO or pipe with no writer, or one that wrote nothing)",
            (End::Eof, _) => " (the file is empty)",
            _ => " (its first line is empty)",
        };
        bail!("the {what} password is empty: {}{why}", path.display());
    }
    Ok(line)
}

/// The first line of a command's output. The command must end; its whole output is bounded.
fn from_command(cmd: &str, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {what} password command {cmd:?}"))?;
    let out = read_child(&mut child);
    // Never leave a child behind: one whose output did not end (too much of it, a Ctrl-C, a
    // read error) is killed; then it is reaped and its pipe closed.
    if !matches!(out, Ok((End::Eof, _))) {
        let _ = child.kill();
    }
    drop(child.stdout.take());
    let status = wait(&mut child);
    let (end, mut output) =
        out.with_context(|| format!("running {what} password command {cmd:?}"))?;
    if end == End::Limit {
        bail!(
            "{what} password command {cmd:?} printed more than {} KiB; it must print the password on its first line and end",
            MAX_PASSWORD / 1024
        );
    }
    let status = status?;
    if !status.success() {
        bail!("{what} password command {cmd:?} failed ({status})");
    }
    let first = output
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(output.len());
    output[first..].fill(0);
    output.truncate(first);
    strip_cr(&mut output);
    if output.is_empty() {
        bail!("the {what} password is empty: the first line that password command {cmd:?} printed is empty");
    }
    Ok(output)
}

/// Reads a child's whole stdout within the bound.
fn read_child(child: &mut Child) -> anyhow::Result<(End, Zeroizing<Vec<u8>>)> {
    let mut out = Zeroizing::new(Vec::new());
    let stdout = child
        .stdout
        .as_mut()
        .ok_or_else(|| anyhow!("no pipe from the command"))?;
    input::set_nonblocking(stdout)?;
    let end = input::read_bounded(stdout, MAX_PASSWORD, false, &mut out)?;
    Ok((end, out))
}

/// Waits for a child to end; a Ctrl-C kills it (and is then reported).
fn wait(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if input::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(cairn::Error::Interrupted.into());
        }
        // A child that closed its output but goes on running: look again shortly.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
