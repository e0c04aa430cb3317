//! The live event stream on the running kernel: a workload performs a
//! scripted sequence of fd operations and reports what each returned;
//! fdtrace's `--events --format json` must show exactly those, in order.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace::{events::FdKind, ledger::CloseCause};
use fdtrace_tests::{
    harness::{compact, Ebpf, EventLine, Trace, Workload},
    require_ebpf,
    workload::{Op, Step},
};

const SCRIPTED: &str = env!("CARGO_BIN_EXE_scripted");
const T: Duration = Duration::from_secs(30);

/// An event fdtrace should report: its name and the fields that must
/// match (`None`: not checked).
#[derive(Debug, Default)]
struct Want {
    event: &'static str,
    pid: Option<u32>,
    fd: Option<i32>,
    kind: Option<FdKind>,
    proto: Option<String>,
    local: Option<String>,
    remote: Option<String>,
    path: Option<String>,
    src_fd: Option<i32>,
    ret: Option<i64>,
    cause: Option<CloseCause>,
    child: Option<u32>,
    exit_code: Option<u32>,
}

/// What fdtrace should report for the workload's steps, in order.
fn expected(steps: &[Step], pid: u32) -> Vec<Want> {
    let mut out = vec![];
    let fd = |s: &Step| Some(s.fd.unwrap_or_else(|| panic!("step without its fd: {s:?}")));
    let addr = |s: &Step| Some(s.addr.clone().unwrap_or_else(|| panic!("step without its address: {s:?}")));
    let mut listener_local = None;
    for s in steps {
        match s.op {
            Op::Socket => out.push(Want {
                event: "socket",
                fd: fd(s),
                kind: Some(FdKind::Socket),
                proto: Some("tcp".into()),
                ..Want::default()
            }),
            Op::Bind => {
                listener_local = addr(s);
                out.push(Want { event: "bind", fd: fd(s), local: addr(s), ret: Some(0), ..Want::default() });
            }
            Op::Listen => out.push(Want { event: "listen", fd: fd(s), ret: Some(0), ..Want::default() }),
            Op::Connect => out.push(Want {
                event: "connect",
                fd: fd(s),
                remote: addr(s),
                ret: Some(0),
                ..Want::default()
            }),
            Op::Accept4 => out.push(Want {
                event: "accept4",
                fd: fd(s),
                src_fd: Some(s.src.expect("accept4's listener")),
                kind: Some(FdKind::Socket),
                remote: addr(s),
                local: Some(listener_local.clone().expect("the listener is bound before accept4")),
                ..Want::default()
            }),
            Op::Openat => out.push(Want {
                event: "openat",
                fd: fd(s),
                kind: Some(FdKind::File),
                path: Some(s.path.clone().expect("openat's path")),
                ..Want::default()
            }),
            Op::Dup2 => {
                // dup2 over an open fd: the old one is closed first.
                out.push(Want {
                    event: "close",
                    fd: fd(s),
                    cause: Some(CloseCause::Replaced),
                    kind: Some(FdKind::File),
                    ..Want::default()
                });
                out.push(Want {
                    event: "dup2",
                    fd: fd(s),
                    src_fd: Some(s.src.expect("dup2's source")),
                    kind: Some(FdKind::Socket),
                    ..Want::default()
                });
            }
            // Both ends, one install each (see `normalize`).
            Op::Pipe2 => {
                out.push(Want { event: "pipe2", fd: fd(s), kind: Some(FdKind::Pipe), ..Want::default() });
                out.push(Want {
                    event: "pipe2",
                    fd: Some(s.fd2.expect("pipe2's second fd")),
                    kind: Some(FdKind::Pipe),
                    ..Want::default()
                });
            }
            Op::CloseRange => {
                let (first, last) = s.range.expect("close_range's range");
                for f in first..=last {
                    out.push(Want {
                        event: "close",
                        fd: Some(f),
                        kind: Some(FdKind::Pipe),
                        ..Want::default()
                    });
                }
            }
            Op::Fork => out.push(Want {
                event: "fork",
                child: Some(u32::try_from(s.child.expect("fork's child")).unwrap()),
                ..Want::default()
            }),
            Op::Close => out.push(Want {
                event: "close",
                fd: fd(s),
                cause: Some(CloseCause::Close),
                kind: Some(FdKind::Socket),
                ..Want::default()
            }),
        }
    }
    out.push(Want { event: "exit", pid: Some(pid), exit_code: Some(0), ..Want::default() });
    out
}

