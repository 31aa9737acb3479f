//! Which paths a backup skips (`--exclude`, `--exclude-file`) and which a restore keeps (`--include`).
//!
//! Patterns are globs. A pattern containing `/` is matched against the whole absolute path; one without is
//! matched against each file name, so `*.tmp` skips temporary files anywhere and `/home/*/.cache` skips
//! exactly those directories. Excluding a directory excludes everything below it.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Why a pattern list is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

/// A compiled set of patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    full_path: GlobSet,
    name: GlobSet,
    empty: bool,
}

impl Patterns {
    /// Compiles patterns; blank lines and lines starting with `#` are ignored (for `--exclude-file`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, PatternError> {
        let mut full = GlobSetBuilder::new();
        let mut name = GlobSetBuilder::new();
        let mut empty = true;
        for p in patterns.iter().map(|p| p.as_ref().trim()).filter(|p| !p.is_empty() && !p.starts_with('#')) {
            let glob = Glob::new(p.trim_end_matches('/')).map_err(|e| PatternError { pattern: p.into(), reason: e.to_string() })?;
            if p.contains('/') {
                full.add(glob);
            } else {
                name.add(glob);
            }
            empty = false;
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| PatternError { pattern: "(set)".into(), reason: e.to_string() });
        Ok(Patterns { full_path: build(full)?, name: build(name)?, empty })
    }

    /// Reads patterns from a file, one per line.
    pub fn from_file(path: &Path) -> Result<Vec<String>, PatternError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| PatternError { pattern: path.display().to_string(), reason: e.to_string() })?;
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `path` (absolute) matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.full_path.is_match(path) || path.file_name().is_some_and(|n| self.name.is_match(n))
    }

    /// Whether `path` or one of its ancestors matches.
    pub fn matches_or_under(&self, path: &Path) -> bool {
        path.ancestors().any(|p| self.matches(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_full_paths() {
        let p = Patterns::new(&["*.tmp", "/home/*/.cache", "# comment", ""]).unwrap();
        assert!(p.matches(Path::new("/data/x.tmp")));
        assert!(p.matches(Path::new("/home/ann/.cache")));
        assert!(!p.matches(Path::new("/home/ann/.cached")));
        assert!(!p.matches(Path::new("/data/x.txt")));
        assert!(p.matches_or_under(Path::new("/home/ann/.cache/a/b")));
        assert!(!Patterns::new::<&str>(&[]).unwrap().matches(Path::new("/x")));
        assert!(Patterns::new(&["[unclosed"]).is_err());
    }
}
