//! fds that arrive without an fd-creating syscall of their own: received
//! over SCM_RIGHTS, taken with pidfd_getfd, opened, accepted and closed by
//! io_uring. The function tiers (fd_install and the per-fd removal) must
//! see every one of them: the open set equals /proc/PID/fd with nothing
//! missed. The tracepoint tier cannot see them; it must say so, as missed
//! opens found by reconciliation, and still end up equal to /proc.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace_tests::{
    harness::{proc_fd_numbers, report_fd_numbers, trace_every_fd, Workload},
    require_ebpf,
};

const FDPATHS: &str = env!("CARGO_BIN_EXE_fdpaths");
const T: Duration = Duration::from_secs(120);

#[test]
fn fds_from_scm_rights_pidfd_getfd_and_io_uring_are_accounted_for() {
    let ebpf = require_ebpf!();
    let mut w = Workload::spawn(FDPATHS, &[]);
    let pid = w.pid;
    let trace = trace_every_fd(&ebpf, pid);
    w.send("go");
    let held = w.json_until("paused", T);
    std::thread::sleep(Duration::from_millis(300));
    let proc = proc_fd_numbers(pid);
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let report = out.json().into_iter().rfind(|v| v["type"] == "report").expect("final report");
    let got = report_fd_numbers(&report, pid);
    assert_eq!(got, proc, "after reconciliation fdtrace's open set must equal /proc");

    let held: Vec<(String, i64)> =
        held.iter().filter_map(|h| Some((h["path"].as_str()?.to_string(), h["fd"].as_i64()?))).collect();
    let hooks = &report["hooks"];
    let function_tier = hooks["fd install"] != "tracepoint" && hooks["fd close"] != "tracepoint";
    let (missed_open, missed_close) =
        (report["missed_open"].as_u64().unwrap(), report["missed_close"].as_u64().unwrap());
    if function_tier {
        assert_eq!(
            (missed_open, missed_close),
            (0, 0),
            "function hooks missed some of {held:?}; hooks {hooks}"
        );
        // Each arrived fd is attributed to a stack, not found afterwards.
        for (path, fd) in &held {
            let group = report["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["fds"].as_array().unwrap().iter().any(|f| f["fd"] == *fd && f["pid"] == pid))
                .unwrap_or_else(|| panic!("{path} fd {fd} not in the report"));
            assert_eq!(group["origin"], "stack", "{path} fd {fd} has no stack: {group}");
        }
    } else {
        // Only pidfd_getfd has a tracepoint; the rest are found in /proc.
        let unseen = held.iter().filter(|(p, _)| p != "pidfd_getfd").count() as u64;
        assert_eq!(missed_open, unseen, "the tracepoint tier should report exactly the unseen fds {held:?}");
    }
    w.send("exit");
}
