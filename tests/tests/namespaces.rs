//! A target in a container: its own pid and mount namespaces, its binary
//! only inside its mount namespace. fdtrace traces it by its host pid,
//! names its stacks from that binary (which the host cannot see at its
//! path), and shows its pid in its own namespace beside the host pid.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{fs, path::Path, thread, time::Duration};

use fdtrace::{events::TcpState, report::Report};
use fdtrace_tests::{
    fixtures,
    harness::{pretty, Server, TempDir, Trace, Workload},
    require_ebpf, require_tool,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");

/// The process whose parent is `parent`, from the host's /proc.
fn only_child_of(parent: u32) -> u32 {
    let children: Vec<u32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines().any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(&parent.to_string()))
            })
        })
        .collect();
    assert_eq!(children.len(), 1, "unshare ({parent}) should have one child: {children:?}");
    children[0]
}

/// The C leak client in its own pid and mount namespaces (`unshare`), run
/// from a copy on a tmpfs mounted only in its mount namespace, as the
/// namespace's init. Traced by its host pid: the leak is attributed to
/// `open_session` by name, and the report carries its pid there (1), in
/// JSON and in the text report's header and exit line.
#[test]
fn container_process_is_symbolized_and_shows_its_namespace_pid() {
    let ebpf = require_ebpf!();
    let unshare = require_tool!("unshare");
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let tmp = TempDir::new("namespaces");
    let inside = tmp.join("only-inside");
    fs::create_dir(&inside).unwrap();
    let bin = inside.join("leaky-c");
    // unshare makes the new mount namespace's mounts private: the tmpfs,
    // and the copy on it, are not seen from here.
    let script = format!(
        "mount -t tmpfs none {dir} && cp {src} {bin} && exec {bin} {host} {port} 12 100",
        dir = inside.display(),
        src = fixtures::c_leaky().display(),
        bin = bin.display(),
    );
    let args = ["--pid", "--mount", "--fork", "--mount-proc", "--kill-child", "sh", "-c", &script];
    // (util-linux 2.38's unshare says "sigprocmask unblock failed" when
    // its child is killed at the end: harmless.)
    let mut client = Workload::spawn(&unshare, &args);
    // What the program said: its own pid, 1, as the namespace's init.
    let ns_pid = client.pid;
    assert_eq!(ns_pid, 1, "exec'd by sh as the namespace's first process");
    let pid = only_child_of(client.child_pid());
    assert!(!Path::new(&bin).exists(), "{} is seen outside its mount namespace", bin.display());

    let trace = Trace::start(&ebpf, &["-p", &pid.to_string(), "--format", "json", "-i", "100", "-d", "3.5"]);
    client.send("go");
    let report = trace.wait(T).final_report();
    assert_eq!((report.pid, report.ns_pid), (pid, Some(ns_pid)), "{}", pretty(&report));
    assert_eq!(report.targets.len(), 1);
    assert_eq!((report.targets[0].pid, report.targets[0].ns_pid), (pid, Some(ns_pid)));
    assert_one_leak_from_open_session(&report, &server.addr);

    // The text report, and the exit: the namespace's init killed takes the
    // namespace (and the tmpfs) with it.
    let trace = Trace::start(&ebpf, &["-p", &pid.to_string(), "--min-age", "0"]);
    thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory preconditions; `pid` is the traced client.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let text = out.stdout.join("\n");
    let named = format!("pid {pid} (leaky-c, pid {ns_pid} in its namespace)");
    assert!(text.contains(&format!("fdtrace report: {named} · ")), "no header naming {named}:\n{text}");
    assert!(
        text.contains(&format!("  {named} exited (signal 9) with ")),
        "no exit line for {named}:\n{text}"
    );
    assert!(
        out.stderr_text()
            .contains(&format!("fdtrace: tracing {pid} (leaky-c, pid {ns_pid} in its namespace)")),
        "{}",
        out.stderr_text()
    );
    client.wait();
}

/// One group: the 6 sockets `open_session` kept (of 12 requests, every
/// other one), to the server, its stack named from the program's own
/// symbols: `dial` inside `open_session`, no `ping_server`.
fn assert_one_leak_from_open_session(report: &Report, peer: &str) {
    assert_eq!(report.groups.len(), 1, "expected one group:\n{}", pretty(report));
    let g = &report.groups[0];
    let funcs: Vec<&str> = g.stack.iter().filter_map(|f| f.function.as_deref()).collect();
    let dial = funcs.iter().position(|f| *f == "dial");
    let session = funcs.iter().position(|f| *f == "open_session");
    assert!(session.is_some() && dial < session, "dial in open_session not in the stack: {}", pretty(g));
    assert!(!funcs.contains(&"ping_server"), "{}", pretty(g));
    // Named from the copy only the namespace sees, with its debug info.
    let frame = g.stack.iter().find(|f| f.function.as_deref() == Some("open_session")).unwrap();
    assert_eq!(frame.module.as_deref(), Some("leaky-c"), "{}", pretty(frame));
    assert!(frame.file.as_deref().is_some_and(|f| f.ends_with("leaky.c")) && frame.line.is_some());
    assert_eq!((g.open, g.opened, g.closed), (6, 6, 0), "{}", pretty(g));
    assert_eq!((g.peers[0].remote.as_str(), g.peers[0].state), (peer, Some(TcpState::Established)));
}
