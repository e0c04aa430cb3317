//! Launch mode (`fdtrace [options] -- CMD ARGS`): the command is traced
//! from its first instruction, reports go to stderr (the command keeps
//! stdout), fdtrace exits with the command's exit code, and under sudo the
//! command runs as the invoking user. Also: several pids in one session,
//! and the command-line errors of launch mode.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    process::Command,
    time::{Duration, Instant},
};

use fdtrace::{
    events::FdKind,
    report::{Group, Report},
};
use fdtrace_tests::{
    fixtures,
    harness::{
        compact, fdtrace_bin, functions, pretty, run_fdtrace, run_fdtrace_refused, EventLine, Finished,
        Output, Server, Trace, Workload,
    },
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");

/// The final JSON report fdtrace wrote to stderr (launch mode's default),
/// checked complete.
fn final_report_on_stderr(out: &Finished) -> Report {
    let report = out.stderr_final_report();
    assert_eq!(report.stats.lost_events, 0, "{}", pretty(&report));
    assert_eq!((report.stats.missed_open, report.stats.missed_close), (0, 0), "{}", pretty(&report));
    report
}

/// The C leak program, launched: it opens its first socket right after
/// exec (no waiting), leaks every other connection from `open_session`,
/// and exits 3. The report has every leaked socket, opened from
/// `open_session` (none "pre-existing"), and fdtrace exits 3.
#[test]
fn launched_c_program_is_traced_from_its_first_socket_and_its_exit_code_is_kept() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let bin = fixtures::c_leaky();
    let started = Instant::now();
    let out = run_fdtrace(
        &ebpf,
        &[
            "--format",
            "json",
            "--min-age",
            "0",
            "--",
            bin.to_str().unwrap(),
            host,
            port,
            "8",
            "20",
            "--no-wait",
            "--exit=3",
        ],
        T,
    );
    eprintln!("launch + trace + exit took {:?}", started.elapsed());
    assert_eq!(
        out.status.code(),
        Some(3),
        "fdtrace must exit with the program's code:\n{}",
        out.stderr_text()
    );
    // The program's stdout is its own: "ready", "done", no report.
    assert!(out.stdout.iter().any(|l| l == "done 4"), "{:?}", out.stdout);
    assert!(
        out.stdout.iter().all(|l| !l.contains("\"type\"")),
        "reports must not go to stdout: {:?}",
        out.stdout
    );

    let report = final_report_on_stderr(&out);
    assert!(report.complete, "{}", pretty(&report));
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "one group of leaked sockets, none pre-existing:\n{}", pretty(&report));
    let g = &groups[0];
    assert_eq!(g.origin, "stack");
    assert_eq!((g.open, g.opened, g.closed), (4, 4, 0), "{}", pretty(g));
    let funcs = functions(&g.stack);
    assert!(funcs.contains(&"open_session") && !funcs.contains(&"ping_server"), "{funcs:#?}");
    // Resolved although the program exited in a fraction of a second:
    // libc's caller (`dial`) included.
    let (dial, session) =
        (funcs.iter().position(|f| *f == "dial"), funcs.iter().position(|f| *f == "open_session"));
    assert!(dial.is_some() && dial < session, "dial not found before open_session: {funcs:#?}");
    assert!(g.fds.iter().all(|f| f.remote.as_deref() == Some(server.addr.as_str()) && f.at_exit));
    let exited = &report.exited[0];
    assert_eq!(exited.status, 3 << 8, "{}", pretty(&report));
    assert!(exited.open_at_exit >= 4, "{}", pretty(&report));
    let pid = report.pid;
    assert_eq!(report.targets[0].comm, "leaky-c");
    assert!(out.stderr.iter().any(|l| l.contains(&format!("leaky-c (pid {pid}) exited with code 3"))));
}