/// What every tier reports alike: the tracepoint tier reports a pipe in one
/// event with both fds and close_range as a summary plus one close per fd;
/// the function tiers see each install and each per-fd removal. Socket
/// state events (tcp_connect/tcp_close, function tiers) say nothing about
/// the fd table.
fn normalize(events: Vec<EventLine>) -> Vec<EventLine> {
    let mut out = vec![];
    for mut e in events {
        match e.event.as_str() {
            "tcp_connect" | "tcp_close" | "tcp_state" | "close_range" => continue,
            _ => {}
        }
        if e.cause == Some(CloseCause::CloseRange) {
            e.cause = Some(CloseCause::Close);
        }
        if let Some(fd2) = e.fd2.take() {
            let second = EventLine { fd: Some(fd2), ..e.clone() };
            out.push(e);
            out.push(second);
        } else {
            out.push(e);
        }
    }
    out
}

fn assert_matches(events: &[EventLine], want: &[Want]) {
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|w| w.event).collect();
    assert_eq!(names, want_names, "event sequence differs; fdtrace reported:\n{events:#?}");
    for (i, (ev, w)) in events.iter().zip(want).enumerate() {
        let at = |key: &str| format!("event #{i} ({}): field {key}; the event was {}", w.event, compact(ev));
        same(Some(ev.pid), w.pid, || at("pid"));
        same(ev.fd, w.fd, || at("fd"));
        same(ev.kind, w.kind, || at("kind"));
        same(ev.proto.as_ref(), w.proto.as_ref(), || at("proto"));
        same(ev.local.as_ref(), w.local.as_ref(), || at("local"));
        same(ev.remote.as_ref(), w.remote.as_ref(), || at("remote"));
        same(ev.path.as_ref(), w.path.as_ref(), || at("path"));
        same(ev.src_fd, w.src_fd, || at("src_fd"));
        same(ev.ret, w.ret, || at("ret"));
        same(ev.cause, w.cause, || at("cause"));
        same(ev.child, w.child, || at("child"));
        same(ev.exit_code, w.exit_code, || at("exit_code"));
    }
}

/// `got` is `want`, when there is one to check.
fn same<T: PartialEq + std::fmt::Debug>(got: Option<T>, want: Option<T>, at: impl Fn() -> String) {
    if let Some(want) = want {
        assert_eq!(got, Some(want), "{}", at());
    }
}

/// Runs the scripted workload under fdtrace with `extra` flags.
fn trace_scripted(
    ebpf: &Ebpf,
    workload_args: &[&str],
    extra: &[&str],
) -> (u32, Vec<Step>, fdtrace_tests::harness::Finished) {
    let mut w = Workload::spawn(SCRIPTED, workload_args);
    let pid = w.pid.to_string();
    let mut args = vec!["-p", &pid, "--events", "--format", "json"];
    args.extend(extra);
    let trace = Trace::start(ebpf, &args);
    w.send("go");
    let steps = w.steps_until_done(T);
    w.send("exit");
    assert!(w.wait().success());
    let out = trace.wait(T);
    assert!(out.status.success(), "fdtrace failed: {}", out.stderr_text());
    // Tracepoints may be missing on a kernel (skipped with a warning); one
    // that exists must attach.
    let stderr = out.stderr_text();
    let refused: Vec<&str> =
        stderr.lines().filter(|l| l.contains("attach failed") || l.contains("refused")).collect();
    assert!(refused.is_empty(), "hooks this kernel has were not attached: {refused:#?}");
    (w.pid, steps, out)
}

