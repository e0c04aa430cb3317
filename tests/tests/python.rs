//! CPython, with no flag on the target: the kernel reads the interpreter's
//! own frame chain at each open, and the report names the Python function
//! that leaked, with its file and line, through `socket.create_connection`
//! and through `http.client`, in each CPython 3.10–3.13 that pyenv has.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use fdtrace::{
    events::TcpState,
    report::{Group, Report},
    symbolize::Frame,
};
use fdtrace_tests::{
    fixtures,
    harness::{pretty, run_fdtrace, trace_until_done, Ebpf, Server, Workload},
    require_ebpf,
    skip::{in_ci, skipped},
};

const T: Duration = Duration::from_secs(60);

/// The pyenv interpreter of CPython `3.minor`, if installed.
fn pyenv_python(minor: u32) -> Option<PathBuf> {
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))?;
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&format!("3.{minor}."))
                    .is_some_and(|patch| patch.chars().all(|c| c.is_ascii_digit()))
            })
        })
        .collect();
    versions.sort();
    versions.pop().map(|v| v.join(format!("bin/python3.{minor}"))).filter(|p| p.exists())
}

fn script() -> PathBuf {
    fdtrace_tests::harness::workspace_root().join("tests/python/leaky.py")
}

/// The number of the first line of `leaky.py` that contains `text`.
fn line_of(text: &str) -> u32 {
    let source = std::fs::read_to_string(script()).unwrap();
    let at =
        source.lines().position(|l| l.contains(text)).unwrap_or_else(|| panic!("{text:?} not in leaky.py"));
    at as u32 + 1
}

/// The innermost frame of the program's own code: the report's `at`.
fn at(group: &Group) -> &Frame {
    group.stack.iter().find(|f| !f.is_library()).unwrap_or_else(|| panic!("no own frame:\n{}", pretty(group)))
}

fn functions(group: &Group) -> Vec<String> {
    group.stack.iter().map(|f| f.function.clone().unwrap_or_else(|| "??".into())).collect()
}

/// Runs leaky.py under `python` with fdtrace attached to it (after it
/// started: nothing on the command line of the target), `n` requests.
fn trace_leaky(ebpf: &Ebpf, python: &Path, server: &Server, n: usize) -> Report {
    let mut client = Workload::spawn(python, &[script().to_str().unwrap(), &server.addr, &n.to_string()]);
    let flags = ["--format", "json", "-i", "100", "-d", "60"];
    trace_until_done(ebpf, &mut client, &flags, Duration::from_millis(1500), T).final_report()
}

fn check_version(ebpf: &Ebpf, minor: u32, python: &Path) {
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let n = 4;
    let report = trace_leaky(ebpf, python, &server, n);
    let groups: Vec<&Group> = report.groups.iter().filter(|g| g.has_stack()).collect();
    assert_eq!(groups.len(), 2, "3.{minor}: one group per leaking function:\n{}", pretty(&report));
    let qualified =
        |name: &str| if minor >= 11 { name.to_string() } else { name.rsplit('.').next().unwrap().into() };
    let expect = [
        ("fetch_status", line_of("conn.request(\"GET\""), "HTTPConnection.connect"),
        ("Pool.connect", line_of("socket.create_connection("), "create_connection"),
    ];
    for (function, line, through) in expect {
        let g = groups
            .iter()
            .find(|g| at(g).function.as_deref() == Some(&qualified(function)))
            .unwrap_or_else(|| panic!("3.{minor}: no group at {function}:\n{}", pretty(&report)));
        assert_eq!((g.open, g.opened, g.closed), (n, n as u64, 0), "3.{minor} {function}:\n{}", pretty(g));
        assert_eq!(g.peers[0].remote, server.addr, "{}", pretty(g));
        assert_eq!(g.peers[0].state, Some(TcpState::Established), "{}", pretty(g));
        let own = at(g);
        assert_eq!(own.line, Some(line), "3.{minor} {function}: the line of the call:\n{}", pretty(g));
        assert_eq!(own.file.as_deref(), script().to_str(), "{}", pretty(g));
        let names = functions(g);
        // Through the standard library, which is library code; then the
        // callers, out to the module's code.
        let through = qualified(through);
        let lib = names.iter().position(|f| *f == through);
        let own_at = names.iter().position(|f| *f == qualified(function));
        assert!(lib.is_some() && lib < own_at, "3.{minor}: {through} inside {function}: {names:?}");
        assert!(
            g.stack.iter().any(|f| f.function.as_deref() == Some(&through) && f.is_library()),
            "{names:?}"
        );
        assert_eq!(names[names.len() - 2..], ["main", "<module>"], "3.{minor}: {names:?}");
        // socket() itself, in libc, is the innermost frame.
        assert!(names[0].contains("socket"), "3.{minor}: {names:?}");
        assert!(!names.iter().any(|f| f == "??"), "3.{minor}: an unnamed frame: {names:?}");
    }
    // The native walk that went astray in the interpreter is not taken for
    // JIT code.
    assert!(!report.notes.iter().any(|n| n.contains("JIT")), "3.{minor}: {:?}", report.notes);
}

