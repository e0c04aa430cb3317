//! Robustness: fdtrace under conditions that break tracers — a ring buffer
//! that overflows, two fdtraces on one process, a thousand threads racing,
//! a binary deleted or with corrupt debug info. None may crash, hang, or
//! report wrong counts; what was lost is counted exactly.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{process::Command, time::Duration};

use fdtrace::report::{Group, Report};
use fdtrace_tests::{
    harness::{pretty, proc_fd_numbers, report_fd_numbers, trace_every_fd, Ebpf, Server, Trace, Workload},
    require_ebpf,
    workload::LoadResult,
};

const T: Duration = Duration::from_secs(60);
const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");
const FDSTRESS: &str = env!("CARGO_BIN_EXE_fdstress");

/// fdtrace is stopped (SIGSTOP) while the workload churns, every event
/// going through the ring (`--no-kernel-pairing`): the 16 KiB ring fills and the
/// kernel side counts every record it could not reserve. What arrived plus
/// what was counted lost must be what the workload did, and the report
/// must say it is incomplete and how to fix it.
#[test]
fn an_overflowing_ring_is_counted_exactly_and_named() {
    let ebpf = require_ebpf!();
    let (report, stderr, fd_events) = stopped_during_churn(&ebpf, &["--no-kernel-pairing"]);
    let (lost, events) = (report.stats.lost_events, report.stats.events);
    assert!(lost > 0, "nothing lost with fdtrace stopped and a 16K ring? {}", pretty(&report));
    assert_accounted(events + lost, fd_events);
    assert!(!report.complete);
    assert!(
        stderr.contains(&format!("{lost} lost")) && stderr.contains("--ringbuf-size"),
        "the loss and its remedy are not on stderr:\n{stderr}"
    );
}

/// The same churn with the same stopped fdtrace and tiny ring, in report
/// mode: the kernel pairs each open with its close itself, nothing goes
/// through the ring, nothing is lost — and every event is still counted.
#[test]
fn the_kernel_pairs_what_a_stopped_fdtrace_cannot_read() {
    let ebpf = require_ebpf!();
    let (report, _, fd_events) = stopped_during_churn(&ebpf, &[]);
    let (lost, events) = (report.stats.lost_events, report.stats.events);
    assert_eq!(lost, 0, "lost events in report mode: {}", pretty(&report));
    assert_accounted(events, fd_events);
    let k = report.stats.kernel_pairing.expect("what the kernel paired");
    // Each pair is an open kept and a close paired.
    assert!(k.paired * 2 + 4 >= fd_events && k.kept >= k.paired, "{k:?} of {fd_events} fd events");
    assert!(report.complete, "{}", pretty(&report));
}

