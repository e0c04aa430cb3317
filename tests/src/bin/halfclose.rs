//! A client whose server hangs up and which never closes its side: each
//! socket ends in CLOSE_WAIT. `halfclose --connect ADDR --count N`; prints
//! `ready PID`, waits for a line, connects N times from
//! `subscribe_updates`, reads each to EOF, keeps them all, prints `done`,
//! waits.
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{
    io::{BufRead, Read},
    net::{SocketAddr, TcpStream},
};

use fdtrace_workload::ready_then_wait;

/// Opens a connection for updates, reads until the server is done, and
/// keeps the stream "for later" — it is never closed.
#[inline(never)]
fn subscribe_updates(addr: SocketAddr, kept: &mut Vec<TcpStream>) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    kept.push(conn);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let addr: SocketAddr = value("--connect").expect("--connect ADDR").parse().expect("address");
    let count: usize = value("--count").and_then(|v| v.parse().ok()).unwrap_or(5);
    ready_then_wait();
    let mut kept = Vec::new();
    for _ in 0..count {
        subscribe_updates(addr, &mut kept);
    }
    println!("done");
    let _ = std::io::stdin().lock().lines().next();
}
