//! fds that arrive without an fd-creating syscall of their own: received
//! over SCM_RIGHTS, taken with pidfd_getfd, opened, accepted and closed by
//! io_uring. The function tiers (fd_install and the per-fd removal) must
//! see every one of them: the open set equals /proc/PID/fd with nothing
//! missed. The tracepoint tier reads received fds back from recvmsg's and
//! recvmmsg's control buffers at exit and sees pidfd_getfd; io_uring it
//! cannot see, and it must say so, as missed opens found by
//! reconciliation, and still end up equal to /proc.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace::report::{FdInfo, Group, Report};
use fdtrace_tests::{
    harness::{proc_fd_numbers, report_fd_numbers, trace_every_fd, trace_every_fd_with, Trace, Workload},
    require_ebpf,
    workload::Held,
};

const FDPATHS: &str = env!("CARGO_BIN_EXE_fdpaths");
const T: Duration = Duration::from_secs(120);

/// The report's group and fd entry of `fd` of `pid`.
fn entry_of(report: &Report, pid: u32, fd: i32) -> Option<(&Group, &FdInfo)> {
    report.groups.iter().find_map(|g| Some((g, g.fds.iter().find(|f| f.fd == fd && f.pid == pid)?)))
}

fn on_function_tier(report: &Report) -> bool {
    let tier = |family: &str| report.hooks.get(family).map(String::as_str);
    tier("fd install") != Some("tracepoint") && tier("fd close") != Some("tracepoint")
}

#[test]
fn fds_from_scm_rights_pidfd_getfd_and_io_uring_are_accounted_for() {
    let ebpf = require_ebpf!();
    let mut w = Workload::spawn(FDPATHS, &[]);
    let pid = w.pid;
    let trace = trace_every_fd(&ebpf, pid);
    // A second fdtrace on the same process, streaming events: what each
    // received fd's record says (close-on-exec).
    let events = Trace::start(&ebpf, &["-p", &pid.to_string(), "--events", "--format", "json"]);
    w.send("go");
    let held: Vec<Held> = w.read_until("paused", T);
    std::thread::sleep(Duration::from_millis(300));
    let proc = proc_fd_numbers(pid);
    trace.signal(libc::SIGINT);
    events.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let events = events.wait(T);
    assert!(events.status.success(), "{}", events.stderr_text());
    let report = out.final_report_unchecked();
    let got = report_fd_numbers(&report, pid);
    assert_eq!(got, proc, "after reconciliation fdtrace's open set must equal /proc");

    let hooks = &report.hooks;
    let (missed_open, missed_close) = (report.stats.missed_open, report.stats.missed_close);
    // Only io_uring has no hook on the tracepoint tier.
    let unhooked: Vec<_> = held.iter().filter(|h| h.how.starts_with("io_uring")).collect();
    if on_function_tier(&report) {
        assert_eq!(
            (missed_open, missed_close),
            (0, 0),
            "function hooks missed some of {held:?}; hooks {hooks:?}"
        );
    } else {
        assert_eq!(
            (missed_open, missed_close),
            (unhooked.len() as u64, 0),
            "the tracepoint tier should miss exactly the io_uring fds of {held:?}"
        );
    }
    let received: Vec<_> =
        held.iter().filter(|h| h.how.starts_with("scm_rights") || h.how.starts_with("recvmmsg")).collect();
    assert_eq!(received.len(), 5, "the workload receives five fds: {held:?}");
    for Held { how: path, fd, kind, cloexec } in &held {
        if !on_function_tier(&report) && path.starts_with("io_uring") {
            continue;
        }
        // Each arrived fd is attributed to a stack, not found afterwards.
        let (group, entry) =
            entry_of(&report, pid, *fd).unwrap_or_else(|| panic!("{path} fd {fd} not in the report"));
        assert_eq!(group.origin, "stack", "{path} fd {fd} has no stack: {group:?}");
        if let Some(kind) = kind {
            assert_eq!(entry.kind.name(), kind.as_str(), "{path} fd {fd}: {entry:?}");
        }
        if path == "scm_rights_socket" {
            // The kernel's view of the received listener: its address.
            assert!(entry.local.as_deref().is_some_and(|l| l.starts_with("127.0.0.1:")), "{entry:?}");
        }
        // The event says whether it is close-on-exec (MSG_CMSG_CLOEXEC on
        // the tracepoint tier, the fd table's bit on the function tiers).
        if let Some(cloexec) = cloexec {
            let ev = events
                .events_of(pid)
                .into_iter()
                .find(|e| ["recvmsg", "recvmmsg"].contains(&e.event.as_str()) && e.fd == Some(*fd))
                .unwrap_or_else(|| panic!("no recvmsg event for {path} fd {fd}"));
            assert_eq!(ev.cloexec.unwrap_or(false), *cloexec, "{path}: {ev:?}");
            let syscall = if path.starts_with("recvmmsg") { "recvmmsg" } else { "recvmsg" };
            assert_eq!(ev.event, syscall, "{path}: {ev:?}");
        }
    }
    w.send("exit");
}

/// More fds in one message than the kernel side reports per call (16):
/// the tracepoint tier reports 16 with their stacks and counts the call as
/// truncated, reconciliation finds the rest; the function tiers see all.
/// recvmmsg batches of more messages than it walks (8) but without fds,
/// over UDP and over a unix socket, are not truncations.
/// With `-v` the kernel side's debug log (aya-log) says so, and every
/// program loads with its log statements in (the verifier sees them then).
#[test]
fn fds_received_past_the_walks_bound_are_counted_not_dropped() {
    let ebpf = require_ebpf!();
    const SENT: usize = 20;
    const BOUND: usize = 16;
    let mut w = Workload::spawn(FDPATHS, &["many", &SENT.to_string()]);
    let pid = w.pid;
    let trace = trace_every_fd_with(&ebpf, pid, &["-v"]);
    w.send("go");
    let held: Vec<Held> = w.read_until("paused", T);
    assert_eq!(held.len(), SENT);
    std::thread::sleep(Duration::from_millis(300));
    let proc = proc_fd_numbers(pid);
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(!stderr.contains("the kernel refused"), "a program did not load with logging on:\n{stderr}");
    let report = out.final_report_unchecked();
    assert_eq!(report_fd_numbers(&report, pid), proc, "after reconciliation the open set must equal /proc");
    let with_stack = held
        .iter()
        .filter(|h| entry_of(&report, pid, h.fd).is_some_and(|(g, _)| g.origin == "stack"))
        .count();
    let truncated = report.stats.partial_events.get("recv_truncated").copied().unwrap_or(0);
    let missed_open = report.stats.missed_open;
    if on_function_tier(&report) {
        assert_eq!((with_stack, missed_open, truncated), (SENT, 0, 0), "{report:#?}");
    } else {
        assert_eq!((with_stack, missed_open, truncated), (BOUND, (SENT - BOUND) as u64, 1), "{report:#?}");
        assert!(
            stderr.contains("received more fds than fdtrace reports per call"),
            "the kernel side's debug log is missing:\n{stderr}"
        );
    }
    w.send("exit");
}
