//! Stress workload: many fds, or fds from many distinct stacks.
//!
//! `fdstress --stacks N` opens N sockets, each from a different call
//! stack (a recursion that takes branch a or b on each bit of the index).
//! `fdstress --fds N` opens N sockets from one place; with `--procs K`
//! they are spread over K processes (itself and K-1 children forked after
//! `go`, for fdtrace -f), when one process may not hold N fds (the hard
//! RLIMIT_NOFILE, which only CAP_SYS_RESOURCE raises).
//! `fdstress --threads N` starts N threads that, released together, each
//! open and close sockets, pipes and files 20 times and keep one socket.
//! All print `ready PID`, wait for a line on stdin, open, print `opened`,
//! then wait for another line before exiting.
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::io::BufRead;

use fdtrace_workload::ready_then_wait;

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

fn racing_threads(n: usize) -> u64 {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut failed = 0;
                for _ in 0..20 {
                    // SAFETY: plain syscalls; every fd is closed at once.
                    unsafe {
                        let s = open_socket();
                        let mut p = [0; 2];
                        let piped = libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC);
                        let f = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                        failed += u64::from(s < 0 || piped < 0 || f < 0);
                        libc::close(s);
                        libc::close(p[0]);
                        libc::close(p[1]);
                        libc::close(f);
                    }
                }
                failed + u64::from(open_socket() < 0)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("thread")).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    // Room for the fds asked for: the soft limit up to the hard one, and
    // the hard one too when that is not enough (root may raise it).
    let want = value("--fds").unwrap_or(0) + 64;
    // SAFETY: valid rlimit pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        if lim.rlim_max < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: want };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
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
        let procs = value("--procs").unwrap_or(1).max(1);
        let share = n.div_ceil(procs);
        // Children report their failures on a pipe, then wait for it to
        // close (the parent exiting) before they exit.
        let mut done = [0; 2];
        let mut hold = [0; 2];
        // SAFETY: plain syscalls.
        unsafe {
            libc::pipe(done.as_mut_ptr());
            libc::pipe(hold.as_mut_ptr());
        }
        let mut children = 0;
        for p in 1..procs {
            let mine = share.min(n.saturating_sub(p * share));
            // SAFETY: the child only makes syscalls and exits.
            if unsafe { libc::fork() } == 0 {
                let mut f = 0u64;
                for _ in 0..mine {
                    f += u64::from(open_socket() < 0);
                }
                // SAFETY: plain syscalls on inherited pipes.
                unsafe {
                    libc::write(done[1], (&f as *const u64).cast(), 8);
                    libc::close(hold[1]);
                    let mut b = 0u8;
                    libc::read(hold[0], (&mut b as *mut u8).cast(), 1);
                    libc::_exit(0);
                }
            }
            children += 1;
        }
        for _ in 0..share.min(n) {
            failed += u64::from(open_socket() < 0);
        }
        for _ in 0..children {
            let mut f = 0u64;
            // SAFETY: reads one u64 per child.
            unsafe { libc::read(done[0], (&mut f as *mut u64).cast(), 8) };
            failed += f;
        }
    }
    if let Some(n) = value("--threads") {
        failed += racing_threads(n as usize);
    }
    println!("opened ({failed} failed)");
    let _ = std::io::stdin().lock().lines().next();
}
