//! `cargo xtask lint` (and the first step of `cargo xtask test`):
//! `cargo fmt --all --check`, then clippy on every crate with the
//! workspace's lints (`[workspace.lints]` in Cargo.toml): the host crates
//! with the stable toolchain, the eBPF crate with its nightly toolchain and
//! target.
//!
//! The crates in [`DENY_WARNINGS`] are held to `-D warnings`: a warning
//! fails the step. The others are linted too, and their warnings counted
//! by lint and file, without failing the step: add a crate to the list once
//! its count is zero. With every crate listed, the step is `cargo clippy
//! --workspace --exclude fdtrace-ebpf --all-targets -- -D warnings` plus the
//! same for the eBPF crate.
use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{ebpf_build, sh};

/// The crates whose warnings fail the lint step (package names).
pub const DENY_WARNINGS: &[&str] =
    &["fdtrace", "fdtrace-common", "fdtrace-ebpf", "xtask", "fdtrace-tests", "fdtrace-workload"];

/// The host crates (all but the eBPF one).
const HOST_CRATES: &[&str] = &["fdtrace", "fdtrace-common", "xtask", "fdtrace-tests", "fdtrace-workload"];
const EBPF_CRATE: &str = "fdtrace-ebpf";

pub fn run(ws: &Path) -> Result<()> {
    println!("xtask: lint: cargo fmt --all --check");
    sh(crate::cargo().current_dir(ws).args(["fmt", "--all", "--check"]))
        .context("the code is not formatted: run `cargo fmt --all`")?;

    let (strict, counted): (Vec<&str>, Vec<&str>) =
        HOST_CRATES.iter().partition(|c| DENY_WARNINGS.contains(c));
    let mut reports = vec![];
    if !strict.is_empty() {
        println!("xtask: lint: clippy -D warnings on {}", strict.join(", "));
        let mut cmd = crate::cargo();
        // --no-deps: -D warnings for these crates only, not for the
        // workspace crates they depend on (fdtrace-tests links fdtrace),
        // which are counted below until they are listed.
        cmd.current_dir(ws).arg("clippy").args(packages(&strict)).args([
            "--all-targets",
            "--no-deps",
            "--",
            "-D",
            "warnings",
        ]);
        sh(&mut cmd).context("clippy found warnings (above) in crates held to -D warnings")?;
    }
    if !counted.is_empty() {
        let mut cmd = crate::cargo();
        cmd.current_dir(ws).arg("clippy").args(packages(&counted)).arg("--all-targets");
        reports.push(count_warnings(&counted, &mut cmd)?);
    }

    match ebpf_lint_command(ws, DENY_WARNINGS.contains(&EBPF_CRATE))? {
        EbpfLint::Strict(mut cmd) => {
            println!("xtask: lint: clippy -D warnings on {EBPF_CRATE} (nightly, {})", ebpf_build::BPF_TARGET);
            sh(&mut cmd).context("clippy found warnings (above) in the eBPF crate")?;
        }
        EbpfLint::Counted(mut cmd) => reports.push(count_warnings(&[EBPF_CRATE], &mut cmd)?),
        EbpfLint::Unavailable(why) => {
            println!("xtask: lint: {EBPF_CRATE} not linted: {why} (`cargo xtask build-ebpf` installs it)")
        }
    }

    for report in reports {
        print!("{report}");
    }
    println!("xtask: lint passed (held to -D warnings: {})", DENY_WARNINGS.join(", "));
    Ok(())
}

fn packages<'a>(crates: &[&'a str]) -> Vec<&'a str> {
    crates.iter().flat_map(|c| ["-p", c]).collect()
}

enum EbpfLint {
    Strict(Command),
    Counted(Command),
    Unavailable(String),
}

