//! Socket insight: a C and a Rust client whose server hangs up and which
//! never close their side. Every such socket sits in CLOSE_WAIT; the report
//! must flag them (the strongest leak evidence) under the function that
//! opened them, and the event stream must show each transition.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace_tests::{
    fixtures,
    harness::{trace_until_done, Ebpf, Server, Workload},
    require_ebpf,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");
const HALFCLOSE: &str = env!("CARGO_BIN_EXE_halfclose");
const N: u64 = 4;

/// Runs `client` under fdtrace with `extra` flags until it is done, then
/// stops fdtrace: returns its JSON lines.
fn trace(ebpf: &Ebpf, client: &str, args: &[&str], extra: &[&str]) -> (u32, Vec<Value>) {
    let mut w = Workload::spawn(client, args);
    let mut flags = vec!["--format", "json", "-i", "3600", "--min-age", "0.5"];
    flags.extend(extra);
    let out = trace_until_done(ebpf, &mut w, &flags, T);
    w.send("exit");
    (w.pid, out.json())
}

fn assert_close_wait_flagged(ebpf: &Ebpf, client: &str, args: &[&str], opener: &str, server: &Server) {
    let (_, lines) = trace(ebpf, client, args, &[]);
    let report = lines.iter().rfind(|v| v["type"] == "report").expect("report");
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report:#}");
    let g = &groups[0];
    let funcs: Vec<&str> =
        g["stack"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str()).collect();
    assert!(funcs.iter().any(|f| f.contains(opener)), "stack lacks {opener}: {funcs:?}");
    assert_eq!(g["open"], N);
    let peer = &g["peers"][0];
    assert_eq!(
        (&peer["remote"], &peer["state"], &peer["count"]),
        (&server.addr.as_str().into(), &"CLOSE_WAIT".into(), &N.into()),
        "{g:#}"
    );
    // sock_diag says how long they have been silent.
    assert!(peer["idle_s"].as_f64().is_some_and(|s| s >= 0.4), "no idle time: {peer}");
    assert!(g["fds"].as_array().unwrap().iter().all(|f| f["state"] == "CLOSE_WAIT"));
}

#[test]
fn rust_half_closed_sockets_are_flagged_close_wait() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve", "--hangup"]);
    let n = N.to_string();
    assert_close_wait_flagged(
        &ebpf,
        HALFCLOSE,
        &["--connect", &server.addr, "--count", &n],
        "subscribe_updates",
        &server,
    );
}

#[test]
fn c_half_closed_sockets_are_flagged_close_wait() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve", "--hangup"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let bin = fixtures::c_halfclose();
    let n = N.to_string();
    assert_close_wait_flagged(&ebpf, bin.to_str().unwrap(), &[host, port, &n], "watch_feed", &server);
}

#[test]
fn the_event_stream_shows_each_socket_reach_close_wait() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve", "--hangup"]);
    let n = N.to_string();
    let (pid, lines) = trace(&ebpf, HALFCLOSE, &["--connect", &server.addr, "--count", &n], &["--events"]);
    let states: Vec<&Value> = lines
        .iter()
        .filter(|e| e["event"] == "tcp_state" && e["pid"] == pid && e["state"] == "CLOSE_WAIT")
        .collect();
    assert_eq!(states.len() as u64, N, "CLOSE_WAIT transitions: {states:#?}");
    for e in states {
        assert_eq!(e["remote"], server.addr.as_str());
        assert_eq!(e["comm"], "halfclose", "state changes carry the owner's name: {e}");
    }
}
