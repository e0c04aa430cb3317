//! `cargo xtask vm-test`: the kernel matrix. Each Debian cloud kernel
//! boots once under qemu; inside, `fdtrace check` says which tiers work,
//! then the tier-independent integration tests run once per tier
//! (`FDTRACE_ATTACH=fentry|kprobe|tracepoint`). The result is a table
//! kernel × tier → pass, fail (which tests), or unsupported (why).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    sh,
    vm::{self, Guest, KernelVersion},
};

pub const TIERS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];

/// Test binaries (by target name) and the tests to run in each. The host
/// runs everything; the VMs, emulated and slow, run what exercises the
/// hooks: the scripted event sequence, the fd paths only function hooks
/// see (and received fds past the walk's bound, traced with `-v`), the
/// churn seeds, the kernel pairing a churn by itself, the C and Rust leak
/// reports, a command gone in milliseconds (named from perf's mapping
/// records), and the Go client followed through its goroutines (uprobes;
/// Debian's Go, and the current Go stripped and not).
const SUITES: &[(&str, &[&str])] = &[
    (
        "events",
        &["scripted_sequence_is_reported_exactly_in_order", "followed_children_are_traced_from_their_fork"],
    ),
    (
        "paths",
        &[
            "fds_from_scm_rights_pidfd_getfd_and_io_uring_are_accounted_for",
            // Also: every program loads with the kernel side's logs on (-v).
            "fds_received_past_the_walks_bound_are_counted_not_dropped",
        ],
    ),
    ("churn", &["open_set_equals_proc_after_random_churn"]),
    // The kernel pairing a churn by itself, every event still counted.
    ("robust", &["the_kernel_pairs_what_a_stopped_fdtrace_cannot_read"]),
    ("leaks", &["c_leak_is_attributed_to_open_session", "rust_leak_is_attributed_to_fetch_inventory"]),
    // A command gone in milliseconds: perf's mapping records name it.
    ("exits", &["a_command_gone_in_milliseconds_has_every_stack_named"]),
    (
        "go",
        &[
            "transport_per_request_is_traced_to_the_function_making_the_requests",
            // Uprobes from the line table, runtime.g offsets from the table.
            "a_stripped_current_go_binary_is_reported_as_the_unstripped_one",
        ],
    ),
];

/// Workload programs the tests run (from `tests/src/bin`).
const WORKLOADS: &[&str] = &["scripted", "churn", "fdpaths", "leaky", "loadgen"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Pass(usize),
    Fail(Vec<String>),
    Unsupported(String),
}

/// Kernel version → (release, tier → cell).
type Results = BTreeMap<String, (String, BTreeMap<String, Cell>)>;

pub fn run(ws: &Path, kernels: &[KernelVersion], tiers: &[String], jobs: usize) -> Result<()> {
    let start = Instant::now();
    vm::ensure_tools()?;
    let kernels: Vec<vm::Kernel> =
        kernels.iter().map(|&v| vm::ensure_kernel(ws, v)).collect::<Result<_>>()?;
    let files = build(ws)?;
    // One VM per kernel × tier: the cells run `jobs` at a time (a VM has
    // one vCPU, which TCG runs on one host thread), and one boot is ~2 s
    // of a cell's minutes.
    let scripts: BTreeMap<&str, String> =
        tiers.iter().map(|t| (t.as_str(), script(ws, &files.tests, std::slice::from_ref(t)))).collect();
    let results: Mutex<Results> = Mutex::new(BTreeMap::new());
    let mut cells: Vec<(&vm::Kernel, &String)> =
        kernels.iter().flat_map(|k| tiers.iter().map(move |t| (k, t))).collect();
    cells.reverse();
    let queue = Mutex::new(cells);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let Some((kernel, tier)) = queue.lock().expect("queue").pop() else { break };
                let tiers = std::slice::from_ref(tier);
                let outcome = run_kernel(ws, kernel, &files.all, &scripts[tier.as_str()], tiers);
                let line = match &outcome {
                    Ok(_) => format!("{} {tier}: done", kernel.version),
                    Err(e) => format!("{} {tier}: {e:#}", kernel.version),
                };
                eprintln!("xtask: vm-test {line}");
                let cells = outcome.unwrap_or_else(|e| {
                    tiers
                        .iter()
                        .map(|t| (t.clone(), Cell::Fail(vec![format!("VM run failed: {e:#}")])))
                        .collect()
                });
                results
                    .lock()
                    .expect("results")
                    .entry(kernel.version.to_string())
                    .or_insert_with(|| (kernel.release.clone(), BTreeMap::new()))
                    .1
                    .extend(cells);
            });
        }
    });
    let results = results.into_inner().expect("results");
    let table = render(&results, tiers);
    println!("{table}");
    let json: BTreeMap<_, _> = results
        .iter()
        .map(|(k, (release, cells))| {
            let cells: BTreeMap<_, _> = cells.iter().map(|(t, c)| (t.clone(), cell_json(c))).collect();
            (k.clone(), serde_json::json!({"release": release, "tiers": cells}))
        })
        .collect();
    let out = ws.join("target/vm/results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!(
        "vm-test: {} kernels in {:.0} s; results in {}",
        results.len(),
        start.elapsed().as_secs_f64(),
        out.display()
    );
    let failed = results.values().any(|(_, cells)| cells.values().any(|c| matches!(c, Cell::Fail(_))));
    if failed {
        bail!("some kernel × tier combinations failed (see the table)");
    }
    Ok(())
}

