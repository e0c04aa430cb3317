//! What a short command leaves open when it exits (valgrind's
//! `--track-fds`): `fdtrace -- CMD` lists every fd of the reported kinds
//! still open at the exit, whatever its age, grouped by the stack that
//! opened it; `--error-exitcode` turns that into a CI failure and
//! `--suppress` leaves out the stacks meant to stay open (counted).
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace::report::{Report, Suppressed};
use fdtrace_tests::{
    fixtures,
    harness::{pretty, run_fdtrace, Ebpf, Finished},
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);

/// Launches the UDP-leaking C program (7 sockets from `open_probes`, a
/// file from `open_log`, `_exit(3)` at once: gone before fdtrace reads its
/// first event) under fdtrace with `flags`.
fn launch(ebpf: &Ebpf, flags: &[&str]) -> Finished {
    let bin = fixtures::c_udpleak();
    let mut args = flags.to_vec();
    args.extend(["--", bin.to_str().unwrap()]);
    run_fdtrace(ebpf, &args, T)
}

fn final_report(out: &Finished) -> Report {
    out.stderr_final_report()
}

#[test]
fn fds_left_open_at_exit_are_listed_however_young() {
    let ebpf = require_ebpf!();
    // The default --min-age (1 s): the program lives for milliseconds.
    let out = launch(&ebpf, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "the command's exit code:\n{}", out.stderr_text());
    let r = final_report(&out);
    assert!(r.complete, "{}", pretty(&r));
    assert_eq!(r.groups.len(), 1, "{}", pretty(&r));
    let g = &r.groups[0];
    assert_eq!((g.open, g.opened, g.closed), (7, 7, 0), "{}", pretty(g));
    assert!(g.fds.iter().all(|f| f.at_exit && f.proto.as_deref() == Some("udp")), "{}", pretty(g));
    let funcs: Vec<&str> = g.stack.iter().filter_map(|f| f.function.as_deref()).collect();
    assert!(funcs.contains(&"open_probes") && funcs.contains(&"main"), "{funcs:?}");
    assert_fully_named(g);
    let e = &r.exited[0];
    assert_eq!((e.status, e.unclosed, e.places), (3 << 8, 7, 1), "{}", pretty(&r));
    assert_eq!(e.unclosed_kinds.get("udp"), Some(&7));

    // All kinds: the log file too, from a place of its own (and what the
    // command inherited: stdin, stdout, stderr...); text says it.
    let out = launch(&ebpf, &["-a"]);
    let text = out.stderr_text();
    assert!(text.contains("exited (status 3) with") && text.contains(": 7 udp, "), "{text}");
    assert!(text.contains("or left open at exit"), "{text}");
}

/// Every frame of a group's stack up to `main` is named, the innermost
/// (libc's socket wrapper) too: the process was gone when fdtrace named
/// them. (libc's frames below `main` are named only where libc's debug
/// symbols are installed: not in the VMs.)
fn assert_fully_named(g: &fdtrace::report::Group) {
    let main = g.stack.iter().position(|f| f.function.as_deref() == Some("main"));
    let main = main.unwrap_or_else(|| panic!("no main: {}", pretty(&g.stack)));
    assert!(
        g.stack[..=main].iter().all(|f| f.function.is_some()),
        "a frame without a name: {}",
        pretty(&g.stack)
    );
    let inner = &g.stack[0];
    assert!(inner.module.as_deref().is_some_and(|m| m.starts_with("libc")), "{}", pretty(&g.stack));
}

