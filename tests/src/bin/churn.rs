//! Workload for the ledger-vs-/proc test: a seeded random churn of fd
//! operations, then a pause so the test can compare fdtrace's open set with
//! `/proc/PID/fd`.
//!
//! Stage 1: random opens (sockets, socketpairs, accepts, pipes, files,
//! eventfd, epoll, timerfd, memfd, inotify, signalfd, pidfd), dups (dup,
//! dup2/dup3 over open and closed numbers, F_DUPFD_CLOEXEC), closes,
//! close_range, cloexec changes (fcntl, ioctl, close_range CLOEXEC), forks
//! whose children churn and exit, and threads that close each other's
//! fds. Then it re-executes itself: close-on-exec fds go.
//! Stage 2: more churn in the new image, then `paused`, wait, exit.
//!
//! Usage: churn [--seed N] [--ops N]
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{
    ffi::CString,
    io::BufRead,
    sync::{Arc, Mutex},
    thread,
};

use fdtrace_workload::ready_then_wait;

/// Fds the churn must not touch: stdio and the listener.
const FIRST_FREE: i32 = 4;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// fds this process opened and believes open (churn picks from them).
struct Fds(Vec<i32>);

impl Fds {
    fn add(&mut self, fd: i32) {
        if fd >= FIRST_FREE && !self.0.contains(&fd) {
            self.0.push(fd);
        }
    }
    fn pick(&self, rng: &mut Rng) -> Option<i32> {
        (!self.0.is_empty()).then(|| self.0[rng.below(self.0.len() as u64) as usize])
    }
    fn forget(&mut self, fd: i32) {
        self.0.retain(|&f| f != fd);
    }
    /// Re-reads what is actually open (after forks, exec, close_range).
    fn refresh(&mut self) {
        self.0 = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= FIRST_FREE)
            .collect();
    }
}

fn cloexec(rng: &mut Rng) -> i32 {
    if rng.coin() {
        libc::O_CLOEXEC
    } else {
        0
    }
}

/// One random fd operation. Returns fds it created.
///
/// # Safety
/// Plain syscalls on fds of this process.
unsafe fn op(rng: &mut Rng, fds: &mut Fds, listener: i32, port: u16) {
    let path = CString::new("/proc/self/status").unwrap();
    // SAFETY: syscalls on fds this process owns (or that were just closed:
    // an error, which Fds tolerates), with pointers to locals that outlive
    // each call; a zeroed sockaddr_in is valid.
    unsafe {
        match rng.below(22) {
            0 | 1 => fds.add(libc::open(path.as_ptr(), libc::O_RDONLY | cloexec(rng))),
            2 => fds.add(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | cloexec(rng), 0)),
            3 => {
                // Connect to our own listener and accept the other end.
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | cloexec(rng), 0);
                let mut addr: libc::sockaddr_in = std::mem::zeroed();
                addr.sin_family = libc::AF_INET as u16;
                addr.sin_port = port.to_be();
                addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
                libc::connect(s, (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as u32);
                fds.add(s);
                fds.add(libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), cloexec(rng)));
            }
            4 => {
                let mut sv = [0; 2];
                if libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | cloexec(rng), 0, sv.as_mut_ptr()) == 0
                {
                    fds.add(sv[0]);
                    fds.add(sv[1]);
                }
            }
            5 | 6 => {
                let mut p = [0; 2];
                if libc::pipe2(p.as_mut_ptr(), cloexec(rng)) == 0 {
                    fds.add(p[0]);
                    fds.add(p[1]);
                }
            }
            7 => fds.add(libc::eventfd(0, if rng.coin() { libc::EFD_CLOEXEC } else { 0 })),
            8 => fds.add(match rng.below(5) {
                0 => libc::epoll_create1(if rng.coin() { libc::EPOLL_CLOEXEC } else { 0 }),
                1 => libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    if rng.coin() { libc::TFD_CLOEXEC } else { 0 },
                ),
                2 => libc::memfd_create(path.as_ptr(), if rng.coin() { libc::MFD_CLOEXEC } else { 0 }),
                3 => libc::inotify_init1(if rng.coin() { libc::IN_CLOEXEC } else { 0 }),
                _ => libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32,
            }),
            9 => {
                let mut mask: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut mask);
                libc::sigaddset(&mut mask, libc::SIGUSR2);
                fds.add(libc::signalfd(-1, &mask, if rng.coin() { libc::SFD_CLOEXEC } else { 0 }));
            }
            10 => {
                if let Some(fd) = fds.pick(rng) {
                    fds.add(libc::dup(fd));
                }
            }
            11 => {
                // dup2 onto a number that may or may not be open.
                if let Some(fd) = fds.pick(rng) {
                    let target = FIRST_FREE + rng.below(60) as i32;
                    if libc::dup2(fd, target) >= 0 {
                        fds.add(target);
                    }
                }
            }
            12 => {
                if let (Some(fd), Some(target)) = (fds.pick(rng), fds.pick(rng)) {
                    if fd != target && libc::dup3(fd, target, cloexec(rng)) >= 0 {
                        fds.add(target);
                    }
                }
            }
            13 => {
                if let Some(fd) = fds.pick(rng) {
                    fds.add(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FIRST_FREE + rng.below(80) as i32));
                }
            }
            14..=16 => {
                if let Some(fd) = fds.pick(rng) {
                    libc::close(fd);
                    fds.forget(fd);
                }
            }
            17 => {
                let first = FIRST_FREE as u32 + rng.below(60) as u32;
                let last = first + rng.below(6) as u32;
                // Also calls that fail and close nothing: unknown flags
                // (and CLOSE_RANGE_CLOEXEC before Linux 5.11), first > last.
                let (first, last, flags) = match rng.below(10) {
                    0 | 1 => (first, last, libc::CLOSE_RANGE_CLOEXEC),
                    2 => (first, last, 1 << 12),
                    3 => (last + 1, first, 0),
                    _ => (first, last, 0),
                };
                libc::syscall(libc::SYS_close_range, first, last, flags);
                fds.refresh();
            }
            18 => {
                if let Some(fd) = fds.pick(rng) {
                    libc::fcntl(fd, libc::F_SETFD, if rng.coin() { libc::FD_CLOEXEC } else { 0 });
                }
            }
            19 => {
                if let Some(fd) = fds.pick(rng) {
                    libc::ioctl(fd, if rng.coin() { libc::FIOCLEX } else { libc::FIONCLEX });
                }
            }
            20 => {
                // A child that churns a little and exits.
                let child = libc::fork();
                if child == 0 {
                    let mut child_rng = Rng(rng.next() | 1);
                    for _ in 0..5 {
                        if let Some(fd) = fds.pick(&mut child_rng) {
                            libc::close(fd);
                        }
                        libc::open(path.as_ptr(), libc::O_RDONLY);
                    }
                    libc::_exit(0);
                }
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            _ => threads_closing_each_others_fds(rng),
        }
    }
}