/// Clippy for the eBPF crate: its toolchain, target and flags.
fn ebpf_lint_command(ws: &Path, strict: bool) -> Result<EbpfLint> {
    let missing: Vec<String> = ebpf_build::check_prerequisites()
        .into_iter()
        // Checking does not link: bpf-linker is not needed.
        .filter(|m| !matches!(m, ebpf_build::Missing::BpfLinker(_)))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() {
        if strict {
            bail!("cannot lint {EBPF_CRATE}: {} (run `cargo xtask build-ebpf`)", missing.join("; "));
        }
        return Ok(EbpfLint::Unavailable(missing.join("; ")));
    }
    // A target directory of its own: the object `build-ebpf` makes is left alone.
    let mut clippy = ebpf_build::cargo_command(ws, "clippy", &ws.join("target/ebpf-clippy"));
    if strict {
        clippy.args(["--", "-D", "warnings"]);
        Ok(EbpfLint::Strict(clippy))
    } else {
        Ok(EbpfLint::Counted(clippy))
    }
}

/// Runs clippy with JSON messages; fails on errors, returns the warnings
/// counted by lint and file (each once, though several targets of a crate
/// report it).
fn count_warnings(crates: &[&str], cmd: &mut Command) -> Result<String> {
    println!("xtask: lint: clippy on {} (warnings counted, not yet denied)", crates.join(", "));
    let out = cmd.arg("--message-format=json").output().with_context(|| format!("running {cmd:?}"))?;
    let diagnostics = parse_diagnostics(&String::from_utf8_lossy(&out.stdout));
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.level == "error").collect();
    if !out.status.success() || !errors.is_empty() {
        for d in &errors {
            eprint!("{}", d.rendered);
        }
        bail!(
            "clippy failed on {} ({}):\n{}",
            crates.join(", "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(render_counts(crates, &diagnostics))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Diagnostic {
    package: String,
    level: String,
    /// `clippy::unwrap_used`, `unused_qualifications`...
    lint: String,
    file: String,
    line: u64,
    column: u64,
    rendered: String,
}

/// The lint diagnostics in cargo's JSON messages, each once.
fn parse_diagnostics(json_lines: &str) -> Vec<Diagnostic> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for line in json_lines.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-message" {
            continue;
        }
        let m = &msg["message"];
        let Some(lint) = m["code"]["code"].as_str() else { continue };
        let span = m["spans"].as_array().and_then(|s| s.iter().find(|s| s["is_primary"] == true));
        // "path+file:///work/fdtrace/xtask#0.1.0" or "...#name@0.1.0".
        let id = msg["package_id"].as_str().unwrap_or_default();
        let tail = id.rsplit('/').next().unwrap_or(id);
        let package = match tail.split_once('#') {
            Some((dir, rest)) => rest.split_once('@').map_or(dir, |(name, _)| name),
            None => tail,
        };
        let d = Diagnostic {
            package: package.to_string(),
            level: m["level"].as_str().unwrap_or_default().to_string(),
            lint: lint.to_string(),
            file: span.and_then(|s| s["file_name"].as_str()).unwrap_or("?").to_string(),
            line: span.and_then(|s| s["line_start"].as_u64()).unwrap_or(0),
            column: span.and_then(|s| s["column_start"].as_u64()).unwrap_or(0),
            rendered: m["rendered"].as_str().unwrap_or_default().to_string(),
        };
        if seen.insert((d.lint.clone(), d.file.clone(), d.line, d.column)) {
            out.push(d);
        }
    }
    out
}

