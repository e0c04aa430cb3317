//! The ledger against the kernel: after a seeded random churn of fd
//! operations (sockets, pipes, files, dup2 over open fds, close_range,
//! forks, exec with close-on-exec, threads closing each other's fds) the
//! workload pauses, and fdtrace's open set must equal `/proc/PID/fd`
//! exactly — with 0 missed opens and 0 missed closes found by
//! reconciliation.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use fdtrace::{events::FdKind, report::FdInfo};
use fdtrace_tests::{
    harness::{proc_fd_numbers, report_fd_numbers, trace_every_fd_with, Ebpf, Workload},
    require_ebpf,
};

const CHURN: &str = env!("CARGO_BIN_EXE_churn");
const T: Duration = Duration::from_secs(60);

/// fd → kind as /proc shows it.
fn proc_fds(pid: u32) -> BTreeMap<i32, FdKind> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            let kind = match link.split(':').next().unwrap_or_default() {
                "socket" => FdKind::Socket,
                "pipe" => FdKind::Pipe,
                "anon_inode" => {
                    match link.trim_start_matches("anon_inode:").trim_matches(|c| c == '[' || c == ']') {
                        "eventfd" => FdKind::Eventfd,
                        "eventpoll" => FdKind::Epoll,
                        "timerfd" => FdKind::Timerfd,
                        "signalfd" => FdKind::Signalfd,
                        "inotify" => FdKind::Inotify,
                        "pidfd" => FdKind::Pidfd,
                        _ => FdKind::Other,
                    }
                }
                "pidfd" => FdKind::Pidfd,
                _ if link.starts_with("/memfd:") => FdKind::Memfd,
                _ => FdKind::File,
            };
            Some((fd, kind))
        })
        .collect()
}

/// How the fds are paired: by the kernel (the default for reports), or
/// every event through the ring to fdtrace.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pairing {
    Kernel,
    Fdtrace,
}

fn churn_matches_proc(ebpf: &Ebpf, seed: &str, pairing: Pairing) {
    let mut w = Workload::spawn(CHURN, &["--seed", seed, "--ops", "400"]);
    let pid = w.pid;
    let flags: &[&str] = if pairing == Pairing::Fdtrace { &["--no-kernel-pairing"] } else { &[] };
    let trace = trace_every_fd_with(ebpf, pid, flags);
    w.send("go");
    w.stdout.wait_for("`paused`", T, |l| l == "paused");
    std::thread::sleep(Duration::from_millis(300));
    let want = proc_fds(pid);
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let report = out.reports().pop().expect("final report");
    assert_eq!(report.stats.lost_events, 0, "seed {seed}: events lost");
    // The kernel kept fds, and gave them back at every fork, exec and
    // close_range.
    let kernel = report.stats.kernel_pairing;
    match pairing {
        Pairing::Kernel => {
            let k = kernel.expect("a report says what the kernel paired");
            // (The churn forks, execs and close_ranges often: each takes
            // back what the kernel kept, so it pairs little itself here.)
            assert!(k.kept > 0 && k.taken > 0, "seed {seed}: the kernel kept nothing: {k:?}");
        }
        Pairing::Fdtrace => assert_eq!(kernel, None, "--no-kernel-pairing, yet: {kernel:?}"),
    }
    let missed: Vec<&FdInfo> =
        report.groups.iter().filter(|g| g.origin == "missed-open").flat_map(|g| &g.fds).collect();
    assert_eq!(
        (report.stats.missed_open, report.stats.missed_close),
        (0, 0),
        "seed {seed}: the ledger disagreed with /proc before correction ({} events, partial: {:?}); \
         missed opens: {missed:#?}",
        report.stats.events,
        report.stats.partial_events
    );
    let mut got = BTreeMap::new();
    for g in &report.groups {
        for fd in &g.fds {
            if fd.pid == pid && !fd.at_exit {
                got.insert(fd.fd, fd.kind);
            }
        }
    }
    assert!(want.len() > 20, "seed {seed}: churn left only {} fds", want.len());
    let only_fdtrace: Vec<_> = got.iter().filter(|(fd, _)| !want.contains_key(fd)).collect();
    let only_proc: Vec<_> = want.iter().filter(|(fd, _)| !got.contains_key(fd)).collect();
    let kinds: Vec<_> =
        got.iter().filter_map(|(fd, k)| want.get(fd).filter(|w| *w != k).map(|w| (fd, k, w))).collect();
    assert!(
        only_fdtrace.is_empty() && only_proc.is_empty() && kinds.is_empty(),
        "seed {seed}: fdtrace and /proc differ ({} fds in /proc):\n only in fdtrace: {only_fdtrace:?}\n only in /proc: {only_proc:?}\n kind (fdtrace, /proc): {kinds:?}",
        want.len()
    );
    w.send("exit");
}

#[test]
fn open_set_equals_proc_after_random_churn() {
    let ebpf = require_ebpf!();
    // `$FDTRACE_CHURN_SEEDS` (comma-separated) runs other seeds.
    let seeds = std::env::var("FDTRACE_CHURN_SEEDS").unwrap_or_else(|_| "1,2,3".into());
    for seed in seeds.split(',') {
        churn_matches_proc(&ebpf, seed.trim(), Pairing::Kernel);
    }
}

#[test]
fn open_set_equals_proc_when_fdtrace_pairs_every_event() {
    let ebpf = require_ebpf!();
    churn_matches_proc(&ebpf, "4", Pairing::Fdtrace);
}

/// `-f` with the kernel pairing: a parent forks two children at once and
/// each opens thousands of sockets straight away, so the kernel keeps a
/// child's fds before fdtrace has read the record of that child's fork
/// (a take at the first fork's record finds the second child's). Every
/// process's open set must still equal its `/proc/PID/fd`, nothing missed.
#[test]
fn followed_children_open_sets_equal_proc() {
    let ebpf = require_ebpf!();
    const FDSTRESS: &str = env!("CARGO_BIN_EXE_fdstress");
    let mut w = Workload::spawn(FDSTRESS, &["--fds", "12000", "--procs", "3"]);
    let trace = trace_every_fd_with(&ebpf, w.pid, &["-f"]);
    w.send("go");
    assert_eq!(w.stdout.wait_for("opened", T, |l| l.starts_with("opened")), "opened (0 failed)");
    std::thread::sleep(Duration::from_millis(300));
    let children: Vec<u32> = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", w.pid))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 2, "fdstress --procs 3 forks two children");
    let pids: Vec<u32> = [w.pid].into_iter().chain(children).collect();
    let want: Vec<BTreeSet<i64>> = pids.iter().map(|&p| proc_fd_numbers(p)).collect();
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let report = out.reports().pop().expect("final report");
    let k = report.stats.kernel_pairing.expect("-f pairs in the kernel");
    assert!(k.kept > 0, "the kernel kept nothing: {k:?}");
    assert_eq!(report.stats.lost_events, 0, "events lost");
    assert_eq!(
        (report.stats.missed_open, report.stats.missed_close),
        (0, 0),
        "the ledger disagreed with /proc before correction"
    );
    for (pid, want) in pids.iter().zip(&want) {
        assert!(want.len() > 4000, "pid {pid} holds only {} fds", want.len());
        let got = report_fd_numbers(&report, *pid);
        assert_eq!(
            (got.difference(want).count(), want.difference(&got).count()),
            (0, 0),
            "pid {pid}: fds only in fdtrace, only in /proc"
        );
    }
    w.send("exit");
}