/// Runs a 0.5-s open/close churn while fdtrace (with `flags`, a 16 KiB
/// ring) is stopped; its final report, its stderr, and the fd events the
/// workload made.
fn stopped_during_churn(ebpf: &Ebpf, flags: &[&str]) -> (Report, String, u64) {
    let mut w = Workload::spawn(LOADGEN, &["open", "--secs", "0.5"]);
    let pid = w.pid.to_string();
    let mut args = vec!["-p", &pid, "--ringbuf-size", "16K", "--format", "json", "-i", "3600"];
    args.extend(flags);
    let trace = Trace::start(ebpf, &args);
    trace.signal(libc::SIGSTOP);
    w.send("go");
    let done: LoadResult = w.result(T);
    assert!(w.wait().success());
    trace.signal(libc::SIGCONT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    (out.final_report_unchecked(), out.stderr_text(), done.fd_events)
}

/// `counted` events (received, kept, paired, lost) are what the workload
/// did: its opens and closes, plus the exit record and a thread's start
/// and end at most (and in report mode the record of its one call site).
fn assert_accounted(counted: u64, fd_events: u64) {
    let extra = counted as i64 - fd_events as i64;
    assert!((0..=4).contains(&extra), "counted {counted} events but the workload made {fd_events} fd events");
}

/// Two fdtraces on one process each load their own programs and maps:
/// both see everything.
#[test]
fn two_fdtraces_on_one_process_both_see_the_leak() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let args = ["--connect", &server.addr, "--wait", "--interval-ms", "100", "--requests", "12"];
    let mut w = Workload::spawn(LEAKY, &args);
    let pid = w.pid.to_string();
    let targs = ["-p", &pid, "--format", "json", "-i", "100"];
    let (a, b) = (Trace::start(&ebpf, &targs), Trace::start(&ebpf, &targs));
    w.send("go");
    // Every request made, and the last leak older than --min-age (1 s):
    // then both stop (a fixed -d raced their start-up on a busy machine).
    w.stdout.wait_for("`done`", T, |l| l.starts_with("done"));
    std::thread::sleep(Duration::from_millis(1300));
    a.signal(libc::SIGINT);
    b.signal(libc::SIGINT);
    let summary = |t: Trace| {
        let r = t.wait(T).final_report();
        assert_eq!(r.stats.lost_events, 0);
        let g = &r.groups[0];
        (g.open, g.opened, g.closed, r.stats.missed_open)
    };
    let (ra, rb) = (summary(a), summary(b));
    assert_eq!(ra, (6, 6, 0, 0));
    assert_eq!(ra, rb, "the two fdtraces disagree");
}

/// 1,000 threads open and close fds at once, each keeping one socket: the
/// ledger must match `/proc` exactly, with nothing missed.
#[test]
fn a_thousand_threads_racing_agree_with_proc() {
    let ebpf = require_ebpf!();
    let mut w = Workload::spawn(FDSTRESS, &["--threads", "1000"]);
    let pid = w.pid;
    let trace = trace_every_fd(&ebpf, pid);
    w.send("go");
    let opened = w.stdout.wait_for("opened", T, |l| l.starts_with("opened"));
    assert_eq!(opened, "opened (0 failed)");
    let want = proc_fd_numbers(pid);
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    let report = out.final_report();
    assert_eq!(report.stats.lost_events, 0);
    assert_eq!((report.stats.missed_open, report.stats.missed_close), (0, 0), "{}", out.stderr_text());
    let got = report_fd_numbers(&report, pid);
    assert!(want.len() > 1000, "{} fds open", want.len());
    assert_eq!(got, want, "fdtrace's open set differs from /proc");
    w.send("exit");
}

/// The leak group of a report on the Rust leaky client started from `bin`.
fn leak_group(ebpf: &Ebpf, bin: &str, before_go: impl FnOnce()) -> Group {
    let server = Server::start(LEAKY, &["--serve"]);
    let args = ["--connect", &server.addr, "--wait", "--interval-ms", "100", "--requests", "12"];
    let mut w = Workload::spawn(bin, &args);
    before_go();
    let pid = w.pid.to_string();
    let trace = Trace::start(ebpf, &["-p", &pid, "--format", "json", "-i", "100", "-d", "3.5"]);
    w.send("go");
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let report = out.final_report();
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{}", pretty(&report));
    assert_eq!((groups[0].open, groups[0].opened), (6, 6), "{}", pretty(&report));
    groups[0].clone()
}