/// Each pyenv CPython 3.10–3.13: what a missing one skips (CI needs at
/// least one).
#[test]
fn the_leaking_python_function_is_named_with_its_line() {
    let ebpf = require_ebpf!();
    let mut ran = 0;
    for minor in 10..=13 {
        let Some(python) = pyenv_python(minor) else {
            let why = format!("no pyenv CPython 3.{minor} (`pyenv install 3.{minor}`)");
            if in_ci() {
                // CI needs the versions the machine has, not every one.
                let _ = writeln!(std::io::stderr(), "NOT RUN python 3.{minor}: {why}");
            } else {
                skipped(&format!("python 3.{minor}"), &why);
            }
            continue;
        };
        check_version(&ebpf, minor, &python);
        ran += 1;
    }
    if ran == 0 {
        skipped("the_leaking_python_function_is_named_with_its_line", "no pyenv CPython 3.10–3.13 installed");
    }
}

/// Debian's python3.11: one executable, no libpython, no DWARF: the
/// offsets come from fdtrace's table.
#[test]
fn debians_python_without_debug_info_is_named_from_the_offset_table() {
    let ebpf = require_ebpf!();
    let python = Path::new("/usr/bin/python3.11");
    if !python.exists() {
        skipped("debians_python_without_debug_info_is_named_from_the_offset_table", "no /usr/bin/python3.11");
        return;
    }
    check_version(&ebpf, 11, python);
}

/// A CPython fdtrace has no offsets for still gets its native report, and
/// a note says why its Python frames are missing.
#[test]
fn an_unknown_python_version_gets_its_native_report_and_a_note() {
    let ebpf = require_ebpf!();
    let Some(python) = (6..=9).rev().find_map(pyenv_python) else {
        skipped("an_unknown_python_version_gets_its_native_report_and_a_note", "no pyenv CPython 3.6–3.9");
        return;
    };
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let report = trace_leaky(&ebpf, &python, &server, 2);
    let groups: Vec<&Group> = report.groups.iter().filter(|g| g.has_stack()).collect();
    assert!(!groups.is_empty(), "{}", pretty(&report));
    assert_eq!(groups.iter().map(|g| g.open).sum::<usize>(), 4, "{}", pretty(&report));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("Python frames not named") && n.contains("offsets for CPython 3.")),
        "{:?}",
        report.notes
    );
}

/// Launch mode: `fdtrace -- python3.X script`: the interpreter is found
/// once the command has exec'd and mapped its libpython, and the opens
/// after that carry their Python stacks.
#[test]
fn a_launched_python_command_has_its_leak_named() {
    let ebpf = require_ebpf!();
    let Some(python) = (10..=13).rev().find_map(pyenv_python) else {
        skipped("a_launched_python_command_has_its_leak_named", "no pyenv CPython 3.10–3.13");
        return;
    };
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let script = fdtrace_tests::harness::workspace_root().join("tests/python/exitleak.py");
    let args =
        ["--format", "json", "--", python.to_str().unwrap(), script.to_str().unwrap(), &server.addr, "3"];
    let out = run_fdtrace(&ebpf, &args, T);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    let report = out.stderr_final_report();
    let g = report
        .groups
        .iter()
        .find(|g| g.has_stack() && g.open == 3)
        .unwrap_or_else(|| panic!("no group of the 3 sockets:\n{}", pretty(&report)));
    let own = at(g);
    let source = std::fs::read_to_string(&script).unwrap();
    let line = source.lines().position(|l| l.contains("socket.create_connection(")).unwrap() as u32 + 1;
    assert_eq!((own.function.as_deref(), own.line), (Some("open_connections"), Some(line)), "{}", pretty(g));
    assert_eq!(functions(g).last().map(String::as_str), Some("<module>"), "{}", pretty(g));
}
