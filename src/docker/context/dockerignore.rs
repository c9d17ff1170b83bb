//! `.dockerignore` parsing and matching with the docker CLI's semantics.
//!
//! The oracle is the docker CLI of Docker 20.10 (the one the test suite runs):
//! `builder/dockerignore.ReadAll` for reading the file, `pkg/fileutils.PatternMatcher`
//! for matching, and the directory-skipping rule of `pkg/archive.TarWithOptions`.
//! Those rules have quirks that users' `.dockerignore` files depend on, so they are
//! kept on purpose:
//!
//! * a line is a comment only when `#` is its very first byte (`  # x` is a pattern);
//! * patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped;
//! * the last matching pattern wins, `!` patterns re-include;
//! * a pattern also matches a path when it matches the path's parent directory cut to
//!   the pattern's number of components (so `a/b` excludes `a/b/c/d`, but `**/x` does
//!   not reach `p/q/x/y` by that route; the walk skips `p/q/x` instead);
//! * only `.` and `$` are escaped when the glob becomes a regular expression, so other
//!   regex metacharacters keep their regex meaning, exactly as in the CLI.
//!
//! Newer CLIs (moby/patternmatcher 0.5+, docker 23+) fixed the parent-directory rule
//! for `**` patterns; the daemon shipped here is 20.10, so this port follows 20.10.

use crate::go_path::clean as clean_path;
use regex::bytes::Regex;

/// One line of a `.dockerignore` file after the CLI's normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IgnoreLine {
    /// 1-based line number in the file, for error messages.
    pub(crate) line: usize,
    /// The normalised pattern, with a leading `!` for exceptions.
    pub(crate) pattern: String,
}

/// Parses the contents of a `.dockerignore` file the way the docker CLI does
/// (`builder/dockerignore.ReadAll`).
pub(crate) fn parse_dockerignore(contents: &[u8]) -> Vec<IgnoreLine> {
    const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
    let mut lines = Vec::new();
    for (index, raw) in split_lines(contents).enumerate() {
        let raw = if index == 0 {
            raw.strip_prefix(UTF8_BOM).unwrap_or(raw)
        } else {
            raw
        };
        // The comment check happens before trimming, as in the CLI.
        if raw.first() == Some(&b'#') {
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        let mut pattern = text.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut normalised = String::new();
        if !pattern.is_empty() {
            normalised = clean_path(pattern);
            if normalised.len() > 1 && normalised.starts_with('/') {
                normalised.remove(0);
            }
        }
        if invert {
            normalised.insert(0, '!');
        }
        lines.push(IgnoreLine {
            line: index + 1,
            pattern: normalised,
        });
    }
    lines
}

/// Splits like Go's `bufio.ScanLines`: on `\n`, dropping one trailing `\r`.
fn split_lines(contents: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = contents.strip_suffix(b"\n").unwrap_or(contents);
    let empty = contents.is_empty();
    trimmed
        .split(|byte| *byte == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern {pattern:?}")]
    Syntax { pattern: String },
}

#[derive(Debug)]
struct Pattern {
    /// Cleaned pattern text without the `!`.
    text: String,
    /// Number of `/`-separated components, for the parent-directory rule.
    dir_count: usize,
    regex: Regex,
    exclusion: bool,
}

/// A compiled list of `.dockerignore` patterns (moby's `PatternMatcher`).
#[derive(Debug, Default)]
pub(crate) struct PatternMatcher {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

impl PatternMatcher {
    pub(crate) fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut matcher = PatternMatcher::default();
        for raw in patterns {
            let trimmed = raw.as_ref().trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut text = clean_path(trimmed);
            let mut exclusion = false;
            if let Some(rest) = text.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(PatternError::LoneExclamation);
                }
                text = rest.to_string();
                exclusion = true;
                matcher.has_exclusions = true;
            }
            let syntax_error = || PatternError::Syntax {
                pattern: raw.as_ref().to_string(),
            };
            validate_glob_syntax(&text).map_err(|()| syntax_error())?;
            let regex = Regex::new(&glob_to_regex(&text)).map_err(|_| syntax_error())?;
            matcher.patterns.push(Pattern {
                dir_count: text.split('/').count(),
                text,
                regex,
                exclusion,
            });
        }
        Ok(matcher)
    }

    /// Whether the slash-separated relative path is excluded (moby's `Matches`).
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        let parent = parent_dir(path);
        let parent_dirs: Vec<&[u8]> = parent.split(|byte| *byte == b'/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            let mut hit = pattern.regex.is_match(path);
            if !hit && parent != b"." && pattern.dir_count <= parent_dirs.len() {
                let prefix = parent_dirs[..pattern.dir_count].join(&b'/');
                hit = pattern.regex.is_match(&prefix);
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory must still be walked because an exception
    /// pattern names something below it (the rule of `archive.TarWithOptions`: a
    /// plain string prefix test of the exception's text, not a glob match).
    pub(crate) fn may_reinclude_below(&self, dir: &[u8]) -> bool {
        if !self.has_exclusions {
            return false;
        }
        let mut dir_slash = dir.to_vec();
        dir_slash.push(b'/');
        self.patterns
            .iter()
            .filter(|pattern| pattern.exclusion)
            .any(|pattern| {
                let mut text = pattern.text.as_bytes().to_vec();
                text.push(b'/');
                text.starts_with(&dir_slash)
            })
    }
}

/// Go's `filepath.Dir` for a relative, already clean path.
fn parent_dir(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|byte| *byte == b'/') {
        Some(0) => b"/",
        Some(index) => &path[..index],
        None => b".",
    }
}

/// Translates a cleaned glob into the regular expression moby builds for it.
fn glob_to_regex(pattern: &str) -> String {
    let mut regex = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    regex.push_str(".*");
                } else {
                    regex.push_str("(.*/)?");
                }
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '.' | '$' => {
                regex.push('\\');
                regex.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    regex.push('\\');
                    regex.push(next);
                }
                None => regex.push_str("\\\\"),
            },
            other => regex.push(other),
        }
    }
    regex.push('$');
    regex
}