#[test]
fn a_command_gone_in_milliseconds_has_every_stack_named() {
    let ebpf = require_ebpf!();
    // The bug raced the exit: several runs, with and without --min-age 0
    // (2 in the emulated VMs, where each start takes seconds).
    let runs = if std::env::var_os("FDTRACE_FIXTURES_PREBUILT").is_some() { 2 } else { 6 };
    for run in 0..runs {
        let flags: &[&str] =
            if run % 2 == 0 { &["--min-age", "0", "--format", "json"] } else { &["--format", "json"] };
        let out = launch(&ebpf, flags);
        assert_eq!(out.status.code(), Some(3), "run {run}:\n{}", out.stderr_text());
        let r = final_report(&out);
        assert_eq!(r.groups.len(), 1, "run {run}: {}", pretty(&r));
        let g = &r.groups[0];
        assert_eq!(g.open, 7, "run {run}: {}", pretty(g));
        assert_fully_named(g);
        let funcs: Vec<&str> = g.stack.iter().filter_map(|f| f.function.as_deref()).collect();
        assert!(funcs.contains(&"open_probes") && funcs.contains(&"main"), "run {run}: {funcs:?}");
        assert!(r.notes.iter().all(|n| !n.contains("mapping")), "run {run}: {:?}", r.notes);
    }
}

#[test]
fn a_short_go_command_has_every_socket_named_with_its_line() {
    let ebpf = require_ebpf!();
    let bin = fixtures::go("shortleak");
    let src =
        std::fs::read_to_string(fdtrace_tests::harness::workspace_root().join("tests/go/shortleak/main.go"))
            .unwrap();
    // The lines of the source that open the sockets.
    let line_of = |mark: &str| src.lines().position(|l| l.contains(mark)).unwrap() as u32 + 1;
    let (udp_line, tcp_line) = (line_of("// shortleak: udp"), line_of("// shortleak: tcp"));
    for run in 0..3 {
        let out = run_fdtrace(&ebpf, &["--min-age", "0", "--format", "json", "--", bin.to_str().unwrap()], T);
        assert_eq!(out.status.code(), Some(3), "run {run}: the command's exit code:\n{}", out.stderr_text());
        let r = final_report(&out);
        // 3 UDP sockets and a listener, each kind from its own line.
        let mut seen: Vec<(usize, u32)> = r
            .groups
            .iter()
            .map(|g| {
                assert!(g.fds.iter().all(|f| f.at_exit), "run {run}: {}", pretty(g));
                let at = g.stack.iter().find(|f| f.function.as_deref() == Some("main.openSockets"));
                let at =
                    at.unwrap_or_else(|| panic!("run {run}: main.openSockets not on {}", pretty(&g.stack)));
                assert!(at.file.as_deref().is_some_and(|f| f.ends_with("shortleak/main.go")), "{at:?}");
                assert!(g.stack.iter().all(|f| f.function.is_some()), "run {run}: {}", pretty(&g.stack));
                (g.open, at.line.unwrap())
            })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![(1, tcp_line), (3, udp_line)], "run {run}: {}", pretty(&r));
        assert_eq!(r.exited[0].unclosed, 4, "run {run}: {}", pretty(&r));
    }
}

#[test]
fn error_exitcode_fails_a_command_that_leaves_fds_open() {
    let ebpf = require_ebpf!();
    let out = launch(&ebpf, &["--error-exitcode", "42", "--format", "json"]);
    assert_eq!(out.status.code(), Some(42), "{}", out.stderr_text());
    // With every such stack suppressed nothing counts: the command's code.
    let dir = std::env::temp_dir().join(format!("fdtrace-suppress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pool.supp");
    std::fs::write(&file, "# probes live as long as the program\nopen_probes\n").unwrap();
    let out =
        launch(&ebpf, &["--error-exitcode", "42", "--suppress", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr_text());
    let r = final_report(&out);
    assert!(r.groups.is_empty(), "{}", pretty(&r));
    assert_eq!(r.suppressed, vec![Suppressed { rule: "open_probes".into(), groups: 1, fds: 7 }]);
    assert_eq!(r.exited[0].unclosed, 0);
    // A bad rule is refused before anything is traced, with its line.
    std::fs::write(&file, "fine\nfile:\n").unwrap();
    let out = launch(&ebpf, &["--suppress", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = out.stderr_text();
    assert!(text.contains("pool.supp: line 2") && text.contains("the pattern is empty"), "{text}");
    assert!(!text.contains("fdtrace: tracing"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