/// Per crate: its warning count, then one line per (lint, file).
fn render_counts(crates: &[&str], diagnostics: &[Diagnostic]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for krate in crates {
        let mine: Vec<&Diagnostic> =
            diagnostics.iter().filter(|d| d.level == "warning" && d.package == *krate).collect();
        let mut by: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for d in &mine {
            *by.entry((&d.lint, &d.file)).or_default() += 1;
        }
        let _ = writeln!(
            s,
            "xtask: lint: {krate}: {} warning{}",
            mine.len(),
            if mine.len() == 1 { "" } else { "s" }
        );
        for ((lint, file), n) in by {
            let _ = writeln!(s, "  {n:>4}  {lint:<44} {file}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(package_id: &str, level: &str, lint: &str, file: &str, line: u64) -> String {
        serde_json::json!({
            "reason": "compiler-message",
            "package_id": package_id,
            "message": {
                "level": level,
                "code": {"code": lint},
                "rendered": format!("{level}: {lint}\n"),
                "spans": [
                    {"is_primary": false, "file_name": "elsewhere.rs", "line_start": 1, "column_start": 1},
                    {"is_primary": true, "file_name": file, "line_start": line, "column_start": 5}
                ]
            }
        })
        .to_string()
    }

    #[test]
    fn warnings_are_counted_once_by_lint_and_file_per_crate() {
        let ws = "path+file:///work/fdtrace";
        let lines = [
            message(&format!("{ws}/fdtrace#0.1.0"), "warning", "clippy::unwrap_used", "fdtrace/src/a.rs", 3),
            // The same warning from the crate's test target: counted once.
            message(&format!("{ws}/fdtrace#0.1.0"), "warning", "clippy::unwrap_used", "fdtrace/src/a.rs", 3),
            message(&format!("{ws}/fdtrace#0.1.0"), "warning", "clippy::unwrap_used", "fdtrace/src/a.rs", 9),
            message(
                &format!("{ws}/fdtrace#0.1.0"),
                "warning",
                "unused_qualifications",
                "fdtrace/src/b.rs",
                1,
            ),
            message(&format!("{ws}/tests#fdtrace-tests@0.1.0"), "warning", "dead_code", "tests/src/x.rs", 2),
            r#"{"reason":"compiler-artifact","package_id":"x"}"#.to_string(),
            r#"{"reason":"compiler-message","package_id":"y","message":{"level":"warning","code":null}}"#
                .to_string(),
            "not json".to_string(),
        ]
        .join("\n");
        let diagnostics = parse_diagnostics(&lines);
        assert_eq!(diagnostics.len(), 4, "{diagnostics:#?}");
        assert_eq!(diagnostics[0].package, "fdtrace");
        assert_eq!(diagnostics[3].package, "fdtrace-tests");
        assert_eq!(
            render_counts(&["fdtrace", "fdtrace-tests", "fdtrace-common"], &diagnostics),
            "xtask: lint: fdtrace: 3 warnings\n\
             \x20    2  clippy::unwrap_used                          fdtrace/src/a.rs\n\
             \x20    1  unused_qualifications                        fdtrace/src/b.rs\n\
             xtask: lint: fdtrace-tests: 1 warning\n\
             \x20    1  dead_code                                    tests/src/x.rs\n\
             xtask: lint: fdtrace-common: 0 warnings\n"
        );
    }

    #[test]
    fn the_crate_lists_name_every_crate_of_the_workspace() {
        let ws = crate::workspace();
        let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).expect("Cargo.toml");
        let members = manifest
            .lines()
            .find_map(|l| l.strip_prefix("members = ["))
            .and_then(|l| l.strip_suffix(']'))
            .expect("a one-line members list");
        let mut names: Vec<String> = members
            .split(',')
            .map(|m| {
                let dir = m.trim().trim_matches('"');
                let krate =
                    std::fs::read_to_string(ws.join(dir).join("Cargo.toml")).expect("member manifest");
                let name = krate.lines().find_map(|l| l.strip_prefix("name = \"")).expect("a package name");
                name.trim_end_matches('"').to_string()
            })
            .collect();
        names.sort();
        let mut ours: Vec<String> = HOST_CRATES.iter().chain([&EBPF_CRATE]).map(|c| c.to_string()).collect();
        ours.sort();
        assert_eq!(names, ours, "HOST_CRATES and EBPF_CRATE must name the workspace's crates");
        for c in DENY_WARNINGS {
            assert!(ours.iter().any(|o| o == c), "DENY_WARNINGS names {c}, not a crate of the workspace");
        }
    }
}