/// `--events --port`: only the lines of sockets to or from that port, from
/// the launched program's very first connection (made right after exec);
/// the files the dynamic loader opens, shown without the filter, are not.
#[test]
fn events_filtered_by_port_show_only_those_sockets_from_the_first() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let bin = fixtures::c_leaky();
    // Every JSON line on stderr: event lines only (`--events` alone prints
    // no reports).
    let run = |filter: &[&str]| -> Vec<EventLine> {
        let mut args = vec!["--events", "--format", "json"];
        args.extend(filter);
        args.extend(["--", bin.to_str().unwrap(), host, port, "8", "10", "--no-wait", "--exit=0"]);
        let out = run_fdtrace(&ebpf, &args, T);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
        out.stderr_output()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(*e),
                Output::Report(r) => panic!("a report among the event lines: {}", pretty(&r)),
                Output::Text(_) => None,
            })
            .collect()
    };
    let count = |lines: &[EventLine], event: &str| lines.iter().filter(|l| l.event == event).count();

    let all = run(&[]);
    assert!(all.iter().any(|l| l.kind == Some(FdKind::File)), "the loader's opens: {all:#?}");
    assert_eq!(all.iter().filter(|l| l.event == "exec").count(), 1, "traced from its exec");

    let lines = run(&["--port", port]);
    // Every one of the 8 connections, the first included.
    assert_eq!(count(&lines, "connect"), 8, "{lines:#?}");
    // ping_server's 4 closes; the leaked ones go at exit.
    assert_eq!(count(&lines, "close"), 4, "{lines:#?}");
    for l in &lines {
        match l.event.as_str() {
            "exec" | "exit" | "fork" => {}
            _ => {
                assert_eq!(l.kind, Some(FdKind::Socket), "{}", compact(l));
                let ends = [&l.local, &l.remote];
                assert!(
                    ends.iter().any(|a| a.as_deref().is_some_and(|a| a.ends_with(&format!(":{port}")))),
                    "{}",
                    compact(l)
                );
            }
        }
    }
    assert_eq!(count(&lines, "exit"), 1);
}

/// `--comm NAME`: a process with that name running before fdtrace and one
/// started after it are both traced; the late one from its exec, so its
/// first leaked sockets have their stack (none pre-existing).
#[test]
fn comm_traces_running_and_later_processes_of_that_name() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    // A name nothing else on the machine has.
    let name = format!("fdtc{}", std::process::id());
    let bin = fixtures::c_leaky().with_file_name(&name);
    std::fs::copy(fixtures::c_leaky(), &bin).expect("copy the C fixture");
    let bin = bin.to_str().unwrap();
    let mut before = Workload::spawn(bin, &[host, port, "4", "20"]);
    let trace = Trace::start(
        &ebpf,
        &["--comm", &name, "--format", "json", "--min-age", "0", "-i", "100", "-d", "2.5"],
    );
    before.send("go");
    let after = Workload::spawn(bin, &[host, port, "6", "20", "--no-wait"]);
    let report = trace.wait(T).final_report();
    let _ = std::fs::remove_file(bin);

    let targets: Vec<u32> = report.targets.iter().map(|t| t.pid).collect();
    assert_eq!(targets, [before.pid, after.pid], "{}", pretty(&report));
    let leaked = |pid: u32| -> Vec<&Group> {
        report.groups.iter().filter(|g| g.fds.iter().any(|f| f.pid == pid)).collect()
    };
    for (pid, n) in [(before.pid, 2), (after.pid, 3)] {
        let groups = leaked(pid);
        assert_eq!(groups.len(), 1, "pid {pid}: {}", pretty(&report));
        assert_eq!(groups[0].origin, "stack", "pid {pid}: seen being opened, not pre-existing");
        assert!(functions(&groups[0].stack).contains(&"open_session"), "{}", pretty(&report));
        let fds = groups[0].fds.iter().filter(|f| f.pid == pid).count();
        assert_eq!(fds, n, "pid {pid}: {}", pretty(&report));
    }
}

/// The Go client launched directly: its Transport-per-request leak is
/// traced to `main.fetchStatus` through the dial goroutines (the uprobes
/// go on the command's file before it runs), and fdtrace exits 0 as the
/// client does.
#[test]
fn launched_go_client_is_traced_to_the_function_making_the_requests() {
    let ebpf = require_ebpf!();
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let url = format!("http://{}/", server.addr);
    let client = fixtures::go("httpclient");
    let out = run_fdtrace(
        &ebpf,
        &[
            "--format",
            "json",
            "--min-age",
            "0.1",
            "--",
            client.to_str().unwrap(),
            "-url",
            &url,
            "-interval",
            "100ms",
            "-requests",
            "6",
            "-exit",
            "0",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    let report = final_report_on_stderr(&out);
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{}", pretty(&report));
    let g = &groups[0];
    assert_eq!((g.open, g.closed), (6, 0), "{}", pretty(g));
    assert!(functions(&g.spawned_by).contains(&"main.fetchStatus"), "{}", pretty(g));
    let kinds: Vec<&str> = g.findings.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["http-transport-per-request"]);
}

/// Run as root with sudo's SUDO_UID/SUDO_GID: the command runs as that
/// user (here nobody, 65534) with that user's HOME.
#[test]
fn under_sudo_the_command_runs_as_the_invoking_user() {
    let ebpf = require_ebpf!();
    let mut cmd = Command::new(fdtrace_bin(&ebpf));
    cmd.args(["--", "sh", "-c", "id -u; id -g; id -G; echo \"home=$HOME\"; exit 5"])
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .env("SUDO_USER", "nobody")
        .env("HOME", "/root");
    let out = Trace::spawn_cmd(&ebpf, &mut cmd).wait(T);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr_text());
    let home = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').nth(5).map(|h| format!("home={h}")))
        .unwrap_or_else(|| "home=/root".into());
    assert_eq!(out.stdout[..3], ["65534", "65534", "65534"], "uid, gid, groups: {:?}", out.stdout);
    assert_eq!(out.stdout[3], home);
}

