//! Stress workload: many fds, or fds from many distinct stacks.
//!
//! `fdstress --stacks N` opens N sockets, each from a different call
//! stack (a recursion that takes branch a or b on each bit of the index).
//! `fdstress --fds N` opens N sockets from one place.
//! Both print `ready PID`, wait for a line on stdin, open, print `opened`,
//! then wait for another line before exiting.
use std::io::BufRead;

use fdtrace_tests::workload::ready_then_wait;

const DEPTH: u32 = 12;

#[inline(never)]
fn open_socket() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) }
}

#[inline(never)]
fn branch_a(level: u32, index: u64) -> i32 {
    let fd = descend(level + 1, index);
    std::hint::black_box(fd)
}

#[inline(never)]
fn branch_b(level: u32, index: u64) -> i32 {
    let fd = descend(level + 1, index);
    std::hint::black_box(fd)
}

/// Distinct return addresses per bit of `index`: a distinct stack per index.
#[inline(never)]
fn descend(level: u32, index: u64) -> i32 {
    if level == DEPTH {
        return open_socket();
    }
    if index >> level & 1 == 0 {
        branch_a(level, index)
    } else {
        branch_b(level, index)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    // SAFETY: valid rlimit pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    ready_then_wait();
    let mut failed = 0;
    if let Some(n) = value("--stacks") {
        for i in 0..n {
            failed += u64::from(descend(0, i) < 0);
        }
    }
    if let Some(n) = value("--fds") {
        for _ in 0..n {
            failed += u64::from(open_socket() < 0);
        }
    }
    println!("opened ({failed} failed)");
    let _ = std::io::stdin().lock().lines().next();
}