/// Two threads open fds into a shared list; each closes fds the other
/// opened.
fn threads_closing_each_others_fds(rng: &mut Rng) {
    let shared = Arc::new(Mutex::new(Vec::<(i32, thread::ThreadId)>::new()));
    let seeds = [rng.next() | 1, rng.next() | 1];
    let handles: Vec<_> = seeds
        .into_iter()
        .map(|seed| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut rng = Rng(seed);
                let me = thread::current().id();
                for _ in 0..40 {
                    // SAFETY: plain syscalls.
                    unsafe {
                        let mut p = [0; 2];
                        if libc::pipe2(p.as_mut_ptr(), 0) == 0 {
                            shared.lock().unwrap().push((p[0], me));
                            shared.lock().unwrap().push((p[1], me));
                        }
                        let theirs = {
                            let mut list = shared.lock().unwrap();
                            let pos = list.iter().position(|(_, owner)| *owner != me && rng.coin());
                            pos.map(|i| list.remove(i).0)
                        };
                        if let Some(fd) = theirs {
                            libc::close(fd);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let _ = shared;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seed: u64 = value("--seed").and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let ops: u64 = value("--ops").and_then(|v| v.parse().ok()).unwrap_or(400);
    let stage2 = args.iter().any(|a| a == "--stage2");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 | u64::from(stage2) << 63);
    // Thousands of fds: lift the soft limit to the hard one.
    // SAFETY: valid rlimit pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }

    // SAFETY: plain syscalls on our own fds.
    let (listener, port) = unsafe {
        let (listener, port) = if stage2 {
            let port: u16 = value("--port").and_then(|v| v.parse().ok()).expect("--port");
            (3, port)
        } else {
            let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert_eq!(l, 3, "fd 3 must be free for the listener");
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as u16;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = size_of::<libc::sockaddr_in>() as u32;
            libc::bind(l, (&raw const addr).cast(), len);
            libc::listen(l, 128);
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut blen = len;
            libc::getsockname(l, (&raw mut bound).cast(), &mut blen);
            (l, u16::from_be(bound.sin_port))
        };
        (listener, port)
    };
    if !stage2 {
        ready_then_wait();
    }
    let mut fds = Fds(vec![]);
    fds.refresh();
    fds.forget(listener);
    for _ in 0..ops {
        // SAFETY: see `op`.
        unsafe { op(&mut rng, &mut fds, listener, port) };
        fds.forget(listener);
        fds.0.retain(|&fd| fd != 0 && fd != 1 && fd != 2);
    }
    if !stage2 {
        // Re-execute: close-on-exec fds go, the rest (and the listener)
        // stay.
        let exe = CString::new("/proc/self/exe").unwrap();
        let argv: Vec<CString> = [
            "churn",
            "--stage2",
            "--seed",
            &seed.to_string(),
            "--ops",
            &ops.to_string(),
            "--port",
            &port.to_string(),
        ]
        .iter()
        .map(|a| CString::new(*a).unwrap())
        .collect();
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: valid NUL-terminated argv.
        unsafe { libc::execv(exe.as_ptr(), ptrs.as_ptr()) };
        panic!("execv: {}", std::io::Error::last_os_error());
    }
    println!("paused");
    let _ = std::io::stdin().lock().lines().next();
}
