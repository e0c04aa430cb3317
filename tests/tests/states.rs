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

use fdtrace::events::TcpState;
use fdtrace_tests::{
    fixtures,
    harness::{compact, pretty, trace_until_done, Ebpf, EventLine, Finished, Server, Workload},
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");
const HALFCLOSE: &str = env!("CARGO_BIN_EXE_halfclose");
const N: usize = 4;

/// Runs `client` under fdtrace with `extra` flags until it is done, then
/// stops fdtrace: returns what it printed.
fn trace(ebpf: &Ebpf, client: &str, args: &[&str], extra: &[&str]) -> (u32, Finished) {
    let mut w = Workload::spawn(client, args);
    let mut flags = vec!["--format", "json", "-i", "3600", "--min-age", "0.5"];
    flags.extend(extra);
    let out = trace_until_done(ebpf, &mut w, &flags, Duration::from_millis(800), T);
    w.send("exit");
    (w.pid, out)
}

fn assert_close_wait_flagged(ebpf: &Ebpf, client: &str, args: &[&str], opener: &str, server: &Server) {
    let (_, out) = trace(ebpf, client, args, &[]);
    let report = out.reports().pop().expect("report");
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{}", pretty(&report));
    let g = &groups[0];
    let funcs: Vec<&str> = g.stack.iter().filter_map(|f| f.function.as_deref()).collect();
    assert!(funcs.iter().any(|f| f.contains(opener)), "stack lacks {opener}: {funcs:?}");
    assert_eq!(g.open, N);
    let peer = &g.peers[0];
    assert_eq!(
        (peer.remote.as_str(), peer.state, peer.count),
        (server.addr.as_str(), Some(TcpState::CloseWait), N),
        "{}",
        pretty(g)
    );
    // sock_diag says how long they have been silent.
    assert!(peer.idle_s.is_some_and(|s| s >= 0.4), "no idle time: {}", compact(peer));
    assert!(g.fds.iter().all(|f| f.state == Some(TcpState::CloseWait)));
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
    let (pid, out) = trace(&ebpf, HALFCLOSE, &["--connect", &server.addr, "--count", &n], &["--events"]);
    let states: Vec<EventLine> = out
        .events_of(pid)
        .into_iter()
        .filter(|e| e.event == "tcp_state" && e.state == Some(TcpState::CloseWait))
        .collect();
    assert_eq!(states.len(), N, "CLOSE_WAIT transitions: {states:#?}");
    for e in states {
        assert_eq!(e.remote.as_deref(), Some(server.addr.as_str()));
        assert_eq!(e.comm, "halfclose", "state changes carry the owner's name: {}", compact(&e));
    }
}
