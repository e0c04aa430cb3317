//! Leak finding on real programs: a Rust and a C client each leak
//! connections from one call site and close them from another (Go's are in
//! `go.rs`). fdtrace's final report must put the leaked sockets in one
//! group whose stack names the leaking code, with the server as peer; the
//! fixed variant of each must report no unclosed sockets.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::time::Duration;

use fdtrace::{
    events::{FdKind, TcpState},
    report::Report,
};
use fdtrace_tests::{
    fixtures,
    harness::{functions, pretty, Ebpf, Server, Trace, Workload},
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");

/// Traces `client` from its go signal for `secs` and returns the final
/// report.
fn final_report(ebpf: &Ebpf, client: &mut Workload, secs: &str) -> Report {
    let pid = client.pid.to_string();
    let trace = Trace::start(ebpf, &["-p", &pid, "--format", "json", "-i", "100", "-d", secs]);
    client.send("go");
    trace.wait(T).final_report()
}

/// The single group holding the leak: `n` open, opened `n`, none closed,
/// every fd connected to `peer`, and its stack names `leaker`.
fn assert_one_leak(report: &Report, n: usize, peer: &str, leaker: &str, not: &str) {
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "expected one group:\n{}", pretty(report));
    let g = &groups[0];
    let funcs = functions(&g.stack);
    assert!(funcs.iter().any(|f| f.contains(leaker)), "stack lacks {leaker}: {funcs:#?}");
    assert!(!funcs.iter().any(|f| f.contains(not)), "stack has {not}: {funcs:#?}");
    assert_eq!((g.open, g.opened, g.closed), (n, n as u64, 0), "{}", pretty(g));
    assert_eq!(g.peers[0].remote, peer, "{}", pretty(g));
    assert_eq!(g.peers[0].count, n);
    assert_eq!(g.peers[0].state, Some(TcpState::Established));
    for fd in &g.fds {
        assert_eq!(fd.remote.as_deref(), Some(peer));
        assert_eq!(fd.kind, FdKind::Socket);
    }
}

fn assert_no_leak(report: &Report) {
    assert_eq!(report.unclosed, 0, "the fixed program reported unclosed sockets:\n{}", pretty(report));
    assert!(report.groups.is_empty());
}

/// Builds the C and Go programs (also how `cargo xtask vm-test` prebuilds
/// them for VMs, which have no compilers).
#[test]
fn fixtures_build() {
    assert!(
        fixtures::c_leaky().exists() && fixtures::c_halfclose().exists() && fixtures::c_udpleak().exists()
    );
    for go in ["httpclient", "httpserver", "sessionserver", "httpclient-stripped", "shortleak"] {
        assert!(fixtures::go(go).exists(), "{go} not built");
    }
    for go in ["httpclient", "httpclient-stripped"] {
        assert!(fixtures::go_current(go).exists(), "{go} by the current Go not built");
    }
}

#[test]
fn rust_leak_is_attributed_to_fetch_inventory() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let args = ["--connect", &server.addr, "--wait", "--interval-ms", "100", "--requests", "12"];
    let report = final_report(&ebpf, &mut Workload::spawn(LEAKY, &args), "3.5");
    assert_one_leak(&report, 6, &server.addr, "fetch_inventory", "fetch_price");

    let mut fixed_args = args.to_vec();
    fixed_args.push("--fixed");
    assert_no_leak(&final_report(&ebpf, &mut Workload::spawn(LEAKY, &fixed_args), "3.5"));
}

#[test]
fn c_leak_is_attributed_to_open_session() {
    let ebpf = require_ebpf!();
    let server = Server::start(LEAKY, &["--serve"]);
    let (host, port) = server.addr.split_once(':').unwrap();
    let bin = fixtures::c_leaky();
    let bin = bin.to_str().unwrap();
    let report = final_report(&ebpf, &mut Workload::spawn(bin, &[host, port, "12", "100"]), "3.5");
    assert_one_leak(&report, 6, &server.addr, "open_session", "ping_server");
    // The caller of libc's socket() is recovered: `dial` (inlined or not)
    // sits between the wrapper and open_session.
    let funcs = functions(&report.groups[0].stack);
    let dial = funcs.iter().position(|&f| f == "dial");
    let session = funcs.iter().position(|&f| f == "open_session");
    assert!(dial.is_some() && dial < session, "dial not found before open_session: {funcs:#?}");

    assert_no_leak(&final_report(
        &ebpf,
        &mut Workload::spawn(bin, &[host, port, "12", "100", "--fixed"]),
        "3.5",
    ));
}
