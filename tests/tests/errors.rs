//! Every bad input gets a clear message with its remedy and a non-zero
//! exit; stopping is clean (nothing stays attached).
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    process::Command,
    time::{Duration, Instant},
};

use fdtrace_tests::{
    harness::{
        bpf_exists, bpf_objects_of, fdtrace_bin, run_fdtrace, run_fdtrace_refused, Ebpf, Finished, Trace,
        Workload,
    },
    require_ebpf,
};

const SCRIPTED: &str = env!("CARGO_BIN_EXE_scripted");
const T: Duration = Duration::from_secs(30);

fn assert_fails_with(out: &Finished, needles: &[&str]) {
    assert!(!out.status.success(), "fdtrace succeeded; stderr:\n{}", out.stderr_text());
    let err = out.stderr_text();
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn no_pid_says_how_to_give_one() {
    let out = run_fdtrace_refused(&["--events"], T);
    assert_fails_with(&out, &["no process given", "-p PID"]);
}

#[test]
fn a_pid_that_does_not_exist_is_named() {
    // Pids above pid_max cannot exist.
    let out = run_fdtrace_refused(&["-p", "99999999"], T);
    assert_fails_with(&out, &["no process with pid 99999999", "ps -p"]);
}

#[test]
fn bad_option_values_are_rejected_by_the_parser() {
    let out = run_fdtrace_refused(&["-p", "1", "--ringbuf-size", "3M"], T);
    assert_fails_with(&out, &["power of two"]);
    let out = run_fdtrace_refused(&["-p", "1", "-d", "soon"], T);
    assert_fails_with(&out, &["not a number of seconds"]);
}

#[test]
fn without_privileges_it_says_to_use_sudo() {
    let ebpf = require_ebpf!();
    let w = Workload::spawn(SCRIPTED, &[]);
    let out = Trace::spawn_cmd(
        &ebpf,
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(fdtrace_bin(&ebpf))
            .args(["-p", &w.pid.to_string()]),
    )
    .wait(T);
    assert_fails_with(&out, &["needs root", "CAP_BPF", "sudo"]);
}

#[test]
fn a_thread_id_traces_its_process() {
    let ebpf = require_ebpf!();
    // The leaky example runs a server thread.
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_leaky")).stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let tid = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .ok()?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|&t| t != pid)
        })
        .expect("leaky has a second thread");
    let out = run_fdtrace(&ebpf, &["-p", &tid.to_string(), "-d", "1"], T);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.status.success(), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(err.contains(&format!("{tid} is a thread of process {pid}")), "{err}");
    assert!(err.contains(&format!("tracing {pid} (leaky)")), "{err}");
}

#[test]
fn a_kernel_without_btf_is_explained() {
    let ebpf = require_ebpf!();
    let w = Workload::spawn(SCRIPTED, &[]);
    let out = Trace::spawn_cmd(
        &ebpf,
        Command::new(fdtrace_bin(&ebpf))
            .env("FDTRACE_BTF", "/nonexistent/vmlinux")
            .args(["-p", &w.pid.to_string()]),
    )
    .wait(T);
    assert_fails_with(&out, &["no BTF", "CONFIG_DEBUG_INFO_BTF"]);
}

/// Runs `script` (sh) in a private mount namespace where tracefs is not
/// mounted; `$FDTRACE` and `$PID` are set. debugfs goes too: where it is
/// mounted, its `tracing` directory mounts tracefs again when looked at.
fn without_tracefs(ebpf: &Ebpf, script: &str) -> Finished {
    let w = Workload::spawn(SCRIPTED, &[]);
    let full = format!(
        "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; \
         umount /sys/kernel/debug 2>/dev/null; \
         for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do \
           test -d $d/events && {{ echo \"could not unmount tracefs at $d\" >&2; exit 99; }}; \
         done; {script}"
    );
    let out = Trace::spawn_cmd(
        ebpf,
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &full])
            .env("FDTRACE", fdtrace_bin(ebpf))
            .env("PID", w.pid.to_string()),
    )
    .wait(T);
    assert_ne!(out.status.code(), Some(99), "{}", out.stderr_text());
    out
}

