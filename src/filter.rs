//! Path patterns for `--exclude`/`--iexclude`/`--include` (gitignore-like globs via globset).
//!
//! A pattern without `/` matches a name at any depth (`*.tmp`, `node_modules`); a pattern with
//! `/` matches from the root (`/home/*/.cache`); `**` spans directories. A pattern that matches
//! a directory matches everything below it.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns.
#[derive(Clone, Debug)]
pub struct Patterns {
    set: GlobSet,
    empty: bool,
}

impl Patterns {
    /// Compiles `(pattern, case_insensitive)` pairs.
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
    pub include: Patterns,
    pub exclude: Patterns,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String], iexclude: &[String]) -> Result<Selection> {
        let exact = exclude.iter().map(|p| (p.as_str(), false));
        let folded = iexclude.iter().map(|p| (p.as_str(), true));
        Ok(Selection {
            include: Patterns::new(include.iter().map(|p| (p.as_str(), false)))?,
            exclude: Patterns::new(exact.chain(folded))?,
        })
    }

    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

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