/// SIGTERM to fdtrace goes to the command; fdtrace still prints the final
/// report and exits as the command did (128 + 15).
#[test]
fn a_signal_to_fdtrace_is_passed_to_the_command() {
    let ebpf = require_ebpf!();
    let trace = Trace::start(&ebpf, &["--", "sleep", "30"]);
    std::thread::sleep(Duration::from_millis(200));
    trace.signal(libc::SIGTERM);
    let out = trace.wait(Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(128 + 15), "{}", out.stderr_text());
    assert!(
        out.stderr.iter().any(|l| l.starts_with("fdtrace report:") && l.contains("final")),
        "{}",
        out.stderr_text()
    );
}

/// `-p A -p B` and `-p A,B`: one session, both in the header and the
/// report, each one's leak under its pid.
#[test]
fn several_pids_are_traced_in_one_session() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let bin = fixtures::c_leaky();
    for style in ["repeated", "comma"] {
        let mut a = Workload::spawn(bin.to_str().unwrap(), &[host, port, "4", "20"]);
        let mut b = Workload::spawn(bin.to_str().unwrap(), &[host, port, "8", "20"]);
        let (pa, pb) = (a.pid.to_string(), b.pid.to_string());
        let both = format!("{pa},{pb}");
        let mut args = vec!["--format", "json", "--min-age", "0", "-i", "100", "-d", "2"];
        match style {
            "repeated" => args.extend(["-p", pa.as_str(), "-p", pb.as_str()]),
            _ => args.extend(["-p", both.as_str()]),
        }
        let trace = Trace::start(&ebpf, &args);
        let attached = trace.stderr.seen.join("\n");
        assert!(attached.contains(&format!("{pa} (leaky-c), {pb} (leaky-c)")), "{attached}");
        a.send("go");
        b.send("go");
        let report = trace.wait(T).final_report();
        let targets: Vec<u32> = report.targets.iter().map(|t| t.pid).collect();
        assert_eq!(targets, [a.pid, b.pid], "{style}");
        let leaked = |pid: u32| -> usize {
            report
                .groups
                .iter()
                .filter(|g| g.origin == "stack")
                .flat_map(|g| &g.fds)
                .filter(|f| f.pid == pid)
                .count()
        };
        assert_eq!((leaked(a.pid), leaked(b.pid)), (2, 4), "{style}: {}", pretty(&report));
    }
    // The text header names both.
    let mut a = Workload::spawn(bin.to_str().unwrap(), &[host, port, "2", "20"]);
    let mut b = Workload::spawn(bin.to_str().unwrap(), &[host, port, "2", "20"]);
    let both = format!("{},{}", a.pid, b.pid);
    let trace = Trace::start(&ebpf, &["-p", &both, "-d", "1"]);
    a.send("go");
    b.send("go");
    let out = trace.wait(T);
    let header = out.stdout.iter().find(|l| l.starts_with("fdtrace report:")).expect("a report");
    assert!(header.contains(&format!("pids {} (leaky-c), {} (leaky-c)", a.pid, b.pid)), "{header}");
}

/// A command that does not exist: the shell's message and code, before
/// anything is loaded (no root needed).
#[test]
fn a_missing_command_fails_like_a_shell() {
    let out = run_fdtrace_refused(&["--", "no-such-command-fdtrace"], T);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(out.stderr_text(), "fdtrace: no-such-command-fdtrace: command not found");
    let out = run_fdtrace_refused(&["--", "./no/such/path"], T);
    assert_eq!(out.status.code(), Some(127), "{}", out.stderr_text());
}

/// `--pid` with a command: which one to trace? An error that says so.
#[test]
fn a_pid_and_a_command_together_are_refused() {
    let out = run_fdtrace_refused(&["-p", "1", "--", "true"], T);
    assert_eq!(out.status.code(), Some(2));
    let err = out.stderr_text();
    assert!(err.contains("'--pid <PID>' cannot be used with '[CMD]...'"), "{err}");
}
