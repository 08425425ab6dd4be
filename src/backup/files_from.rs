//! The path lists of `backup --files-from`, `--files-from-verbatim` and `--files-from-raw`, read
//! as restic reads them:
//!
//! - [`ListFormat::Patterns`]: one path or glob pattern per line; leading and trailing white
//!   space is trimmed; blank lines and lines starting with `#` are skipped. A line with `*`, `?`,
//!   `[` or `\` is expanded like Go's `filepath.Glob` ([`expand_glob`]), every other line is a
//!   path as it is.
//! - [`ListFormat::Verbatim`]: one exact path per line (a `\r` before the `\n` is dropped);
//!   only empty lines are skipped. Spaces, `#` and any byte but NUL and newline are kept.
//! - [`ListFormat::Raw`]: exact paths separated by NUL bytes (`find -print0`); empty items are
//!   skipped. Any byte but NUL, newlines included.
//!
//! Paths are bytes: names that are not UTF-8 work in every format. No path may be longer than
//! [`MAX_PATH_LEN`] or hold a NUL. The caller bounds the size of the list it reads.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The longest path a list may hold, in bytes: Linux's `PATH_MAX` (including its NUL).
pub const MAX_PATH_LEN: usize = 4096;

/// How a list is written (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// `--files-from`: paths and glob patterns, `#` comments.
    Patterns,
    /// `--files-from-verbatim`: exact paths, one per line.
    Verbatim,
    /// `--files-from-raw`: exact paths, NUL-separated.
    Raw,
}

impl ListFormat {
    /// The option that reads a list of this format.
    pub fn option(self) -> &'static str {
        match self {
            ListFormat::Patterns => "--files-from",
            ListFormat::Verbatim => "--files-from-verbatim",
            ListFormat::Raw => "--files-from-raw",
        }
    }
}

/// The entries of a list: paths, and (for [`ListFormat::Patterns`]) glob patterns, in order.
/// `source` names the list in messages.
pub fn parse_list(bytes: &[u8], format: ListFormat, source: &str) -> Result<Vec<Vec<u8>>> {
    let sep = if format == ListFormat::Raw { 0 } else { b'\n' };
    let mut out = Vec::new();
    for (i, item) in bytes.split(|&b| b == sep).enumerate() {
        let item = match format {
            ListFormat::Patterns => item.trim_ascii(),
            ListFormat::Verbatim => item.strip_suffix(b"\r").unwrap_or(item),
            ListFormat::Raw => item,
        };
        if item.is_empty() || (format == ListFormat::Patterns && item.starts_with(b"#")) {
            continue;
        }
        let what = if format == ListFormat::Raw {
            "entry"
        } else {
            "line"
        };
        let bad = |why: String| {
            Err(Error::InvalidInput(format!(
                "{} {source}: {what} {} {why}",
                format.option(),
                i + 1
            )))
        };
        if item.len() >= MAX_PATH_LEN {
            return bad(format!(
                "is {} bytes long; a path has fewer than {MAX_PATH_LEN}",
                item.len()
            ));
        }
        if item.contains(&0) {
            return bad(
                "holds a NUL byte, which no path can; for a NUL-separated list (find -print0) use --files-from-raw"
                    .into(),
            );
        }
        out.push(item.to_vec());
    }
    Ok(out)
}

