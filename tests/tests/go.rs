//! Go programs. net/http dials in a goroutine of its own, so the stack at
//! `socket()` is net/http's; fdtrace follows the dial goroutine back to the
//! `go` statement that started it, whose stack names the program's code,
//! and recognizes net/http's two classic connection leaks.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{io::Write, net::TcpStream, process::Command, time::Duration};

use fdtrace::{
    events::TcpState,
    report::{Group, Report},
    symbolize::Frame,
};
use fdtrace_tests::{
    fixtures,
    harness::{functions, pretty, Ebpf, Server, Trace, Workload},
    require_ebpf,
};

const T: Duration = Duration::from_secs(60);
const N: usize = 10;

/// Runs the Go client against the Go server with `mode` flags for `N`
/// requests, 200 ms apart, traced from its first request for 4 s; returns
/// the final report, the client's ESTABLISHED sockets in `ss` after the
/// trace, and fdtrace's stderr.
fn trace_client(ebpf: &Ebpf, bin: &str, mode: &[&str], extra: &[&str]) -> (Report, usize, Vec<String>) {
    eprintln!("using {}", fixtures::go_version());
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let url = format!("http://{}/", server.addr);
    let n = N.to_string();
    let mut args = vec!["-url", url.as_str(), "-wait", "-interval", "200ms", "-requests", n.as_str()];
    args.extend(mode);
    let mut client = Workload::spawn(bin, &args);
    let pid = client.pid.to_string();
    let mut trace_args = vec!["-p", pid.as_str(), "--format", "json", "-i", "100", "-d", "4"];
    trace_args.extend(extra);
    let trace = Trace::start(ebpf, &trace_args);
    client.send("go");
    let out = trace.wait(T);
    let report = out.final_report();
    assert!(report.groups.iter().all(|g| g.peers[0].remote == server.addr));
    (report, established(client.pid), out.stderr)
}

fn finding_kinds(g: &Group) -> Vec<&str> {
    g.findings.iter().map(|f| f.kind.as_str()).collect()
}

/// ESTABLISHED sockets `ss` shows for `pid`: the ground truth.
fn established(pid: u32) -> usize {
    let ss = Command::new("ss").args(["-tanpH", "state", "established"]).output().expect("ss");
    String::from_utf8_lossy(&ss.stdout).lines().filter(|l| l.contains(&format!("pid={pid},"))).count()
}

/// The case that started fdtrace: a new http.Transport per request. The
/// report names the function that made the requests (`main.fetchStatus`,
/// with its file and line), the Transport-per-request pattern, and agrees
/// with `ss`.
#[test]
fn transport_per_request_is_traced_to_the_function_making_the_requests() {
    let ebpf = require_ebpf!();
    let client = fixtures::go("httpclient");
    assert_transport_per_request(&ebpf, &client);
}