#[test]
fn scripted_sequence_is_reported_exactly_in_order() {
    let ebpf = require_ebpf!();
    let (pid, steps, out) = trace_scripted(&ebpf, &[], &[]);
    let events = normalize(out.events_of(pid));
    assert_matches(&events, &expected(&steps, pid));
    // SOCK_CLOEXEC on the client socket and not on the listener.
    let sockets: Vec<&EventLine> = events.iter().filter(|e| e.event == "socket").collect();
    assert_eq!((sockets[0].cloexec, sockets[1].cloexec), (Some(false), Some(true)));
    // Every fd-creating event carries a user stack.
    for e in events.iter().filter(|e| e.ret.is_some_and(|r| r >= 0) && e.kind.is_some() && e.event != "close")
    {
        if ["socket", "accept4", "openat", "dup2", "pipe2"].contains(&e.event.as_str()) {
            assert!(e.stack_id.is_some(), "no stack on {}", compact(e));
        }
    }
    let stderr = out.stderr_text();
    assert!(
        stderr.contains(&format!("process {pid} exited")),
        "fdtrace did not say the target exited:\n{stderr}"
    );
    assert!(stderr.contains(" 0 lost"), "events were lost:\n{stderr}");
}

#[test]
fn followed_children_are_traced_from_their_fork() {
    let ebpf = require_ebpf!();
    let (pid, steps, out) = trace_scripted(&ebpf, &["--child-opens"], &["--follow-forks"]);
    let child = u32::try_from(steps.iter().find(|s| s.op == Op::Fork).unwrap().child.unwrap()).unwrap();
    let parent_events = out.events_of(pid);
    let fork = parent_events.iter().find(|e| e.event == "fork").expect("fork event");
    assert_eq!(fork.child, Some(child));
    let child_events: Vec<String> = normalize(out.events_of(child)).into_iter().map(|e| e.event).collect();
    assert_eq!(child_events, ["openat", "close", "exit"], "child events: {:#?}", out.events_of(child));
    // The child inherited the parent's table: at its exit, what the parent
    // had open then was open in the child too (listener, client, accepted
    // socket dup'd twice, stdio).
    let exit = out.events_of(child).into_iter().find(|e| e.event == "exit").unwrap();
    assert!(exit.open_at_exit.unwrap() >= 6, "child exit: {}", compact(&exit));
}

#[test]
fn text_events_show_socket_connect_and_close_within_a_second() {
    let ebpf = require_ebpf!();
    let mut w = Workload::spawn(SCRIPTED, &[]);
    let pid = w.pid.to_string();
    let mut trace = Trace::start(&ebpf, &["-p", &pid, "--events"]);
    let sent = std::time::Instant::now();
    w.send("go");
    let steps = w.steps_until_done(T);
    let port = steps.iter().find(|s| s.op == Op::Connect).unwrap().addr.clone().unwrap();
    // The workload is still running: these lines must arrive live.
    let connect = trace.stdout.wait_for("with connect", Duration::from_secs(5), |l| l.contains(" connect "));
    let close = trace.stdout.wait_for("with the client's close", Duration::from_secs(5), |l| {
        l.contains(" close ")
            && l.contains(" socket ")
            && l.contains(&format!("-> {port}"))
            && !l.contains("replaced")
    });
    let latency = sent.elapsed();
    assert!(connect.contains(&format!("-> {port}")), "connect line lacks the peer {port}: {connect}");
    assert!(close.contains(&port), "close line lacks the peer: {close}");
    assert!(
        trace.stdout.seen.iter().any(|l| l.contains(" socket ") && l.contains("tcp")),
        "{:?}",
        trace.stdout.seen
    );
    assert!(latency < Duration::from_secs(1), "events took {latency:?} to show");
    assert!(trace.stdout.seen[0].starts_with("TIME"), "no header: {:?}", trace.stdout.seen[0]);
    w.send("exit");
    w.wait();
    assert!(trace.wait(T).status.success());
}