/// Whether `s` holds a glob metacharacter (Go's `filepath.Glob` on Unix: `*`, `?`, `[`, `\`).
pub fn has_meta(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// The paths a [`ListFormat::Patterns`] entry names: itself when it has no metacharacter
/// (whether it exists or not: the backup reports a missing one), else every existing path that
/// matches it, sorted within each directory, as Go's `filepath.Glob` finds them: each `/`-part
/// of the pattern is matched against the names in the directories matched so far; `*` is any
/// run of characters but `/` (leading dots included), `?` one character, `[a-z]` / `[^a-z]` a
/// class, `\` escapes. Unreadable directories match nothing; a malformed pattern is an error.
pub fn expand_glob(pattern: &[u8]) -> Result<Vec<PathBuf>> {
    if !has_meta(pattern) {
        return Ok(vec![PathBuf::from(OsStr::from_bytes(pattern))]);
    }
    let malformed = || {
        Error::InvalidInput(format!(
            "--files-from pattern {:?} is malformed (an unclosed [ or a trailing \\)",
            String::from_utf8_lossy(pattern)
        ))
    };
    let mut current: Vec<PathBuf> = vec![if pattern.starts_with(b"/") {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for part in pattern.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        if has_meta(part) {
            let pat: Vec<char> = String::from_utf8_lossy(part).chars().collect();
            // Checked once against nothing, so a malformed pattern fails even with no entries.
            glob_match(&pat, &[]).ok_or_else(malformed)?;
            for dir in &current {
                let listing = if dir.as_os_str().is_empty() {
                    fs::read_dir(".")
                } else {
                    fs::read_dir(dir)
                };
                let Ok(listing) = listing else { continue };
                let mut names: Vec<_> = listing
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for name in names {
                    let chars: Vec<char> =
                        String::from_utf8_lossy(name.as_bytes()).chars().collect();
                    if glob_match(&pat, &chars).ok_or_else(malformed)? {
                        next.push(dir.join(&name));
                    }
                }
            }
        } else {
            for dir in &current {
                let p = dir.join(OsStr::from_bytes(part));
                if fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Whether the name `n` matches the one-component glob `p` (Go's `filepath.Match`); None when
/// the pattern is malformed.
fn glob_match(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    let mut malformed = false;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '?' => {}
                '[' => {
                    let (hit, end) = class_match(p, pi, n.get(ni).copied())?;
                    if hit && ni < n.len() {
                        pi = end;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1)?;
                    if n.get(ni) == Some(&c) {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c => {
                    if n.get(ni) == Some(&c) {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
            }
        } else if ni == n.len() {
            return if malformed { None } else { Some(true) };
        }
        // A mismatch: let the last `*` take one more character, or fail. The rest of the
        // pattern is still checked for well-formedness.
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => {
                malformed |= !well_formed(&p[pi.min(p.len())..]);
                return if malformed { None } else { Some(false) };
            }
        }
    }
}

/// Whether the rest of a pattern has only closed classes and no trailing `\`.
fn well_formed(p: &[char]) -> bool {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 >= p.len() => return false,
            '\\' => i += 2,
            '[' => match class_match(p, i, None) {
                Some((_, end)) => i = end,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Matches `c` against the class starting at `p[start] == '['`; returns whether it matched and
/// the index after the closing `]`, or None for a malformed class.
fn class_match(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut ranges = 0;
    loop {
        let first = *p.get(i)?;
        if first == ']' && ranges > 0 {
            i += 1;
            break;
        }
        let (lo, after) = class_char(p, i)?;
        i = after;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, after) = class_char(p, i + 1)?;
            hi = h;
            i = after;
        }
        ranges += 1;
        if c.is_some_and(|c| lo <= c && c <= hi) {
            hit = true;
        }
    }
    Some((hit != negate, i))
}

/// One character of a class at `p[i]` (`\` escapes); None where the class is malformed.
fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        '-' | ']' => None,
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        c => Some((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> Option<bool> {
        let p: Vec<char> = p.chars().collect();
        let n: Vec<char> = n.chars().collect();
        glob_match(&p, &n)
    }

    #[test]
    fn globs_match_names_as_go_filepath_match_does() {
        for (p, n, want) in [
            ("*", "abc", true),
            ("*", ".hidden", true),
            ("*", "", true),
            ("a*", "abc", true),
            ("a*c", "abxc", true),
            ("a*c", "abxd", false),
            ("*.log", "x.log", true),
            ("*.log", "x.log.1", false),
            ("?", "é", true),
            ("??", "é", false),
            ("[abc]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^a-c]x", "dx", true),
            ("[^a-c]x", "ax", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a*b*c", "aXbYbZc", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(m(p, n), Some(want), "{p:?} vs {n:?}");
        }
        for bad in ["[", "[a", "a\\", "[]", "[a-]", "x*[z"] {
            assert_eq!(m(bad, "zzz"), None, "{bad:?} is malformed");
        }
    }

    #[test]
    fn pattern_lists_skip_comments_and_blank_lines_and_trim_lines() {
        let list = b"# a comment\n\n  /a/b  \r\n\t/c\n#/d\n/e # not a comment\n";
        let got = parse_list(list, ListFormat::Patterns, "l").expect("parses");
        assert_eq!(
            got,
            vec![
                b"/a/b".to_vec(),
                b"/c".to_vec(),
                b"/e # not a comment".to_vec()
            ]
        );
    }

    #[test]
    fn verbatim_lists_keep_spaces_and_hashes_and_raw_lists_keep_newlines() {
        let list = b"# not a comment\n with spaces \r\n\n\xff\xfe\n";
        let got = parse_list(list, ListFormat::Verbatim, "l").expect("parses");
        assert_eq!(
            got,
            vec![
                b"# not a comment".to_vec(),
                b" with spaces ".to_vec(),
                b"\xff\xfe".to_vec()
            ]
        );
        let raw = b"a\nb\0\0 c \0";
        let got = parse_list(raw, ListFormat::Raw, "l").expect("parses");
        assert_eq!(got, vec![b"a\nb".to_vec(), b" c ".to_vec()]);
    }

    #[test]
    fn list_entries_over_path_max_or_with_nul_are_refused() {
        let long = vec![b'a'; MAX_PATH_LEN];
        for format in [ListFormat::Patterns, ListFormat::Verbatim, ListFormat::Raw] {
            let err = parse_list(&long, format, "l").expect_err("too long");
            assert!(err.to_string().contains("bytes long"), "{err}");
        }
        for format in [ListFormat::Patterns, ListFormat::Verbatim] {
            let err = parse_list(b"/a\0b\n", format, "l").expect_err("NUL");
            assert!(err.to_string().contains("NUL"), "{err}");
        }
    }

    #[test]
    fn globs_expand_over_directories_sorted_and_skip_what_does_not_match() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        for d in ["a1", "a2", "b"] {
            fs::create_dir(root.join(d)).expect("mkdir");
            fs::write(root.join(d).join("x.log"), b"").expect("write");
            fs::write(root.join(d).join("x.txt"), b"").expect("write");
        }
        let pat = format!("{}/a*/*.log", root.display());
        let got = expand_glob(pat.as_bytes()).expect("expands");
        assert_eq!(got, vec![root.join("a1/x.log"), root.join("a2/x.log")]);
        let none = format!("{}/z*/x.log", root.display());
        assert!(expand_glob(none.as_bytes()).expect("expands").is_empty());
        let plain = format!("{}/missing", root.display());
        assert_eq!(
            expand_glob(plain.as_bytes()).expect("kept"),
            vec![root.join("missing")]
        );
        assert!(expand_glob(format!("{}/[", root.display()).as_bytes()).is_err());
    }
}