/// Traces the client built at `client` making a request per Transport and
/// checks the report says all of it; returns the one group.
fn assert_transport_per_request(ebpf: &Ebpf, client: &std::path::Path) -> Group {
    let (report, ss, _) = trace_client(ebpf, client.to_str().unwrap(), &[], &[]);
    let what = client.display();
    // Go 1.19's runtime does not record parents: a note says what that means.
    let missing = report.notes.iter().filter(|n| !n.contains("does not record a goroutine's parent"));
    assert_eq!(missing.count(), 0, "{what}: nothing should be missing: {:?}", report.notes);
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{what}: expected one group:\n{}", pretty(&report));
    let g = &groups[0];
    assert_eq!((g.open, g.opened, g.closed), (N, N as u64, 0), "{}", pretty(g));
    assert_eq!((g.peers[0].count, g.peers[0].state), (N, Some(TcpState::Established)));
    assert_eq!(ss, N, "ss disagrees with the report");
    assert!(g.growth_per_s > 1.0, "{}", pretty(g));

    // Opened in net/http's dial goroutine...
    let opened = functions(&g.stack);
    assert!(opened.contains(&"net/http.(*Transport).dialConn"), "{what}: {opened:#?}");
    assert!(!opened.iter().any(|f| f.starts_with("main.")), "{opened:#?}");
    // ...started by main.fetchStatus, on the line that calls client.Get.
    let spawned = functions(&g.spawned_by);
    let fetch = spawned
        .iter()
        .position(|f| *f == "main.fetchStatus")
        .unwrap_or_else(|| panic!("{what}: {spawned:#?}\n{}", pretty(&report)));
    assert_eq!(spawned[fetch + 1], "main.main");
    // queueForDial up to Go 1.22, startDialConnForLocked from 1.23.
    assert!(
        spawned[0].starts_with("net/http.(*Transport)."),
        "the go statement's function comes first: {spawned:#?}"
    );
    let frame = &g.spawned_by[fetch];
    assert!(frame.file.as_deref().unwrap().ends_with("tests/go/httpclient/main.go"), "{frame:?}");
    let src = std::fs::read_to_string(fixtures::go_source("httpclient/main.go")).unwrap();
    let line = src.lines().nth(frame.line.unwrap() as usize - 1).unwrap();
    assert!(line.contains("client.Get(url)"), "line {frame:?} is {line:?}");

    assert_eq!(finding_kinds(g), ["http-transport-per-request"], "{what}");
    let transports: std::collections::HashSet<&str> =
        g.fds.iter().map(|f| f.http_transport.as_deref().unwrap()).collect();
    assert_eq!(transports.len(), N, "one Transport per socket");
    g.clone()
}

/// Functions, files and lines of a stack.
fn places(frames: &[Frame]) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
    frames.iter().map(|f| (f.function.clone(), f.file.clone(), f.line)).collect()
}

/// A production build (`-ldflags="-s -w"`: no symbols, no DWARF) gives the
/// report the unstripped build gives: the same opening stack and goroutine
/// origin (functions, files, lines), the same finding, the same peers (its server). Its
/// stacks are named from the Go line table, its uprobes found there, its
/// `runtime.g` offsets taken from fdtrace's table for its Go version.
fn stripped_is_reported_as_unstripped(ebpf: &Ebpf, plain: &std::path::Path, stripped: &std::path::Path) {
    let want = assert_transport_per_request(ebpf, plain);
    let got = assert_transport_per_request(ebpf, stripped);
    assert_eq!(places(&got.stack), places(&want.stack), "opening stack: stripped vs unstripped");
    assert_eq!(places(&got.spawned_by), places(&want.spawned_by), "goroutine origin: stripped vs unstripped");
    assert_eq!(got.findings, want.findings);
    // Each run has its own server (trace_client checks it is the peer).
    let peers = |g: &Group| g.peers.iter().map(|p| (p.count, p.state)).collect::<Vec<_>>();
    assert_eq!(peers(&got), peers(&want));
}

/// Debian's Go (1.19), stripped and not.
#[test]
fn a_stripped_go_1_19_binary_is_reported_as_the_unstripped_one() {
    let ebpf = require_ebpf!();
    stripped_is_reported_as_unstripped(
        &ebpf,
        &fixtures::go("httpclient"),
        &fixtures::go("httpclient-stripped"),
    );
}

/// The current Go (the last of tests/go/toolchains), stripped and not.
#[test]
fn a_stripped_current_go_binary_is_reported_as_the_unstripped_one() {
    let ebpf = require_ebpf!();
    let version = std::fs::read_to_string(fixtures::go_current("VERSION")).unwrap_or_default();
    eprintln!("current Go: {version}");
    stripped_is_reported_as_unstripped(
        &ebpf,
        &fixtures::go_current("httpclient"),
        &fixtures::go_current("httpclient-stripped"),
    );
}

