//! Tests that say when they did not run.
//!
//! Rust's test runner has no "skipped" outcome: a test that returns early
//! prints `ok`. So every test that cannot run here goes through one of two
//! guards, which return early *and* say so:
//!
//! - [`require_ebpf!`](crate::require_ebpf) at the start of every test that
//!   loads eBPF: it checks that this machine can (root, a kernel with BTF)
//!   and gives back an [`Ebpf`] token. Starting fdtrace takes that token
//!   ([`crate::harness::Trace::start`] and friends), so a test that loads
//!   eBPF cannot be written without the guard: it does not compile.
//! - [`require_tool!`](crate::require_tool) for a program a test needs
//!   beyond fdtrace (`chromium`, `script`...).
//!
//! A skip is written straight to the terminal (`SKIPPED test: why`, not
//! captured by the test runner), appended to the file `$FDTRACE_SKIP_LOG`
//! names (`cargo xtask test` sets it, and prints the list at the end), and
//! in CI (`CI=true`) it is a failure instead.
use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
};

/// The environment variable naming the file skips are appended to, one
/// `test<TAB>why` line each.
pub const SKIP_LOG_ENV: &str = "FDTRACE_SKIP_LOG";

/// Proof that this test may load eBPF programs here. Only [`ebpf`] (behind
/// [`require_ebpf!`](crate::require_ebpf)) makes one; everything that starts
/// fdtrace on a target asks for it.
#[derive(Debug)]
pub struct Ebpf {
    _checked: (),
}

/// Why a test cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub test: String,
    pub why: String,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} — {}", self.test, self.why)
    }
}

/// The name of the function this expands in, with its module path
/// (`events::scripted_sequence_is_reported_exactly_in_order`: the test
/// binary, then the test).
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        let name = ::std::any::type_name_of_val(&here);
        name.strip_suffix("::here").unwrap_or(name)
    }};
}

/// `let ebpf = require_ebpf!();` — the first line of every test that loads
/// eBPF. When this machine cannot load it, records the skip (and fails in
/// CI) and returns from the test.
#[macro_export]
macro_rules! require_ebpf {
    () => {
        match $crate::skip::ebpf($crate::test_name!()) {
            ::std::option::Option::Some(ebpf) => ebpf,
            ::std::option::Option::None => return,
        }
    };
}

/// `let path = require_tool!("chromium");` — the path of a program the
/// test needs beyond fdtrace. When it is not on `PATH`, records the skip
/// (and fails in CI) and returns from the test.
#[macro_export]
macro_rules! require_tool {
    ($tool:expr) => {
        match $crate::skip::tool($crate::test_name!(), $tool) {
            ::std::option::Option::Some(path) => path,
            ::std::option::Option::None => return,
        }
    };
}

/// Why eBPF programs cannot be loaded here, if they cannot.
pub fn ebpf_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("needs root to load eBPF programs (running as uid {euid}; try sudo -E)"));
    }
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        return Some(format!(
            "the kernel has no BTF ({} is missing): fdtrace needs CONFIG_DEBUG_INFO_BTF=y",
            btf.display()
        ));
    }
    None
}

/// The token for a test that loads eBPF, or `None` after recording why it
/// cannot run (a panic in CI). Use [`require_ebpf!`](crate::require_ebpf).
pub fn ebpf(test: &str) -> Option<Ebpf> {
    match ebpf_unavailable() {
        None => Some(Ebpf { _checked: () }),
        Some(why) => {
            skipped(test, &why);
            None
        }
    }
}

/// `tool` on `PATH`, if it is there.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The path of `tool`, or `None` after recording why the test cannot go
/// on (a panic in CI). Use [`require_tool!`](crate::require_tool).
pub fn tool(test: &str, tool: &str) -> Option<PathBuf> {
    let found = find_tool(tool);
    if found.is_none() {
        skipped(test, &format!("needs `{tool}` (install it with `cargo xtask setup`)"));
    }
    found
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Records a skip: on the terminal, in `$FDTRACE_SKIP_LOG`; in CI, panics.
pub fn skipped(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why}; CI=true, so this is a failure, not a skip");
    }
    // Straight to the terminal: `eprintln!` in a test is captured and
    // shown only when the test fails, and a skipped test passes.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        if let Err(e) = append(Path::new(&log), &Skip { test: test.into(), why: why.into() }) {
            panic!("{test}: cannot record its skip in ${SKIP_LOG_ENV} ({}): {e}", Path::new(&log).display());
        }
    }
}

/// Appends one skip to the log: a single `write` on a file opened for
/// appending, so tests skipping at once on several threads do not mix
/// their lines.
pub fn append(log: &Path, skip: &Skip) -> std::io::Result<()> {
    let line = format!("{}\t{}\n", one_line(&skip.test), one_line(&skip.why));
    std::fs::OpenOptions::new().create(true).append(true).open(log)?.write_all(line.as_bytes())
}

fn one_line(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

/// The skips recorded in a log (an absent file: none).
pub fn read_log(log: &Path) -> std::io::Result<Vec<Skip>> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (test, why) = l.split_once('\t').unwrap_or((l, "(no reason recorded)"));
            Skip { test: test.into(), why: why.into() }
        })
        .collect())
}

/// The summary `cargo xtask test` prints: `0 tests skipped`, or the count
/// and one `test — why` line per skip.
pub fn summary(skips: &[Skip]) -> String {
    let n = skips.len();
    let mut s = format!("{n} test{} skipped", if n == 1 { "" } else { "s" });
    if n > 0 {
        s.push(':');
        for skip in skips {
            s.push_str("\n  ");
            s.push_str(&skip.to_string());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_of_the_enclosing_function_is_found() {
        let name = crate::test_name!();
        assert_eq!(name, "fdtrace_tests::skip::tests::the_name_of_the_enclosing_function_is_found");
    }

    #[test]
    fn skips_written_by_several_threads_are_read_back_whole() {
        let log = std::env::temp_dir().join(format!("fdtrace-skip-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        assert_eq!(read_log(&log).expect("an absent log"), vec![]);
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..50 {
                        let skip = Skip { test: format!("t{t}::n{i}"), why: format!("why\t{t}\n{i}") };
                        append(log, &skip).expect("append");
                    }
                });
            }
        });
        let mut got = read_log(&log).expect("read");
        std::fs::remove_file(&log).expect("remove");
        assert_eq!(got.len(), 400);
        got.sort_by(|a, b| a.test.cmp(&b.test));
        let first = got.iter().find(|s| s.test == "t3::n7").expect("t3::n7");
        assert_eq!(first.why, "why 3 7");
    }

    #[test]
    fn the_summary_counts_and_names_each_skip() {
        assert_eq!(summary(&[]), "0 tests skipped");
        let skips = [
            Skip { test: "a::x".into(), why: "needs root".into() },
            Skip { test: "b::y".into(), why: "needs `chromium`".into() },
        ];
        assert_eq!(summary(&skips), "2 tests skipped:\n  a::x — needs root\n  b::y — needs `chromium`");
        assert_eq!(summary(&skips[..1]), "1 test skipped:\n  a::x — needs root");
    }
}