/// The syntax check moby gets from calling Go's `filepath.Match(pattern, ".")`:
/// a trailing backslash and malformed `[...]` classes are errors.
fn validate_glob_syntax(pattern: &str) -> Result<(), ()> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        match chars[index] {
            '\\' => {
                if index + 1 >= chars.len() {
                    return Err(());
                }
                index += 2;
            }
            '[' => {
                index += 1;
                if chars.get(index) == Some(&'^') {
                    index += 1;
                }
                let mut ranges = 0;
                loop {
                    if chars.get(index) == Some(&']') && ranges > 0 {
                        index += 1;
                        break;
                    }
                    index = class_char(&chars, index)?;
                    if chars.get(index) == Some(&'-') {
                        index = class_char(&chars, index + 1)?;
                    }
                    ranges += 1;
                }
            }
            _ => index += 1,
        }
    }
    Ok(())
}

/// One (possibly escaped) character of a class, Go's `getEsc`: returns the index
/// after it, and fails when the class ends without `]`.
fn class_char(chars: &[char], mut index: usize) -> Result<usize, ()> {
    match chars.get(index) {
        None | Some('-') | Some(']') => return Err(()),
        Some('\\') => {
            index += 1;
            if index >= chars.len() {
                return Err(());
            }
        }
        Some(_) => {}
    }
    index += 1;
    if index >= chars.len() {
        return Err(());
    }
    Ok(index)
}

