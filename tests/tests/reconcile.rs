//! Reconciliation under a real server's churn: `redis-server` while
//! `redis-benchmark -k 0` opens and closes thousands of connections a
//! second. Every report compares the ledger with `/proc/PID/fd`; an fd in
//! flight during a scan (accepted but its event not read yet, closed in the
//! kernel but not yet seen) must never be counted as missed — in either
//! pairing mode.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fdtrace_tests::{
    harness::{compact, Ebpf, Trace},
    require_ebpf, require_tool,
};

const T: Duration = Duration::from_secs(60);
/// Connections redis-benchmark makes (one request each).
const CONNECTIONS: &str = "40000";

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts redis-server on a free loopback port; returns it once it accepts.
fn redis(server: &std::path::Path) -> (Redis, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let redis = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen on {port} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (redis, port)
}

/// redis-server and redis-benchmark.
type Tools = (std::path::PathBuf, std::path::PathBuf);

fn churn_is_never_missed(ebpf: &Ebpf, (server, benchmark): Tools, flags: &[&str]) {
    let (redis, port) = redis(&server);
    let pid = redis.0.id().to_string();
    let mut args = vec!["-p", &pid, "-a", "--min-age", "0", "-i", "0.5", "--format", "json"];
    args.extend(flags);
    let trace = Trace::start(ebpf, &args);
    let bench = Command::new(benchmark)
        .args(["-p", &port.to_string(), "-c", "20", "-k", "0", "-n", CONNECTIONS, "-t", "ping", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(bench.success(), "redis-benchmark failed: {bench}");
    // One more check after the churn.
    std::thread::sleep(Duration::from_millis(800));
    trace.signal(libc::SIGINT);
    let out = trace.wait(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let reports = out.reports();
    assert!(reports.len() >= 4, "{} reports in a run of seconds at -i 0.5", reports.len());
    for (i, r) in reports.iter().enumerate() {
        let s = &r.stats;
        if s.lost_events > 0 && !flags.is_empty() {
            // Every event through the ring, on a machine whose CPUs other
            // work took: what was lost may show as missed, and the report
            // says it is incomplete. (The kernel-paired run allows no loss.)
            assert!(!r.complete, "report {}: events lost yet complete: {}", i + 1, compact(r));
            eprintln!(
                "report {}: {} events lost (--no-kernel-pairing on a busy machine)",
                i + 1,
                s.lost_events
            );
            continue;
        }
        assert_eq!(
            (s.lost_events, s.missed_open, s.missed_close),
            (0, 0, 0),
            "report {} of {} ({flags:?}): {}",
            i + 1,
            reports.len(),
            compact(r)
        );
    }
    let last = reports.last().unwrap();
    let connections: u64 = CONNECTIONS.parse().unwrap();
    assert!(
        last.stats.events > 2 * connections,
        "{} events for {connections} connections",
        last.stats.events
    );
    if flags.is_empty() {
        let k = last.stats.kernel_pairing.expect("what the kernel paired");
        assert!(k.paired > connections * 9 / 10, "the kernel paired {} of {connections}: {k:?}", k.paired);
    }
    drop(redis);
}

#[test]
fn a_churning_server_is_never_counted_missed_when_the_kernel_pairs() {
    let ebpf = require_ebpf!();
    let tools = (require_tool!("redis-server"), require_tool!("redis-benchmark"));
    churn_is_never_missed(&ebpf, tools, &[]);
}

#[test]
fn a_churning_server_is_never_counted_missed_when_fdtrace_pairs() {
    let ebpf = require_ebpf!();
    let tools = (require_tool!("redis-server"), require_tool!("redis-benchmark"));
    churn_is_never_missed(&ebpf, tools, &["--no-kernel-pairing"]);
}