struct Files {
    /// Test binary paths by target name.
    tests: BTreeMap<String, PathBuf>,
    /// Everything to put in the VMs: (host file, path in the guest).
    all: Vec<(PathBuf, PathBuf)>,
}

/// Builds fdtrace, the workloads, the test binaries and the fixtures.
fn build(ws: &Path) -> Result<Files> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The release fdtrace: what users run, and a fifth of the debug size.
    sh(Command::new(&cargo).current_dir(ws).args(["build", "--release", "-p", "fdtrace"]))?;
    sh(Command::new(&cargo).current_dir(ws).args(["build", "-p", "fdtrace-tests", "--bins"]))?;
    let out = Command::new(&cargo)
        .current_dir(ws)
        .args(["test", "-p", "fdtrace-tests", "--no-run", "--message-format=json"])
        .output()
        .context("building the test binaries")?;
    if !out.status.success() {
        bail!("building the test binaries failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut tests = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_test = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(exe), Some(name)) =
            (is_test, msg["executable"].as_str(), msg["target"]["name"].as_str())
        {
            tests.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for (suite, _) in SUITES {
        if !tests.contains_key(*suite) {
            bail!("no test binary for {suite}");
        }
    }
    // The fixtures (C and Go programs) are built by a test; the VM has no
    // compilers.
    sh(Command::new(&tests["leaks"]).args(["--exact", "fixtures_build"]))?;
    let debug = ws.join("target/debug");
    let mut all: Vec<PathBuf> = vec![ws.join("target/release/fdtrace")];
    all.extend(WORKLOADS.iter().map(|w| debug.join(w)));
    all.push(ws.join("target/fixtures"));
    // The Go test reads the line its report names, and checks its count
    // against `ss` (not in busybox).
    all.push(ws.join("tests/go/httpclient/main.go"));
    all.push(vm::find_in_path("ss").context("ss (package iproute2)")?);
    let mut all: Vec<(PathBuf, PathBuf)> = all.into_iter().map(|p| (p.clone(), p)).collect();
    // The test binaries without their debug info (tens of MB each, of the
    // libraries they link): the guest holds its files in RAM. The workloads
    // keep theirs: their stacks are symbolized to file:line.
    let stripped = ws.join("target/vm/tests");
    std::fs::create_dir_all(&stripped)?;
    for (suite, _) in SUITES {
        let exe = &tests[*suite];
        let copy = stripped.join(suite);
        sh(Command::new("objcopy").arg("--strip-debug").arg(exe).arg(&copy))
            .context("stripping a test binary for the VMs (objcopy, package binutils)")?;
        all.push((copy, exe.clone()));
    }
    Ok(Files { tests, all })
}

fn script(ws: &Path, tests: &BTreeMap<String, PathBuf>, tiers: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "export CI=true FDTRACE_FIXTURES_PREBUILT=1 FDTRACE_CHURN_SEEDS=1 FDTRACE_BIN={}",
        ws.join("target/release/fdtrace").display()
    );
    // The churn workload holds thousands of fds; the kernel's default hard
    // limit (4096) is below what a systemd machine gives (524288).
    let _ = writeln!(s, "ulimit -Hn 524288; ulimit -n 524288");
    let _ = writeln!(s, "echo '=== check'; $FDTRACE_BIN check; echo '=== end check'");
    for tier in tiers {
        let _ = writeln!(s, "export FDTRACE_ATTACH={tier}");
        for (suite, names) in SUITES {
            for name in *names {
                let _ = writeln!(
                    s,
                    "t0=$(date +%s); {} --exact {name} --test-threads=1 >/tmp/out 2>&1; rc=$?; \
                     if [ $rc != 0 ]; then cat /tmp/out | tail -200; fi; \
                     echo \"=== time {tier} {suite}::{name} $(( $(date +%s) - t0 ))\"; \
                     echo \"=== result {tier} {suite}::{name} $rc\"",
                    tests[*suite].display()
                );
            }
        }
    }
    s
}

fn run_kernel(
    ws: &Path,
    kernel: &vm::Kernel,
    files: &[(PathBuf, PathBuf)],
    script: &str,
    tiers: &[String],
) -> Result<BTreeMap<String, Cell>> {
    let mut guest = Guest::new(script);
    for (host, in_guest) in files {
        guest = guest.file_at(host, in_guest)?;
    }
    guest.timeout = Duration::from_secs(40 * 60);
    let out = vm::run(ws, kernel, &guest)?;
    let log = ws.join(format!("target/vm/vm-test-{}-{}.log", kernel.version, tiers.join("-")));
    std::fs::write(&log, &out.output)?;
    Ok(parse(&out.output, tiers))
}

/// Reads the `=== result TIER TEST RC` lines, and the check's verdict on
/// each function tier.
fn parse(output: &str, tiers: &[String]) -> BTreeMap<String, Cell> {
    let check: String = output
        .lines()
        .skip_while(|l| *l != "=== check")
        .take_while(|l| *l != "=== end check")
        .collect::<Vec<_>>()
        .join("\n");
    let mut cells = BTreeMap::new();
    for tier in tiers {
        let mut passed = 0;
        let mut failed = vec![];
        for line in output.lines() {
            let Some(rest) = line.strip_prefix(&format!("=== result {tier} ")) else { continue };
            let (test, rc) = rest.rsplit_once(' ').unwrap_or((rest, "?"));
            if rc == "0" {
                passed += 1;
            } else {
                failed.push(test.to_string());
            }
        }
        let unsupported = tier_unsupported(&check, tier);
        let cell = match (unsupported, failed.is_empty(), passed) {
            (Some(why), false, _) => Cell::Unsupported(why),
            (_, true, n) if n > 0 => Cell::Pass(n),
            (_, true, _) => Cell::Fail(vec!["no test ran".into()]),
            (_, false, _) => Cell::Fail(failed),
        };
        cells.insert(tier.clone(), cell);
    }
    cells
}

/// Why `fdtrace check` says a function tier cannot hook fd install here.
pub(crate) fn tier_unsupported(check: &str, tier: &str) -> Option<String> {
    if tier == "tracepoint" {
        return None;
    }
    let mut in_install = false;
    for line in check.lines() {
        if line.starts_with("  fd install") {
            in_install = true;
            continue;
        }
        if in_install {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix(tier) {
                let rest = rest.trim_start();
                return rest.strip_prefix("no: ").map(String::from);
            }
            if line.starts_with("  ") && !line.starts_with("    ") {
                break;
            }
        }
    }
    Some("fdtrace check did not report it".into())
}

fn cell_json(c: &Cell) -> serde_json::Value {
    match c {
        Cell::Pass(n) => serde_json::json!({"result": "pass", "tests": n}),
        Cell::Fail(tests) => serde_json::json!({"result": "fail", "failed": tests}),
        Cell::Unsupported(why) => serde_json::json!({"result": "unsupported", "why": why}),
    }
}

fn render(results: &BTreeMap<String, (String, BTreeMap<String, Cell>)>, tiers: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<34}", "kernel");
    for t in tiers {
        let _ = write!(out, " {t:<14}");
    }
    out.push('\n');
    let mut notes = vec![];
    for (version, (release, cells)) in results {
        let _ = write!(out, "{:<34}", format!("{version} ({release})"));
        for t in tiers {
            let text = match cells.get(t) {
                Some(Cell::Pass(n)) => format!("pass ({n})"),
                Some(Cell::Fail(tests)) => {
                    notes.push(format!("{version} {t}: failed {}", tests.join(", ")));
                    format!("FAIL ({})", tests.len())
                }
                Some(Cell::Unsupported(why)) => {
                    notes.push(format!("{version} {t}: unsupported: {why}"));
                    "unsupported".into()
                }
                None => "-".into(),
            };
            let _ = write!(out, " {text:<14}");
        }
        out.push('\n');
    }
    for n in notes {
        let _ = writeln!(out, "  {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_check_are_parsed() {
        let out = "=== check\nhook families:\n  fd install (replaces x):\n    fentry   no: the kernel refuses fentry programs (fd_install)\n    kprobe   yes (fd_install)\n  fd close (x):\n=== end check\n=== result fentry events::a 1\n=== result kprobe events::a 0\n=== result kprobe events::b 0\n=== result tracepoint events::a 101\n";
        let tiers: Vec<String> = TIERS.iter().map(|t| t.to_string()).collect();
        let cells = parse(out, &tiers);
        assert_eq!(
            cells["fentry"],
            Cell::Unsupported("the kernel refuses fentry programs (fd_install)".into())
        );
        assert_eq!(cells["kprobe"], Cell::Pass(2));
        assert_eq!(cells["tracepoint"], Cell::Fail(vec!["events::a".into()]));
    }
}