/// The same in the text report: the program's function is the first frame
/// shown, and the finding says what to do.
#[test]
fn the_text_report_leads_with_the_callers_code() {
    let ebpf = require_ebpf!();
    let server = Server::start(fixtures::go("httpserver").to_str().unwrap(), &[]);
    let url = format!("http://{}/", server.addr);
    let client = fixtures::go("httpclient");
    let mut w = Workload::spawn(
        client.to_str().unwrap(),
        &["-url", &url, "-wait", "-interval", "100ms", "-requests", "6"],
    );
    let pid = w.pid.to_string();
    let trace = Trace::start(&ebpf, &["-p", &pid, "-d", "2", "--min-age", "0.2"]);
    w.send("go");
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let text = out.stdout.join("\n");
    let first_at = text.lines().find(|l| l.trim_start().starts_with("at ")).expect(&text);
    assert!(first_at.contains("main.fetchStatus") && first_at.contains("main.go:"), "{text}");
    assert!(text.contains("opened in a goroutine: net.sysSocket"), "{text}");
    assert!(text.contains("different http.Transports") && text.contains("CloseIdleConnections()"), "{text}");
}

/// One shared client: its pooled connection is reused, so one socket, not
/// growing, and no finding.
#[test]
fn a_shared_client_keeps_one_connection() {
    let ebpf = require_ebpf!();
    let client = fixtures::go("httpclient");
    let (report, ss, _) = trace_client(&ebpf, client.to_str().unwrap(), &["-reuse"], &[]);
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{}", pretty(&report));
    let g = &groups[0];
    assert_eq!((g.open, g.opened), (1, 1), "{}", pretty(g));
    assert!(finding_kinds(g).is_empty(), "{}", pretty(g));
    assert_eq!(ss, 1);
}

/// Response bodies never closed: one Transport, a new connection per
/// request. Named as such, and traced to `main.fetchHeaders`.
#[test]
fn unclosed_response_bodies_are_named() {
    let ebpf = require_ebpf!();
    let client = fixtures::go("httpclient");
    let (report, _, _) = trace_client(&ebpf, client.to_str().unwrap(), &["-leak-body"], &[]);
    let groups = &report.groups;
    assert_eq!(groups.len(), 1, "{}", pretty(&report));
    let g = &groups[0];
    assert_eq!((g.open, g.closed), (N, 0), "{}", pretty(g));
    assert!(functions(&g.spawned_by).contains(&"main.fetchHeaders"), "{}", pretty(g));
    assert_eq!(finding_kinds(g), ["http-bodies-not-closed"]);
}

/// A Go server that forgets sessions whose client hangs up: the accepted
/// sockets sit in CLOSE_WAIT, attributed to the accepting function; the
/// sessions that ended properly count as closed.
#[test]
fn a_server_that_forgets_sessions_is_traced_to_its_accept_loop() {
    let ebpf = require_ebpf!();
    let server = Server::start(fixtures::go("sessionserver").to_str().unwrap(), &[]);
    let pid = server.pid().to_string();
    let trace = Trace::start(&ebpf, &["-p", &pid, "--format", "json", "-i", "3600", "--min-age", "0.3"]);
    for i in 0..8 {
        let mut c = TcpStream::connect(&server.addr).expect("connect");
        // Five hang up, three say goodbye. (No full line before the hang-up:
        // an echo left unread would make the client reset, not close.)
        let msg: &[u8] = if i >= 5 { b"quit\n" } else { b"hello" };
        c.write_all(msg).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    trace.signal(libc::SIGINT);
    let report = trace.wait(T).final_report();
    let groups = &report.groups;
    let g = groups
        .iter()
        .find(|g| g.peers.iter().any(|p| p.state == Some(TcpState::CloseWait)))
        .unwrap_or_else(|| panic!("no CLOSE_WAIT group:\n{}", pretty(&report)));
    assert_eq!((g.open, g.opened, g.closed), (5, 8, 3), "{}", pretty(g));
    assert!(functions(&g.stack).contains(&"main.acceptSessions"), "{}", pretty(g));
    assert!(g.fds.iter().all(|f| f.state == Some(TcpState::CloseWait)));
    // The listener was open before fdtrace: its own group.
    assert!(
        groups.iter().any(|g| g.origin == "pre-existing"
            && g.peers.first().is_some_and(|p| p.state == Some(TcpState::Listen))),
        "{}",
        pretty(&report)
    );
}