#[test]
fn an_unmounted_tracefs_is_mounted() {
    let ebpf = require_ebpf!();
    let out = without_tracefs(&ebpf, "\"$FDTRACE\" -p \"$PID\" -d 0.5");
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("tracefs was not mounted; mounted it"), "{}", out.stderr_text());
}

#[test]
fn an_unmountable_tracefs_says_how_to_mount_it() {
    let ebpf = require_ebpf!();
    // CAP_BPF and CAP_PERFMON are enough to trace, not to mount.
    let out = without_tracefs(&ebpf, "setpriv --bounding-set=-sys_admin \"$FDTRACE\" -p \"$PID\" -d 0.5");
    assert_fails_with(&out, &["tracefs is not mounted", "mount -t tracefs tracefs /sys/kernel/tracing"]);
}

/// Probes created through tracefs (none expected: aya attaches kprobes and
/// uprobes through perf_event_open), for a before/after comparison.
fn tracefs_probes() -> (String, String) {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/kernel/tracing/{f}")).unwrap_or_default();
    (read("kprobe_events"), read("uprobe_events"))
}

/// Starts fdtrace with `extra` arguments on a workload, stops it with
/// `how`, and checks its programs, links and probes are gone.
fn stops_cleanly_with(
    ebpf: &Ebpf,
    extra: &[&str],
    how: impl FnOnce(&Trace, &mut Workload),
    expect_success: bool,
) {
    let probes = tracefs_probes();
    let mut w = Workload::spawn(SCRIPTED, &[]);
    let pid = w.pid.to_string();
    let mut args = vec!["-p", &pid];
    args.extend(extra);
    let trace = Trace::start(ebpf, &args);
    let (progs, links) = bpf_objects_of(trace.pid());
    assert!(!progs.is_empty() && !links.is_empty(), "fdtrace holds no BPF programs/links?");
    how(&trace, &mut w);
    let out = trace.wait(T);
    assert_eq!(out.status.success(), expect_success, "{}", out.stderr_text());
    // fdtrace hands the kernel's slow part of detaching to a child
    // ("fdtrace-detach") and exits: the objects go within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = || -> Vec<String> {
        let progs = progs.iter().filter(|&&id| bpf_exists("prog", id)).map(|id| format!("program {id}"));
        progs
            .chain(links.iter().filter(|&&id| bpf_exists("link", id)).map(|id| format!("link {id}")))
            .collect()
    };
    let mut still = left();
    while !still.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        still = left();
    }
    assert!(still.is_empty(), "30 s after fdtrace stopped, still there: {still:?}");
    assert_eq!(tracefs_probes(), probes, "tracefs kprobe/uprobe events changed");
}

fn stops_cleanly(ebpf: &Ebpf, how: impl FnOnce(&Trace), expect_success: bool) {
    stops_cleanly_with(ebpf, &[], |t, _| how(t), expect_success);
}

#[test]
fn the_duration_end_and_the_target_exit_detach_everything() {
    let ebpf = require_ebpf!();
    stops_cleanly_with(&ebpf, &["-d", "1"], |_, _| {}, true);
    stops_cleanly_with(
        &ebpf,
        &[],
        |_, w| {
            w.send("go");
            w.steps_until_done(T);
            w.send("exit");
        },
        true,
    );
}

#[test]
fn sigint_and_sigterm_detach_everything() {
    let ebpf = require_ebpf!();
    stops_cleanly(&ebpf, |t| t.signal(libc::SIGINT), true);
    stops_cleanly(&ebpf, |t| t.signal(libc::SIGTERM), true);
}

#[test]
fn even_sigkill_leaves_nothing_attached() {
    let ebpf = require_ebpf!();
    stops_cleanly(&ebpf, |t| t.signal(libc::SIGKILL), false);
}
