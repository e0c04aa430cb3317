//! The live view: SIGUSR1 prints a report on demand; colours mark
//! CLOSE_WAIT only when asked for or on a terminal (never with --no-color
//! or NO_COLOR); the status line shows only on a terminal (a pty from
//! `script`).
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{process::Command, time::Duration};

use fdtrace_tests::{
    harness::{fdtrace_bin, pretty, trace_until_done, Ebpf, Finished, Output, Server, Trace, Workload},
    require_ebpf, require_tool,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");
const HALFCLOSE: &str = env!("CARGO_BIN_EXE_halfclose");
/// How a terminal shows CLOSE_WAIT (bold red) and erases the status line.
const RED: &str = "\x1b[1;31m";
const ERASE: &str = "\r\x1b[2K";

/// A client whose 4 connections end in CLOSE_WAIT (the server hangs up).
fn close_wait_client(server: &Server) -> Workload {
    Workload::spawn(HALFCLOSE, &["--connect", &server.addr, "--count", "4"])
}

/// Traces the CLOSE_WAIT client in text with `extra` flags until it is
/// done, then stops fdtrace.
fn trace_close_wait(ebpf: &Ebpf, extra: &[&str]) -> Finished {
    let server = Server::start(LEAKY, &["--serve", "--hangup"]);
    let mut flags = vec!["-i", "3600", "--min-age", "0.5"];
    flags.extend(extra);
    trace_until_done(ebpf, &mut close_wait_client(&server), &flags, Duration::from_millis(800), T)
}

fn close_wait_lines(out: &[String]) -> Vec<&String> {
    out.iter().filter(|l| l.contains("CLOSE_WAIT")).collect()
}

#[test]
fn sigusr1_prints_a_report_on_demand() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let args = ["--connect", &server.addr, "--wait", "--interval-ms", "100", "--requests", "6"];
    let mut client = Workload::spawn(LEAKY, &args);
    let pid = client.pid.to_string();
    // Reports every hour: any report before the end is SIGUSR1's.
    let mut trace = Trace::start(&ebpf, &["-p", &pid, "--format", "json", "-i", "3600", "--min-age", "0"]);
    client.send("go");
    client.stdout.wait_for("`done`", T, |l| l.starts_with("done"));
    trace.signal(libc::SIGUSR1);
    let live = trace
        .stdout
        .wait_for("a report after SIGUSR1", Duration::from_secs(10), |l| l.contains(r#""type":"report""#));
    let live = match Output::read(&live).unwrap_or_else(|e| panic!("{e}")) {
        Output::Report(r) => r,
        other => panic!("not a report: {other:?}"),
    };
    assert!(!live.is_final, "{}", pretty(&live));
    assert_eq!(live.unclosed, 3, "fetch_inventory's 3 connections: {}", pretty(&live));
    // Tracing goes on, and ends with the final report as usual.
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    let finals: Vec<bool> = out.reports().iter().map(|r| r.is_final).collect();
    assert_eq!(finals, [false, true], "SIGUSR1's report, then the final one");
    out.final_report();
}

#[test]
fn color_always_marks_close_wait_and_no_color_wins() {
    let ebpf = require_ebpf!();
    // --color always: CLOSE_WAIT in bold red, even into a pipe.
    let out = trace_close_wait(&ebpf, &["--color", "always"]);
    let lines = close_wait_lines(&out.stdout);
    assert!(!lines.is_empty(), "no CLOSE_WAIT in:\n{}", out.stdout.join("\n"));
    assert!(lines.iter().all(|l| l.starts_with(&format!("    {RED}"))), "{lines:#?}");
    // Not a terminal: no status line on stderr.
    assert!(!out.stderr_text().contains('\x1b'), "escape sequences on stderr:\n{:?}", out.stderr);

    // --no-color beats --color always; NO_COLOR beats auto (on a pipe
    // auto is off anyway: the pty test below checks auto on a terminal).
    let out = trace_close_wait(&ebpf, &["--color", "always", "--no-color"]);
    assert!(!close_wait_lines(&out.stdout).is_empty());
    assert!(!out.stdout.join("\n").contains('\x1b'), "{:?}", out.stdout);
}

/// Runs fdtrace on a pty (`script`), with `NO_COLOR` set or not, on the
/// CLOSE_WAIT client; returns everything the terminal received.
fn on_a_terminal(ebpf: &Ebpf, script: &std::path::Path, no_color: bool) -> String {
    let server = Server::start(LEAKY, &["--serve", "--hangup"]);
    let mut w = close_wait_client(&server);
    let cmd = format!("{} -p {} -d 5 -i 3600 --min-age 0.5", fdtrace_bin(ebpf).display(), w.pid);
    let mut script = Command::new(script);
    script.args(["-qec", &cmd, "/dev/null"]);
    if no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let mut trace = Trace::spawn_cmd(ebpf, &mut script);
    trace.stdout.wait_for("saying fdtrace attached", T, |l| l.contains("fdtrace: tracing"));
    w.send("go");
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stdout.join("\n"));
    out.stdout.join("\n")
}

#[test]
fn on_a_terminal_a_status_line_and_colours_unless_no_color() {
    let ebpf = require_ebpf!();
    let script = require_tool!("script");
    let tty = on_a_terminal(&ebpf, &script, false);
    // The status line, drawn in place: erase, then the counts.
    let status = tty.split(ERASE).filter(|s| s.starts_with("fdtrace: ") && s.contains(" events · ")).count();
    assert!(status >= 2, "no status line redrawn every second:\n{tty:?}");
    // It is erased before the report: the report's first line starts
    // right after an erase.
    assert!(tty.contains(&format!("{ERASE}fdtrace report:")), "{tty:?}");
    assert!(tty.contains(&format!("{RED}    4 × ")) && tty.contains("CLOSE_WAIT"), "{tty:?}");

    let plain = on_a_terminal(&ebpf, &script, true);
    assert!(plain.contains("CLOSE_WAIT"), "{plain:?}");
    assert!(!plain.contains(RED), "NO_COLOR was set:\n{plain:?}");
    assert!(plain.contains(ERASE), "the status line does not depend on NO_COLOR");
}
