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
    harness::{pretty, run_fdtrace, Ebpf, Finished, Output},
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);

/// Launches the UDP-leaking C program (7 sockets from `open_probes`, a
/// file from `open_log`, `_exit(3)` 0.3 s later: younger than the default
/// `--min-age`) under fdtrace with `flags`.
fn launch(ebpf: &Ebpf, flags: &[&str]) -> Finished {
    let bin = fixtures::c_udpleak();
    let mut args = flags.to_vec();
    args.extend(["--", bin.to_str().unwrap()]);
    run_fdtrace(ebpf, &args, T)
}

fn final_report(out: &Finished) -> Report {
    out.stderr_output()
        .into_iter()
        .filter_map(|o| match o {
            Output::Report(r) => Some(*r),
            _ => None,
        })
        .rfind(|r| r.is_final)
        .unwrap_or_else(|| panic!("no final report on stderr:\n{}", out.stderr_text()))
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
    // Every frame named, the innermost (libc's socket) too.
    assert!(g.stack.iter().take(3).all(|f| f.function.is_some()), "{}", pretty(&g.stack));
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