/// What each frame names: its function, file and module.
fn frames(group: &Group) -> Vec<String> {
    group
        .stack
        .iter()
        .map(|f| {
            [&f.function, &f.file, &f.module].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// A binary deleted from disk while it runs: frames come from the mapping
/// the process still holds, or as module+offset — never a crash.
#[test]
fn a_deleted_binary_still_gets_a_report() {
    let ebpf = require_ebpf!();
    let dir = tempdir("deleted");
    let copy = dir.join("leaky-deleted");
    std::fs::copy(LEAKY, &copy).unwrap();
    let g = leak_group(&ebpf, copy.to_str().unwrap(), || std::fs::remove_file(&copy).unwrap());
    let frames = frames(&g);
    assert!(!frames.is_empty(), "no frames at all");
    assert!(
        frames.iter().any(|f| f.contains("fetch_inventory") || f.contains("leaky-deleted")),
        "frames name neither the function nor the module: {frames:#?}"
    );
}

/// Debug info overwritten with garbage: the symbol table still names the
/// function; file:line is simply missing.
#[test]
fn corrupt_debug_info_still_gets_a_report() {
    let ebpf = require_ebpf!();
    let dir = tempdir("corrupt");
    let copy = dir.join("leaky-corrupt");
    let garbage = dir.join("garbage");
    std::fs::write(
        &garbage,
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let status = Command::new("objcopy")
        .arg(format!("--update-section=.debug_info={}", garbage.display()))
        .arg(format!("--update-section=.debug_line={}", garbage.display()))
        .args([LEAKY, copy.to_str().unwrap()])
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let g = leak_group(&ebpf, copy.to_str().unwrap(), || {});
    let frames = frames(&g);
    assert!(frames.iter().any(|f| f.contains("fetch_inventory")), "{frames:#?}");
}

/// A directory of the test's own, removed with what it holds when the
/// test ends (passed or failed).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("fdtrace-robust-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A followed child exits and a new, unrelated process gets its pid while
/// fdtrace runs: the new process is not traced, and the old lifetime ends
/// at its exit.
#[test]
fn a_reused_pid_is_not_traced() {
    let ebpf = require_ebpf!();
    let script = "echo ready $$; read go; (exec true) & c=$!; wait $c; echo child $c; read done";
    let mut w = Workload::spawn("/bin/sh", &["-c", script]);
    let trace = Trace::start(&ebpf, &["-p", &w.pid.to_string(), "-f", "--events", "--format", "json"]);
    w.send("go");
    let child: u32 = w.stdout.wait_for("the child's pid", T, |l| l.starts_with("child "))["child ".len()..]
        .trim()
        .parse()
        .unwrap();
    // The next pid the kernel hands out is the child's again.
    let mut reused = None;
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (child - 1).to_string()).expect("ns_last_pid");
        let c = Command::new("/bin/sh")
            .args(["-c", "exec 3</dev/null; exec 4</dev/null; sleep 0.3"])
            .spawn()
            .unwrap();
        if c.id() == child {
            reused = Some(c);
            break;
        }
        let mut c = c;
        let _ = c.wait();
    }
    let mut reused = reused.expect("could not get the child's pid again");
    assert!(reused.wait().unwrap().success());
    w.send("done");
    assert!(w.wait().success());
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let events = out.events_of(child);
    let exit = events.iter().position(|e| e.event == "exit").expect("the child's exit");
    assert_eq!(exit, events.len() - 1, "events for pid {child} after its exit: {:#?}", &events[exit..]);
    assert!(events.iter().all(|e| e.comm != "sleep"), "{events:#?}");
}

/// A target that already holds as many fds as it may (the hard
/// RLIMIT_NOFILE): the /proc baseline takes them all in, nothing missed.
#[test]
fn a_target_with_its_fd_limit_open_is_taken_in_whole() {
    let ebpf = require_ebpf!();
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let n = (lim.rlim_max.min(1_000_000) - 64).to_string();
    let mut w = Workload::spawn(FDSTRESS, &["--fds", &n]);
    w.send("go");
    assert_eq!(w.stdout.wait_for("opened", T, |l| l.starts_with("opened")), "opened (0 failed)");
    let pid = w.pid.to_string();
    let started = std::time::Instant::now();
    let out = Trace::start(&ebpf, &["-p", &pid, "--format", "json", "-d", "1", "--min-age", "0"]).wait(T);
    let report = out.final_report();
    let open: usize = report.groups.iter().map(|g| g.open).sum();
    assert_eq!(open, n.parse::<usize>().unwrap(), "sockets in the report");
    eprintln!("{n} fds: attached and reported in {:.1} s", started.elapsed().as_secs_f64());
    w.send("exit");
}
