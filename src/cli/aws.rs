//! The region and credentials of an S3 repository, read where the AWS tools keep them and
//! handed to the library as values (it reads no environment): docs/cli.md "Environment".
//!
//! Credentials: the profile (`AWS_PROFILE`, else `default`) in the AWS config file
//! (`AWS_CONFIG_FILE`, else `~/.aws/config`), then in the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), then `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`: each later source overrides what an earlier
//! one set. Region: `AWS_DEFAULT_REGION`, else `AWS_REGION`, else `us-east-1`. Empty variables
//! count as unset.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::bail;
use cairn::backend::S3Credentials;

/// The largest AWS config or credentials file read (they are a few hundred bytes).
const MAX_AWS_FILE: u64 = 1 << 20;

/// The S3 credentials and region this process's environment and AWS files give.
pub fn s3_credentials() -> anyhow::Result<S3Credentials> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    credentials_from(env, home.as_deref())
}

/// [`s3_credentials`] from an environment (`env` answers a variable's value) and a home.
fn credentials_from(
    env: impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> anyhow::Result<S3Credentials> {
    let file = |var: &str, default: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".aws").join(default)))
    };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let config_section = match profile.as_str() {
        "default" => profile.clone(),
        p => format!("profile {p}"),
    };
    let mut c = S3Credentials::default();
    if let Some(path) = file("AWS_CONFIG_FILE", "config") {
        take_keys(&path, &config_section, &mut c)?;
    }
    if let Some(path) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
        take_keys(&path, &profile, &mut c)?;
    }
    for (var, field) in [
        ("AWS_ACCESS_KEY_ID", &mut c.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", &mut c.secret_access_key),
        ("AWS_SESSION_TOKEN", &mut c.session_token),
    ] {
        if let Some(v) = env(var) {
            *field = Some(v);
        }
    }
    c.region = env("AWS_DEFAULT_REGION").or_else(|| env("AWS_REGION"));
    Ok(c)
}

/// Sets the keys that section `section` of the INI file at `path` holds. A file that is absent,
/// not a regular file or unreadable is skipped (as the AWS SDKs do); one over the bound is an
/// error naming it.
fn take_keys(path: &Path, section: &str, c: &mut S3Credentials) -> anyhow::Result<()> {
    let Some(text) = read_bounded(path)? else {
        return Ok(());
    };
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            continue;
        }
        if current != Some(section) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let field = match key.trim() {
            "aws_access_key_id" => &mut c.access_key_id,
            "aws_secret_access_key" => &mut c.secret_access_key,
            "aws_session_token" => &mut c.session_token,
            _ => continue,
        };
        *field = Some(value.trim().to_string());
    }
    Ok(())
}

/// The text of a regular file of at most [`MAX_AWS_FILE`] bytes; None when it cannot be read.
fn read_bounded(path: &Path) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    // The user's own file: a link is followed; a FIFO is not waited on.
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
    else {
        return Ok(None);
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    if f.take(MAX_AWS_FILE + 1).read_to_end(&mut bytes).is_err() {
        return Ok(None);
    }
    if bytes.len() as u64 > MAX_AWS_FILE {
        bail!(
            "{} is larger than {} KiB, more than any AWS config or credentials file needs",
            path.display(),
            MAX_AWS_FILE >> 10
        );
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_env(vars: &[(&str, &str)], home: Option<&Path>) -> S3Credentials {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        credentials_from(|k| vars.get(k).filter(|v| !v.is_empty()).cloned(), home).expect("read")
    }

    fn home_with(config: &str, credentials: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("test");
        std::fs::create_dir(home.path().join(".aws")).expect("test");
        std::fs::write(home.path().join(".aws/config"), config).expect("test");
        std::fs::write(home.path().join(".aws/credentials"), credentials).expect("test");
        home
    }

    const CONFIG: &str = "[default]\nregion = eu-west-3\naws_access_key_id = CONFIGKEY\n\n[profile work]\naws_access_key_id = WORKCONFIGKEY\naws_secret_access_key = work config secret\n";
    const CREDENTIALS: &str = "# a comment\n[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = default secret\n; another\n[work]\naws_session_token = WORKTOKEN\n";

    #[test]
    fn variables_override_the_credentials_file_which_overrides_the_config_file() {
        let home = home_with(CONFIG, CREDENTIALS);
        let c = with_env(&[], Some(home.path()));
        assert_eq!(c.access_key_id.as_deref(), Some("DEFAULTKEY"));
        assert_eq!(c.secret_access_key.as_deref(), Some("default secret"));
        // The config file's region is not used (cairn never did): only the variables.
        assert_eq!((c.region, c.session_token), (None, None));
        let c = with_env(
            &[
                ("AWS_ACCESS_KEY_ID", "ENVKEY"),
                ("AWS_SESSION_TOKEN", "ENVTOKEN"),
                ("AWS_REGION", "second"),
                ("AWS_DEFAULT_REGION", "first"),
            ],
            Some(home.path()),
        );
        assert_eq!(c.access_key_id.as_deref(), Some("ENVKEY"));
        assert_eq!(c.secret_access_key.as_deref(), Some("default secret"));
        assert_eq!(c.session_token.as_deref(), Some("ENVTOKEN"));
        assert_eq!(c.region.as_deref(), Some("first"));
        let c = with_env(&[("AWS_REGION", "second")], Some(home.path()));
        assert_eq!(c.region.as_deref(), Some("second"));
    }

    #[test]
    fn a_named_profile_is_read_from_both_files_and_empty_variables_count_as_unset() {
        let home = home_with(CONFIG, CREDENTIALS);
        let c = with_env(
            &[("AWS_PROFILE", "work"), ("AWS_ACCESS_KEY_ID", "")],
            Some(home.path()),
        );
        assert_eq!(c.access_key_id.as_deref(), Some("WORKCONFIGKEY"));
        assert_eq!(c.secret_access_key.as_deref(), Some("work config secret"));
        assert_eq!(c.session_token.as_deref(), Some("WORKTOKEN"));
    }

    #[test]
    fn files_named_by_variables_replace_the_ones_in_home_and_absent_ones_are_skipped() {
        let home = home_with(CONFIG, CREDENTIALS);
        let other = tempfile::tempdir().expect("test");
        let creds = other.path().join("creds");
        std::fs::write(&creds, "[default]\naws_access_key_id=OTHERKEY\n").expect("test");
        let absent = other.path().join("absent");
        let c = with_env(
            &[
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    creds.to_str().expect("utf-8"),
                ),
                ("AWS_CONFIG_FILE", absent.to_str().expect("utf-8")),
            ],
            Some(home.path()),
        );
        assert_eq!(c.access_key_id.as_deref(), Some("OTHERKEY"));
        assert_eq!(c.secret_access_key, None);
        assert_eq!(with_env(&[], None), S3Credentials::default());
        let dir_not_file = with_env(
            &[("AWS_CONFIG_FILE", other.path().to_str().expect("utf-8"))],
            None,
        );
        assert_eq!(dir_not_file, S3Credentials::default());
    }

    #[test]
    fn an_oversized_file_is_an_error_naming_it() {
        let home = home_with(CONFIG, &"#\n".repeat(1 << 20));
        let e = credentials_from(|_| None, Some(home.path())).expect_err("too large");
        assert!(e.to_string().contains(".aws/credentials"), "{e}");
    }
}