/// Whether `path` matches the patterns the way the CLI's package-level
/// `fileutils.Matches` decides it (used for the Dockerfile and `.dockerignore`
/// special cases): the context root itself is never excluded.
pub(crate) fn is_excluded(matcher: &PatternMatcher, path: &str) -> bool {
    let cleaned = clean_path(path);
    if cleaned == "." {
        return false;
    }
    matcher.matches(cleaned.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(file: &str) -> Vec<String> {
        parse_dockerignore(file.as_bytes())
            .into_iter()
            .map(|line| line.pattern)
            .collect()
    }

    fn matcher(file: &str) -> PatternMatcher {
        PatternMatcher::new(&patterns(file)).expect("valid patterns")
    }

    #[test]
    fn comments_only_start_at_the_first_byte() {
        assert_eq!(
            patterns("# comment\n  # not a comment\nfoo"),
            ["# not a comment", "foo"]
        );
    }

    #[test]
    fn blank_lines_and_surrounding_spaces_are_dropped() {
        assert_eq!(patterns("\n   \n\t foo \t\r\nbar\r\n"), ["foo", "bar"]);
    }

    #[test]
    fn a_utf8_bom_on_the_first_line_is_ignored() {
        assert_eq!(patterns("\u{feff}foo\nbar"), ["foo", "bar"]);
    }

    #[test]
    fn patterns_are_cleaned_and_lose_a_leading_slash() {
        assert_eq!(
            patterns("/foo\n./bar/\na//b/../c\n!/keep\n! spaced\n/\n"),
            ["foo", "bar", "a/c", "!keep", "!spaced", "/"]
        );
    }

    #[test]
    fn line_numbers_count_comments_and_blank_lines() {
        let lines = parse_dockerignore(b"# c\n\nfoo\n");
        assert_eq!(
            lines,
            [IgnoreLine {
                line: 3,
                pattern: "foo".to_string()
            }]
        );
    }

    #[test]
    fn a_lone_exclamation_mark_is_rejected() {
        assert_eq!(
            PatternMatcher::new(&patterns("!\n")).unwrap_err(),
            PatternError::LoneExclamation
        );
    }

    #[test]
    fn malformed_classes_and_trailing_backslashes_are_syntax_errors() {
        for bad in ["[", "a[", "[]", "[a-", "[a-]", "[^]", "foo\\", "[\\"] {
            assert!(
                PatternMatcher::new(&[bad]).is_err(),
                "{bad:?} should be rejected"
            );
        }
        for good in ["[a]", "[^a]", "[a-z]x", "[\\]]", "\\*", "a+b", "[!a]"] {
            assert!(PatternMatcher::new(&[good]).is_ok(), "{good:?} is valid");
        }
    }

    #[test]
    fn unbalanced_regex_groups_are_syntax_errors_as_in_the_cli() {
        assert!(PatternMatcher::new(&["a(b"]).is_err());
    }

    #[test]
    fn a_plain_name_matches_only_at_the_root() {
        let m = matcher("foo");
        assert!(m.matches(b"foo"));
        assert!(m.matches(b"foo/bar"), "children of an excluded dir");
        assert!(!m.matches(b"a/foo"));
        assert!(!m.matches(b"foobar"));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let m = matcher("*.txt");
        assert!(m.matches(b"a.txt"));
        assert!(!m.matches(b"dir/a.txt"));
        let m = matcher("*/*.txt");
        assert!(m.matches(b"dir/a.txt"));
        assert!(!m.matches(b"a/b/c.txt"));
    }

    #[test]
    fn double_star_matches_any_depth_including_none() {
        let m = matcher("**/*.log");
        assert!(m.matches(b"x.log"));
        assert!(m.matches(b"a/b/c/x.log"));
        assert!(!m.matches(b"a/x.logs"));
        let m = matcher("a/**/b");
        assert!(m.matches(b"a/b"));
        assert!(m.matches(b"a/x/y/b"));
        let m = matcher("a/**");
        assert!(m.matches(b"a/x"));
        assert!(m.matches(b"a/x/y"));
    }

    #[test]
    fn double_star_prefix_does_not_reach_children_through_the_parent_rule() {
        // 20.10 quirk: the parent rule cuts the parent to the pattern's component
        // count, so `**/node_modules` (2 components) tests `a/b` for this path.
        let m = matcher("**/node_modules");
        assert!(m.matches(b"a/b/node_modules"));
        assert!(!m.matches(b"a/b/node_modules/x"));
        // At the top level the parent has fewer components than the pattern, so
        // the child is not matched either; the walk skips the directory instead.
        assert!(m.matches(b"node_modules"));
        assert!(!m.matches(b"node_modules/x"));
    }

    #[test]
    fn question_mark_matches_one_character_but_not_a_slash() {
        let m = matcher("a?c");
        assert!(m.matches(b"abc"));
        assert!(!m.matches(b"a/c"));
        assert!(!m.matches(b"ac"));
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        let m = matcher("*.md\n!README.md\nREADME*");
        assert!(m.matches(b"CHANGES.md"));
        assert!(m.matches(b"README.md"), "re-excluded by the last line");
        let m = matcher("*.md\n!README.md");
        assert!(!m.matches(b"README.md"));
    }

    #[test]
    fn an_exception_reincludes_inside_an_excluded_directory() {
        let m = matcher("docs\n!docs/keep.md");
        assert!(m.matches(b"docs"));
        assert!(m.matches(b"docs/other.md"));
        assert!(!m.matches(b"docs/keep.md"));
        assert!(m.may_reinclude_below(b"docs"));
        assert!(!m.may_reinclude_below(b"src"));
    }

    #[test]
    fn reinclusion_below_uses_a_plain_prefix_test() {
        let m = matcher("*\n!src/*.rs");
        assert!(m.may_reinclude_below(b"src"));
        // A glob in the exception's directory part does not count.
        let m = matcher("*\n!*/main.rs");
        assert!(!m.may_reinclude_below(b"src"));
        let m = matcher("*");
        assert!(!m.may_reinclude_below(b"src"));
    }

    #[test]
    fn dots_and_dollars_are_literal_other_metacharacters_are_regex() {
        let m = matcher("a.b\n$x");
        assert!(m.matches(b"a.b"));
        assert!(!m.matches(b"axb"));
        assert!(m.matches(b"$x"));
        let m = matcher("a+");
        assert!(
            m.matches(b"aaa"),
            "`+` keeps its regex meaning, as in the CLI"
        );
        let m = matcher("x|y");
        assert!(m.matches(b"y"));
    }

    #[test]
    fn backslash_escapes_the_next_character() {
        let m = matcher("\\*star");
        assert!(m.matches(b"*star"));
        assert!(!m.matches(b"xstar"));
    }

    #[test]
    fn character_classes_work() {
        let m = matcher("file[0-9].txt\n[^a]x");
        assert!(m.matches(b"file7.txt"));
        assert!(!m.matches(b"filex.txt"));
        assert!(m.matches(b"bx"));
        assert!(!m.matches(b"ax"));
    }

    #[test]
    fn a_pattern_with_a_directory_part_excludes_everything_below_it() {
        let m = matcher("a/b");
        assert!(m.matches(b"a/b/c/d/e"));
        assert!(!m.matches(b"a/bc"));
        let m = matcher("a/*");
        assert!(m.matches(b"a/x/y/z"));
    }

    #[test]
    fn trailing_slash_patterns_behave_like_the_directory_name() {
        let m = matcher("build/");
        assert!(m.matches(b"build"));
        assert!(m.matches(b"build/out.o"));
    }

    #[test]
    fn dot_pattern_excludes_nothing_that_the_walk_sees() {
        let m = matcher(".");
        assert!(!m.matches(b"a"));
        assert!(!is_excluded(&m, "."));
    }

    #[test]
    fn everything_but_with_exceptions() {
        let m = matcher("*\n!src\n!Dockerfile");
        assert!(m.matches(b"README"));
        assert!(!m.matches(b"src"));
        assert!(!m.matches(b"src/main.rs"), "parent `src` re-included");
        assert!(!m.matches(b"Dockerfile"));
    }

    #[test]
    fn is_excluded_cleans_the_path_first() {
        let m = matcher("Dockerfile");
        assert!(is_excluded(&m, "./Dockerfile"));
        assert!(!is_excluded(&m, "Dockerfile.dev"));
    }

    #[test]
    fn hidden_files_need_explicit_patterns() {
        let m = matcher("*");
        assert!(m.matches(b".git"), "`*` matches dot files in the CLI");
        let m = matcher(".*\n!.gitignore");
        assert!(m.matches(b".env"));
        assert!(!m.matches(b".gitignore"));
    }

    #[test]
    fn non_utf8_paths_are_matched_bytewise_for_literals() {
        let m = matcher("dir");
        assert!(m.matches(b"dir/\xff\xfe"));
    }
}
