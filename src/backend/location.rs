//! Where a repository is: a local directory, an SFTP server or an S3-compatible bucket.
//!
//! Accepted forms (docs/cli.md "Repository locations"):
//! - a path (`/mnt/usb/repo`, `repo`): a local directory, the default;
//! - `sftp://[user@]host[:port]/absolute/path`, and restic's `sftp:[user@]host:/absolute/path`;
//!   the host may be an alias of `~/.ssh/config` (the system `ssh` client makes the connection);
//! - `s3:http(s)://endpoint[:port]/bucket[/prefix]`;
//! - `ssh://[user@]host[:port]/absolute/path`: a `cairn serve` on the host, started through
//!   the system `ssh` client (docs/serve-protocol.md).

use std::fmt;
use std::path::PathBuf;

/// A parsed repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine, as the user wrote it (relative paths stay relative; the
    /// path may be a symbolic link).
    Local(PathBuf),
    /// A directory on an SFTP server, reached through the system `ssh` client.
    Sftp {
        /// `[user@]host` or `ssh://[user@]host[:port]`, as `ssh` takes it.
        endpoint: String,
        /// Absolute directory on the server.
        path: String,
    },
    /// A repository served by `cairn serve` on a host, reached through the system `ssh`
    /// client, which runs `cairn serve --repo PATH` there (or the forced command of the key
    /// it logs in with).
    Ssh {
        /// The login name, when given (`user@`); else ssh's own choice (`~/.ssh/config`).
        user: Option<String>,
        /// The host or `~/.ssh/config` alias.
        host: String,
        /// The port, when given; else ssh's own choice.
        port: Option<u16>,
        /// Absolute directory on the host.
        path: String,
    },
    /// Objects under a key prefix of an S3-compatible bucket.
    S3 {
        /// `http(s)://host[:port]`.
        endpoint: String,
        /// The bucket's name, the first path component after the endpoint.
        bucket: String,
        /// Key prefix inside the bucket ("" for the whole bucket), without slashes at the ends.
        prefix: String,
    },
}

/// Why a location string cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("repository location {location:?}: {why}")]
pub struct LocationError {
    /// The location string as given (`--repo`, `CAIRN_REPOSITORY`).
    pub location: String,
    /// What is wrong with it, usually with the form to use
    /// (`"no bucket: use s3:http(s)://endpoint/bucket[/prefix]"`).
    pub why: String,
}

