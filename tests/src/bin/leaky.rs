//! The bundled example: a client that leaks TCP connections.
//!
//! A line server answers one line per request. The client makes a request
//! every 200 ms, alternating between two call sites: `fetch_price` closes
//! its connection, `fetch_inventory` keeps it in a cache that nothing ever
//! reads or clears — the leak.
//!
//! Flags: `--interval-ms N` (default 200), `--requests N` (0 = forever),
//! `--fixed` (fetch_inventory closes too), `--connect ADDR` (use a server
//! elsewhere instead of the built-in one), `--serve` (only run the
//! server), `--hangup` (with `--serve`: close each connection right after
//! accepting it), `--wait` (print `ready PID` and wait for a line on
//! stdin), `--exit` (exit when the requests are done instead of staying
//! alive).
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let has = |name: &str| args.iter().any(|a| a == name);
    let interval = Duration::from_millis(value("--interval-ms").and_then(|v| v.parse().ok()).unwrap_or(200));
    let requests: u64 = value("--requests").and_then(|v| v.parse().ok()).unwrap_or(0);
    let fixed = has("--fixed");

    if has("--serve") {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        if has("--hangup") {
            // Accept and close at once: clients see EOF.
            for conn in listener.incoming() {
                drop(conn);
            }
        }
        serve(listener);
        return;
    }
    let addr: SocketAddr = match value("--connect") {
        Some(a) => a.parse().expect("--connect HOST:PORT"),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            thread::spawn(move || serve(listener));
            addr
        }
    };
    if has("--wait") {
        fdtrace_workload::ready_then_wait();
    } else {
        println!("leaky: pid {} talking to {addr}", std::process::id());
    }

    let mut cache: Vec<TcpStream> = Vec::new();
    let mut n = 0u64;
    while requests == 0 || n < requests {
        if n.is_multiple_of(2) {
            fetch_price(addr);
        } else if let Some(conn) = fetch_inventory(addr) {
            if !fixed {
                cache.push(conn);
            }
        }
        n += 1;
        thread::sleep(interval);
    }
    println!("done {}", cache.len());
    if has("--exit") {
        // Without closing the cache, as a program that leaks exits.
        std::process::exit(0);
    }
    // Stay alive so the final state can be inspected.
    thread::sleep(Duration::from_secs(3600));
}

/// Asks for a price and closes the connection: no leak.
#[inline(never)]
fn fetch_price(addr: SocketAddr) {
    if let Ok(mut conn) = TcpStream::connect(addr) {
        let _ = request(&mut conn, "price");
    }
}

/// Asks for stock levels and hands the connection back "for reuse"; the
/// caller caches it forever.
#[inline(never)]
fn fetch_inventory(addr: SocketAddr) -> Option<TcpStream> {
    let mut conn = TcpStream::connect(addr).ok()?;
    request(&mut conn, "inventory").ok()?;
    Some(conn)
}

fn request(conn: &mut TcpStream, what: &str) -> std::io::Result<String> {
    writeln!(conn, "GET {what}")?;
    let mut line = String::new();
    BufReader::new(&*conn).read_line(&mut line)?;
    Ok(line)
}

fn serve(listener: TcpListener) {
    for conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let mut reader = BufReader::new(&conn);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = writeln!(&conn, "OK {}", line.trim());
                line.clear();
            }
        });
    }
}
