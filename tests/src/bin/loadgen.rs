//! Benchmark workloads (`cargo xtask bench`): each runs one fd-heavy loop
//! as fast as it can for a fixed time and prints its own rate.
//!
//! - `connect`: loopback TCP connect + close (a listener thread accepts and
//!   closes);
//! - `accept`: an accept loop; a forked client process (not traced)
//!   connects and closes as fast as it can;
//! - `open`: `open("/dev/null")` + close;
//! - `mix`: a thread per CPU (4 at least), each cycling socket, pipe2,
//!   open, dup, eventfd and their closes: fds created and closed as fast as
//!   the machine allows, from several threads at once.
//!
//! Protocol: prints `ready PID`, waits for a line on stdin (the tracer
//! attaches in between), runs `--secs S`, prints one JSON line (a
//! [`LoadResult`]: `{"workload":..,"ops":N,"fd_events":M,"secs":S,"rate":R}`)
//! and exits. `ops` are loop iterations; `fd_events` the fd creations and
//! closes they made (what a tracer of fds sees).
//!
//! Usage: loadgen connect|accept|open|mix [--secs S]
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use fdtrace_workload::{ready_then_wait, LoadResult};

/// Loop iterations and fd events done, shared by the workload's threads.
#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    fd_events: AtomicU64,
}

impl Counts {
    fn add(&self, ops: u64, fd_events: u64) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.fd_events.fetch_add(fd_events, Ordering::Relaxed);
    }
}

/// Iterations between checks of the clock.
const BATCH: u64 = 64;

/// Runs `one` until `stop`; it returns the fd events it made, 0 when it
/// failed (not counted as an operation).
fn run_until(stop: &AtomicBool, counts: &Counts, mut one: impl FnMut() -> u64) {
    while !stop.load(Ordering::Relaxed) {
        let (mut ops, mut events) = (0, 0);
        for _ in 0..BATCH {
            let e = one();
            ops += u64::from(e > 0);
            events += e;
        }
        counts.add(ops, events);
    }
}

/// A loopback listener with a deep backlog: a full accept queue drops
/// SYNs, and each drop stalls a connect for a second.
fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen again on our own listening socket: a new backlog.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 4096) };
    l
}

/// Connects and closes with a reset (SO_LINGER 0): no TIME_WAIT, so a
/// long loop does not run out of loopback ports.
fn connect_and_reset(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect(addr) {
        Ok(s) => {
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: valid socket and option struct.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    size_of::<libc::linger>() as u32,
                )
            };
            true
        }
        Err(_) => false,
    }
}

/// Connects to a listener thread of the same process: both ends are
/// traced (socket + close, accept4 + close).
fn connect_loop(stop: &AtomicBool, counts: &Counts) {
    let listener = listener();
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    run_until(stop, counts, || if connect_and_reset(addr) { 4 } else { 0 });
}

/// A listener and a forked client process (not traced: fdtrace follows
/// forks only with -f) that connects and closes in a loop until killed.
/// Forked before `ready`, while the process has one thread.
fn accept_setup() -> (TcpListener, libc::pid_t) {
    let listener = listener();
    let addr = listener.local_addr().expect("addr");
    // SAFETY: fork while single-threaded; the child only connects.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: plain syscall: die with the parent.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        loop {
            connect_and_reset(addr);
        }
    }
    (listener, child)
}

fn accept_loop(stop: &AtomicBool, counts: &Counts, listener: &TcpListener, child: libc::pid_t) {
    // The client keeps connecting: the accept after `stop` returns too.
    run_until(stop, counts, || match listener.accept() {
        Ok((s, _)) => {
            drop(s);
            2
        }
        Err(_) => 0,
    });
    // SAFETY: plain syscalls on our child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
}

fn open_loop(stop: &AtomicBool, counts: &Counts) {
    let path = c"/dev/null";
    run_until(stop, counts, || {
        // SAFETY: valid path; the fd is closed at once.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return 0;
            }
            libc::close(fd);
        }
        2
    });
}

fn mix_loop(stop: &AtomicBool, counts: &Counts) {
    let path = c"/dev/null";
    let mut i = 0u64;
    run_until(stop, counts, || {
        i += 1;
        // SAFETY: plain syscalls; every fd is closed before returning.
        unsafe {
            match i % 5 {
                0 => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    libc::close(fd);
                    2
                }
                1 => {
                    let mut p = [0; 2];
                    libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC);
                    libc::close(p[0]);
                    libc::close(p[1]);
                    4
                }
                2 => {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    let d = libc::dup(fd);
                    libc::close(d);
                    libc::close(fd);
                    4
                }
                3 => {
                    let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
                    libc::close(fd);
                    2
                }
                _ => {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    libc::close(fd);
                    2
                }
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).cloned().unwrap_or_default();
    let secs: f64 =
        args.iter().position(|a| a == "--secs").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2.0);
    if !matches!(workload.as_str(), "connect" | "accept" | "open" | "mix") {
        eprintln!("usage: loadgen connect|accept|open|mix [--secs S]");
        std::process::exit(2);
    }
    let accept = (workload == "accept").then(accept_setup);
    ready_then_wait();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
        });
    }
    match workload.as_str() {
        "connect" => connect_loop(&stop, &counts),
        "accept" => {
            let (listener, child) = accept.as_ref().expect("set up");
            accept_loop(&stop, &counts, listener, *child)
        }
        "open" => open_loop(&stop, &counts),
        _ => {
            let threads = thread::available_parallelism().map_or(4, |n| n.get().max(4));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
                    thread::spawn(move || mix_loop(&stop, &counts))
                })
                .collect();
            for w in workers {
                w.join().expect("worker");
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops = counts.ops.load(Ordering::Relaxed);
    println!(
        "{}",
        LoadResult::new(&workload, ops, counts.fd_events.load(Ordering::Relaxed), elapsed).to_json()
    );
}