impl Location {
    /// Parses a location in one of the forms of the module documentation. A string with no
    /// `sftp:` or `s3:` prefix is a local path (the empty string is refused).
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let err = |why: &str| LocationError {
            location: s.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = s.strip_prefix("sftp://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => return Err(err("no path: use sftp://[user@]host[:port]/absolute/path")),
            };
            if authority.is_empty() || authority.ends_with('@') {
                return Err(err("no host: use sftp://[user@]host[:port]/absolute/path"));
            }
            return Ok(Location::Sftp {
                endpoint: format!("ssh://{authority}"),
                path: clean_path(path).ok_or_else(|| err("no path after the host"))?,
            });
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            const FORM: &str = "use ssh://[user@]host[:port]/absolute/path";
            let Some(i) = rest.find('/') else {
                return Err(err(&format!("no path: {FORM}")));
            };
            let (authority, path) = (&rest[..i], &rest[i..]);
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            // An IPv6 address goes in brackets when a port follows or not: `[::1]:2222`.
            let (host, port) = match hostport.strip_prefix('[') {
                Some(v6) => match v6.split_once(']') {
                    Some((h, "")) => (h, None),
                    Some((h, p)) => match p.strip_prefix(':').map(str::parse::<u16>) {
                        Some(Ok(p)) if p != 0 => (h, Some(p)),
                        _ => return Err(err(&format!("{p:?} is not a port: {FORM}"))),
                    },
                    None => return Err(err(&format!("no closing bracket: {FORM}"))),
                },
                None => match hostport.rsplit_once(':') {
                    Some((h, p)) => {
                        let port = p
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(|| err(&format!("{p:?} is not a port: {FORM}")))?;
                        (h, Some(port))
                    }
                    None => (hostport, None),
                },
            };
            // ssh would read a leading '-' as an option; spaces and quotes are no host names.
            let plain = |v: &str| {
                !v.is_empty()
                    && !v.starts_with('-')
                    && v.chars()
                        .all(|c| c.is_ascii_graphic() && !"'\"\\`$;|&<>".contains(c))
            };
            if !plain(host) {
                return Err(err(&format!("no usable host name: {FORM}")));
            }
            if user.is_some_and(|u| !plain(u)) {
                return Err(err(&format!("no usable user name: {FORM}")));
            }
            return Ok(Location::Ssh {
                user: user.map(str::to_string),
                host: host.to_string(),
                port,
                path: clean_path(path).ok_or_else(|| err("no path after the host"))?,
            });
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            let Some((host, path)) = rest.split_once(':') else {
                return Err(err(
                    "use sftp:[user@]host:/absolute/path or sftp://[user@]host[:port]/absolute/path",
                ));
            };
            if host.is_empty() || host.ends_with('@') {
                return Err(err("no host: use sftp:[user@]host:/absolute/path"));
            }
            if !path.starts_with('/') {
                return Err(err(
                    "the path on the server must be absolute (sftp:host:/home/me/repo): \
                     cairn does not guess the remote home directory",
                ));
            }
            return Ok(Location::Sftp {
                endpoint: host.to_string(),
                path: clean_path(path).ok_or_else(|| err("no path after the host"))?,
            });
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
                ("https", r)
            } else if let Some(r) = rest.strip_prefix("http://") {
                ("http", r)
            } else {
                return Err(err(
                    "use s3:https://endpoint/bucket[/prefix] (or s3:http:// for a server on \
                     your own network)",
                ));
            };
            let mut parts = rest.splitn(2, '/');
            let host = parts.next().unwrap_or_default();
            let after = parts.next().unwrap_or_default().trim_matches('/');
            if host.is_empty() {
                return Err(err("no endpoint host"));
            }
            let (bucket, prefix) = match after.split_once('/') {
                Some((b, p)) => (b, p.trim_matches('/')),
                None => (after, ""),
            };
            if bucket.is_empty() {
                return Err(err("no bucket: use s3:http(s)://endpoint/bucket[/prefix]"));
            }
            if prefix.split('/').any(|c| c == ".." || c == ".") {
                return Err(err("the prefix may not contain . or .. components"));
            }
            return Ok(Location::S3 {
                endpoint: format!("{scheme}://{host}"),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if s.is_empty() {
            return Err(err("empty"));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// Whether the repository is on a server (SFTP, S3, `cairn serve`), not a local directory: remote
    /// repositories get a local cache (repo-format.md §10.5) and have no OS lock (§10.3).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }
}

/// `/a//b/` → `/a/b`; None for `/`.
fn clean_path(p: &str) -> Option<String> {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Sftp { endpoint, path } => {
                let host = endpoint.strip_prefix("ssh://").unwrap_or(endpoint);
                write!(f, "sftp://{host}{path}")
            }
            Location::Ssh {
                user,
                host,
                port,
                path,
            } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{host}")?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                write!(f, "{path}")
            }
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                write!(f, "s3:{endpoint}/{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sftp(endpoint: &str, path: &str) -> Location {
        Location::Sftp {
            endpoint: endpoint.into(),
            path: path.into(),
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Location::parse("/mnt/usb/repo").expect("test"),
            Location::Local("/mnt/usb/repo".into())
        );
        assert_eq!(
            Location::parse("repo").expect("test"),
            Location::Local("repo".into())
        );
        assert_eq!(
            Location::parse("sftp://me@host:2222/srv/repo/").expect("test"),
            sftp("ssh://me@host:2222", "/srv/repo")
        );
        assert_eq!(
            Location::parse("sftp://backup-box/srv/repo").expect("test"),
            sftp("ssh://backup-box", "/srv/repo")
        );
        assert_eq!(
            Location::parse("sftp:me@host:/srv//repo").expect("test"),
            sftp("me@host", "/srv/repo")
        );
        assert_eq!(
            Location::parse("ssh://me@host:2222/srv//repo/").expect("test"),
            Location::Ssh {
                user: Some("me".into()),
                host: "host".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("ssh://backup-box/srv/repo").expect("test"),
            Location::Ssh {
                user: None,
                host: "backup-box".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("s3:https://s3.example.com/bucket/a/b/").expect("test"),
            Location::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3:http://127.0.0.1:3900/b").expect("test"),
            Location::S3 {
                endpoint: "http://127.0.0.1:3900".into(),
                bucket: "b".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn refuses_unusable_forms_with_a_reason() {
        for bad in [
            "sftp:host:relative/path",
            "sftp:host",
            "sftp://host",
            "sftp://host/",
            "sftp://@/x",
            "s3:bucket",
            "s3:http://",
            "s3:http://host",
            "s3:http://host/",
            "s3:https://host/b/../x",
            "ssh://host",
            "ssh://host/",
            "ssh:///srv/repo",
            "ssh://me@/srv/repo",
            "ssh://-oProxyCommand=x/srv/repo",
            "ssh://host:port/srv/repo",
            "ssh://host:0/srv/repo",
            "ssh://a;b/srv/repo",
            "ssh://-me@host/srv/repo",
            "ssh://[::1/srv/repo",
            "ssh://[::1]x/srv/repo",
        ] {
            let e = Location::parse(bad).expect_err(bad);
            assert!(!e.why.is_empty(), "{bad}");
        }
    }

    #[test]
    fn displays_as_a_location_that_parses_back() {
        for s in [
            "sftp://me@host:2222/srv/repo",
            "s3:https://s3.example.com/bucket/a/b",
            "s3:http://127.0.0.1:3900/b",
            "/mnt/usb/repo",
            "ssh://me@host:2222/srv/repo",
            "ssh://backup-box/srv/repo",
            "ssh://[::1]:2222/srv/repo",
            "ssh://me@[fe80::1]/srv/repo",
        ] {
            let l = Location::parse(s).expect("test");
            assert_eq!(l.to_string(), s);
            assert_eq!(Location::parse(&l.to_string()).expect("test"), l);
        }
    }
}
