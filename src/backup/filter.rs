//! Path patterns for `--exclude`/`--iexclude`/`--include` (gitignore-like globs via globset).
//!
//! A pattern without `/` matches a name at any depth (`*.tmp`, `node_modules`); a pattern with
//! `/` matches from the root (`/home/*/.cache`); `**` spans directories. A pattern that matches
//! a directory matches everything below it.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns, matched as one (a path matches if any pattern does).
#[derive(Clone, Debug)]
pub struct Patterns {
    set: GlobSet,
    empty: bool,
}

impl Patterns {
    /// Compiles `(pattern, case_insensitive)` pairs; a pattern globset cannot parse is an
    /// [`Error::InvalidInput`] naming it.
    pub fn new<'a>(patterns: impl IntoIterator<Item = (&'a str, bool)>) -> Result<Patterns> {
        let mut b = GlobSetBuilder::new();
        let mut empty = true;
        for (p, ci) in patterns {
            b.add(compile(p, ci)?);
            empty = false;
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad pattern: {e}")))?;
        Ok(Patterns { set, empty })
    }

    /// True when no pattern was given: then [`Patterns::matches`] is false for every path.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `path` (absolute) or one of its ancestors matches.
    pub fn matches(&self, path: &Path) -> bool {
        !self.empty
            && path
                .ancestors()
                .any(|a| a != Path::new("/") && self.set.is_match(a))
    }
}

fn compile(pattern: &str, case_insensitive: bool) -> Result<Glob> {
    let p = pattern.trim_end_matches('/');
    let full = if p.contains('/') {
        format!("/{}", p.trim_start_matches('/'))
    } else {
        format!("**/{p}")
    };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|e| Error::InvalidInput(format!("bad pattern {pattern:?}: {e}")))
}

/// What a restore (or backup) keeps: included (if any include is given) and not excluded.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The `--include` patterns (case-sensitive); when empty, every path is included.
    pub include: Patterns,
    /// The `--exclude` (case-sensitive) and `--iexclude` (case-insensitive) patterns together.
    pub exclude: Patterns,
}

impl Selection {
    /// Compiles `--include`, `--exclude` and `--iexclude` patterns; a bad pattern is an
    /// [`Error::InvalidInput`] naming it.
    pub fn new(include: &[String], exclude: &[String], iexclude: &[String]) -> Result<Selection> {
        let exact = exclude.iter().map(|p| (p.as_str(), false));
        let folded = iexclude.iter().map(|p| (p.as_str(), true));
        Ok(Selection {
            include: Patterns::new(include.iter().map(|p| (p.as_str(), false)))?,
            exclude: Patterns::new(exact.chain(folded))?,
        })
    }

    /// True when no pattern was given at all, so every path is accepted (callers skip the
    /// per-path test).
    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `path` (absolute) is kept: it or an ancestor matches an include (or there are
    /// none), and neither it nor an ancestor matches an exclude. Excludes win.
    pub fn accepts(&self, path: &Path) -> bool {
        (self.include.is_empty() || self.include.matches(path)) && !self.exclude.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(inc: &[&str], exc: &[&str], iexc: &[&str]) -> Selection {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&v(inc), &v(exc), &v(iexc)).unwrap()
    }

    #[test]
    fn a_name_pattern_matches_at_any_depth_and_everything_below() {
        let s = sel(&[], &["*.tmp", "cache"], &[]);
        assert!(!s.accepts(Path::new("/a/b/x.tmp")));
        assert!(!s.accepts(Path::new("/home/u/cache/deep/file")));
        assert!(s.accepts(Path::new("/home/u/cached")));
        assert!(s.accepts(Path::new("/a/b/x.txt")));
    }

    #[test]
    fn a_pattern_with_a_slash_is_anchored_at_the_root() {
        let s = sel(&[], &["/home/*/.cache"], &[]);
        assert!(!s.accepts(Path::new("/home/u/.cache/x")));
        assert!(s.accepts(Path::new("/srv/home/u/.cache/x")));
        let s = sel(&[], &["home/**/secret"], &[]);
        assert!(!s.accepts(Path::new("/home/a/b/c/secret")));
    }

    #[test]
    fn includes_select_and_excludes_win() {
        let s = sel(&["/data/docs"], &["*.bak"], &[]);
        assert!(s.accepts(Path::new("/data/docs/a.txt")));
        assert!(!s.accepts(Path::new("/data/docs/a.bak")));
        assert!(!s.accepts(Path::new("/data/other/a.txt")));
    }

    #[test]
    fn iexclude_ignores_case() {
        let s = sel(&[], &["*.TMP"], &["*.LOG"]);
        assert!(!s.accepts(Path::new("/x/a.log")));
        assert!(s.accepts(Path::new("/x/a.tmp")));
        assert!(!s.accepts(Path::new("/x/a.TMP")));
    }
}
