//! The live event stream on the running kernel: a workload performs a
//! scripted sequence of fd operations and reports what each returned;
//! fdtrace's `--events --format json` must show exactly those, in order.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace_tests::{
    harness::{Ebpf, Trace, Workload},
    require_ebpf,
};
use serde_json::Value;

const SCRIPTED: &str = env!("CARGO_BIN_EXE_scripted");
const T: Duration = Duration::from_secs(30);

/// What fdtrace should report for the workload's steps, as (event, fields
/// that must match) in order.
fn expected(steps: &[Value], pid: u32) -> Vec<(String, Value)> {
    let mut out = vec![];
    let fd = |s: &Value| s["fd"].clone();
    let mut listener_local = Value::Null;
    for s in steps {
        let op = s["op"].as_str().unwrap();
        match op {
            "socket" => out.push(("socket".into(), serde_json::json!({"fd": fd(s), "kind": "socket", "proto": "tcp"}))),
            "bind" => {
                listener_local = s["addr"].clone();
                out.push(("bind".into(), serde_json::json!({"fd": fd(s), "local": s["addr"], "ret": 0})));
            }
            "listen" => out.push(("listen".into(), serde_json::json!({"fd": fd(s), "ret": 0}))),
            "connect" => out.push(("connect".into(), serde_json::json!({"fd": fd(s), "remote": s["addr"], "ret": 0}))),
            "accept4" => out.push((
                "accept4".into(),
                serde_json::json!({"fd": fd(s), "src_fd": s["src"], "kind": "socket", "remote": s["addr"], "local": listener_local}),
            )),
            "openat" => out.push(("openat".into(), serde_json::json!({"fd": fd(s), "kind": "file", "path": s["path"]}))),
            "dup2" => {
                // dup2 over an open fd: the old one is closed first.
                out.push(("close".into(), serde_json::json!({"fd": fd(s), "cause": "replaced", "kind": "file"})));
                out.push(("dup2".into(), serde_json::json!({"fd": fd(s), "src_fd": s["src"], "kind": "socket"})));
            }
            // Both ends, one install each (see `normalize`).
            "pipe2" => {
                out.push(("pipe2".into(), serde_json::json!({"fd": fd(s), "kind": "pipe"})));
                out.push(("pipe2".into(), serde_json::json!({"fd": s["fd2"], "kind": "pipe"})));
            }
            "close_range" => {
                let (first, last) = (s["range"][0].as_i64().unwrap(), s["range"][1].as_i64().unwrap());
                for f in first..=last {
                    out.push(("close".into(), serde_json::json!({"fd": f, "kind": "pipe"})));
                }
            }
            "fork" => out.push(("fork".into(), serde_json::json!({"child": s["child"]}))),
            "close" => out.push(("close".into(), serde_json::json!({"fd": fd(s), "cause": "close", "kind": "socket"}))),
            other => panic!("unknown step {other}"),
        }
    }
    out.push(("exit".into(), serde_json::json!({"pid": pid, "exit_code": 0})));
    out
}

/// What every tier reports alike: the tracepoint tier reports a pipe in one
/// event with both fds and close_range as a summary plus one close per fd;
/// the function tiers see each install and each per-fd removal. Socket
/// state events (tcp_connect/tcp_close, function tiers) say nothing about
/// the fd table.
fn normalize(events: Vec<Value>) -> Vec<Value> {
    let mut out = vec![];
    for mut e in events {
        match e["event"].as_str().unwrap_or_default() {
            "tcp_connect" | "tcp_close" | "tcp_state" | "close_range" => continue,
            _ => {}
        }
        if e["cause"] == "close_range" {
            e["cause"] = "close".into();
        }
        if let Some(fd2) = e.get("fd2").cloned().filter(|v| !v.is_null()) {
            let mut second = e.clone();
            e.as_object_mut().unwrap().remove("fd2");
            second.as_object_mut().unwrap().remove("fd2");
            second["fd"] = fd2;
            out.push(e);
            out.push(second);
        } else {
            out.push(e);
        }
    }
    out
}

fn assert_matches(events: &[Value], want: &[(String, Value)]) {
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or("?")).collect();
    let want_names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, want_names, "event sequence differs; fdtrace reported:\n{events:#?}");
    for (i, (ev, (name, fields))) in events.iter().zip(want).enumerate() {
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(&ev[k], v, "event #{i} ({name}): field {k}; the event was {ev}");
        }
    }
}

/// Runs the scripted workload under fdtrace with `extra` flags.
fn trace_scripted(
    ebpf: &Ebpf,
    workload_args: &[&str],
    extra: &[&str],
) -> (u32, Vec<Value>, fdtrace_tests::harness::Finished) {
    let mut w = Workload::spawn(SCRIPTED, workload_args);
    let pid = w.pid.to_string();
    let mut args = vec!["-p", &pid, "--events", "--format", "json"];
    args.extend(extra);
    let trace = Trace::start(ebpf, &args);
    w.send("go");
    let steps = w.json_until_done(T);
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
    let sockets: Vec<&Value> = events.iter().filter(|e| e["event"] == "socket").collect();
    assert_eq!((sockets[0]["cloexec"].as_bool(), sockets[1]["cloexec"].as_bool()), (Some(false), Some(true)));
    // Every fd-creating event carries a user stack.
    for e in events.iter().filter(|e| {
        e["ret"].as_i64().is_some_and(|r| r >= 0) && e.get("kind").is_some() && e["event"] != "close"
    }) {
        if ["socket", "accept4", "openat", "dup2", "pipe2"].contains(&e["event"].as_str().unwrap()) {
            assert!(e["stack_id"].is_u64(), "no stack on {e}");
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
    let child = steps.iter().find(|s| s["op"] == "fork").unwrap()["child"].as_u64().unwrap() as u32;
    let parent_events = out.events_of(pid);
    let fork = parent_events.iter().find(|e| e["event"] == "fork").expect("fork event");
    assert_eq!(fork["child"], child);
    let child_events: Vec<String> =
        normalize(out.events_of(child)).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(child_events, ["openat", "close", "exit"], "child events: {:#?}", out.events_of(child));
    // The child inherited the parent's table: at its exit, what the parent
    // had open then was open in the child too (listener, client, accepted
    // socket dup'd twice, stdio).
    let exit = out.events_of(child).into_iter().find(|e| e["event"] == "exit").unwrap();
    assert!(exit["open_at_exit"].as_u64().unwrap() >= 6, "child exit: {exit}");
}

#[test]
fn text_events_show_socket_connect_and_close_within_a_second() {
    let ebpf = require_ebpf!();
    let mut w = Workload::spawn(SCRIPTED, &[]);
    let pid = w.pid.to_string();
    let mut trace = Trace::start(&ebpf, &["-p", &pid, "--events"]);
    let sent = std::time::Instant::now();
    w.send("go");
    let steps = w.json_until_done(T);
    let port = steps.iter().find(|s| s["op"] == "connect").unwrap()["addr"].as_str().unwrap().to_string();
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
