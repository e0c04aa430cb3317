//! Suppressions (`--suppress FILE`): stacks whose fds never count as
//! unclosed — a connection pool meant to live for the whole run, a log
//! file held open on purpose. As valgrind's, but one frame pattern per rule.
//!
//! The file: one rule per line; blank lines and `#` comments are ignored.
//! A rule is a glob (`*` matches any run of characters, `?` one) over one
//! frame, optionally prefixed by what it matches:
//!
//! ```text
//! # the pool's connections live as long as the process
//! main.(*Pool).dial
//! fun:*database/sql.(*DB).conn*
//! file:*/internal/pool/*.go
//! module:libpq.so*
//! ```
//!
//! `fun:` (the default) matches the function name, `file:` the source file
//! (`file:line` too), `module:` the binary or library. A group is
//! suppressed when any frame of its stack, or of the stack that started its
//! goroutine, matches any rule. Suppressed groups are left out of the
//! report and counted in its header, per rule.
use std::{fmt, path::Path};

use crate::symbolize::Frame;

/// What a rule's pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Function,
    File,
    Module,
}

/// One line of a suppressions file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    field: Field,
    pattern: String,
    /// The line as written, for the report.
    pub text: String,
}

impl Rule {
    fn matches(&self, f: &Frame) -> bool {
        match self.field {
            Field::Function => f.function.as_deref().is_some_and(|s| glob(&self.pattern, s)),
            Field::File => match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    glob(&self.pattern, file) || glob(&self.pattern, &format!("{file}:{line}"))
                }
                (Some(file), None) => glob(&self.pattern, file),
                (None, _) => false,
            },
            Field::Module => f.module.as_deref().is_some_and(|s| glob(&self.pattern, s)),
        }
    }
}

/// The rules of every `--suppress` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    pub rules: Vec<Rule>,
}

/// A line of a suppressions file that does not read.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub why: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {:?}: {}; a rule is a glob over one frame: FUNCTION, fun:GLOB, file:GLOB or module:GLOB",
            self.line, self.text, self.why
        )
    }
}

impl Suppressions {
    /// Reads the rules in `text` (a file's contents).
    pub fn parse(text: &str) -> Result<Suppressions, ParseError> {
        let mut rules = vec![];
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let err = |why| ParseError { line: i + 1, text: raw.trim().to_string(), why };
            let (field, pattern) = match line.split_once(':') {
                Some(("fun", p)) => (Field::Function, p),
                Some(("file", p)) => (Field::File, p),
                Some(("module", p)) => (Field::Module, p),
                // Function names hold colons too (C++ `ns::f`, Rust
                // `crate::f`): only these three prefixes are prefixes.
                _ => (Field::Function, line),
            };
            let pattern = pattern.trim();
            if pattern.is_empty() {
                return Err(err("the pattern is empty"));
            }
            if pattern.chars().all(|c| c == '*') {
                return Err(err("it would suppress every stack"));
            }
            rules.push(Rule { field, pattern: pattern.to_string(), text: line.to_string() });
        }
        Ok(Suppressions { rules })
    }

    /// Reads the rules of the files `paths`.
    pub fn load(paths: &[impl AsRef<Path>]) -> anyhow::Result<Suppressions> {
        let mut all = Suppressions::default();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--suppress {}: {e}", path.display()))?;
            let s = Suppressions::parse(&text)
                .map_err(|e| anyhow::anyhow!("--suppress {}: {e}", path.display()))?;
            all.rules.extend(s.rules);
        }
        Ok(all)
    }

    /// The first rule that matches a frame of `stack` or `spawn`.
    pub fn matching(&self, stack: &[Frame], spawn: &[Frame]) -> Option<&Rule> {
        self.rules.iter().find(|r| stack.iter().chain(spawn).any(|f| r.matches(f)))
    }
}

/// Whether `pattern` (`*`: any run, `?`: any one character) matches all of
/// `s`. Iterative, with one backtrack point: linear in practice, and never
/// exponential.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == '?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32, module: &str) -> Frame {
        Frame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(line),
            module: Some(module.into()),
            offset: None,
        }
    }

    #[test]
    fn globs_match_whole_strings() {
        assert!(glob("main.(*Pool).dial", "main.(*Pool).dial"));
        assert!(!glob("main.(*Pool).dial", "main.(*Pool).dialer"));
        assert!(glob("*Pool*", "main.(*Pool).dial"));
        assert!(glob("open_?ession", "open_session"));
        assert!(glob("a*b*c", "aXXbYYbc"));
        assert!(!glob("a*b*c", "aXXbYYb"));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
        // Many stars against a long mismatch stays fast.
        let long = "a".repeat(5000);
        assert!(!glob("*a*a*a*a*a*b", &long));
    }

    #[test]
    fn rules_read_with_prefixes_comments_and_colons_in_names() {
        let s = Suppressions::parse(
            "# pool\n\nmain.(*Pool).dial   # inline comment\nfun:*sql*\nfile:*/pool.go:42\nmodule:libpq.so*\nstd::net::TcpStream::connect\n",
        )
        .unwrap();
        let fields: Vec<(Field, &str)> = s.rules.iter().map(|r| (r.field, r.pattern.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (Field::Function, "main.(*Pool).dial"),
                (Field::Function, "*sql*"),
                (Field::File, "*/pool.go:42"),
                (Field::Module, "libpq.so*"),
                (Field::Function, "std::net::TcpStream::connect"),
            ]
        );
    }

    #[test]
    fn bad_rules_say_which_line_and_why() {
        let e = Suppressions::parse("ok\nfile:\n").unwrap_err();
        assert_eq!((e.line, e.why), (2, "the pattern is empty"));
        assert!(e.to_string().contains("fun:GLOB"), "{e}");
        let e = Suppressions::parse("**\n").unwrap_err();
        assert_eq!(e.why, "it would suppress every stack");
    }

    #[test]
    fn a_rule_matches_any_frame_of_the_stack_or_the_goroutines_origin() {
        let s = Suppressions::parse("file:*/pool.go:42\nmodule:libpq*\n").unwrap();
        let socket = frame("__socket", "socket.c", 1, "libc.so.6");
        let pool = frame("main.dial", "/src/app/pool.go", 42, "app");
        assert_eq!(
            s.matching(&[socket.clone(), pool.clone()], &[]).map(|r| r.text.as_str()),
            Some("file:*/pool.go:42")
        );
        assert_eq!(
            s.matching(std::slice::from_ref(&socket), &[pool]).map(|r| r.text.as_str()),
            Some("file:*/pool.go:42")
        );
        assert!(s.matching(std::slice::from_ref(&socket), &[]).is_none());
        let pq = frame("PQconnectdb", "fe-connect.c", 9, "libpq.so.5");
        assert_eq!(s.matching(&[socket, pq], &[]).map(|r| r.text.as_str()), Some("module:libpq*"));
    }
}
