//! Workload for the event-stream tests: performs a fixed sequence of fd
//! operations with raw syscalls and prints, as JSON lines, what each one
//! returned, so a test can compare fdtrace's events with the truth.
//!
//! Protocol: prints `ready <pid>`, waits for a line on stdin, runs the
//! sequence, prints one `{"op":...}` line per step (a [`Step`]), exits 0.
//!
//! Sequence: socket/bind/listen a listener on 127.0.0.1:0; socket+connect
//! to it; accept4; open a file; dup2 the accepted socket over the file's
//! fd; pipe2; close_range over the pipe; fork a child that exits at once;
//! close the client socket; exit.
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{ffi::CString, io::BufRead, mem};

use fdtrace_workload::{check, ready_then_wait, Op, Step};

fn main() {
    ready_then_wait();
    let follow_child_open = std::env::args().any(|a| a == "--child-opens");
    let mut steps = Vec::new();
    // SAFETY: plain syscalls on memory we own.
    unsafe {
        let listener = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        steps.push(Step::fd(Op::Socket, listener));
        let mut addr: libc::sockaddr_in = mem::zeroed();
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = size_of::<libc::sockaddr_in>() as u32;
        check(libc::bind(listener, (&raw const addr).cast(), len), "bind");
        let mut bound: libc::sockaddr_in = mem::zeroed();
        let mut blen = len;
        check(libc::getsockname(listener, (&raw mut bound).cast(), &mut blen), "getsockname");
        let port = u16::from_be(bound.sin_port);
        steps.push(Step::fd(Op::Bind, listener).addr(format!("127.0.0.1:{port}")));
        check(libc::listen(listener, 16), "listen");
        steps.push(Step::fd(Op::Listen, listener));

        let client = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0), "socket");
        steps.push(Step::fd(Op::Socket, client));
        check(libc::connect(client, (&raw const bound).cast(), len), "connect");
        let mut local: libc::sockaddr_in = mem::zeroed();
        let mut llen = len;
        check(libc::getsockname(client, (&raw mut local).cast(), &mut llen), "getsockname");
        let client_port = u16::from_be(local.sin_port);
        steps.push(Step::fd(Op::Connect, client).addr(format!("127.0.0.1:{port}")));

        let accepted =
            check(libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), 0), "accept4");
        steps.push(Step::fd(Op::Accept4, accepted).src(listener).addr(format!("127.0.0.1:{client_port}")));

        let path = CString::new("/proc/self/status").unwrap();
        let file = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
        steps.push(Step::fd(Op::Openat, file).path("/proc/self/status"));

        check(libc::dup2(accepted, file), "dup2");
        steps.push(Step::fd(Op::Dup2, file).src(accepted));

        let mut pipe = [0i32; 2];
        check(libc::pipe2(pipe.as_mut_ptr(), 0), "pipe2");
        steps.push(Step::fd(Op::Pipe2, pipe[0]).fd2(pipe[1]));

        check(libc::syscall(libc::SYS_close_range, pipe[0] as u32, pipe[1] as u32, 0) as i32, "close_range");
        steps.push(Step::range(Op::CloseRange, pipe[0], pipe[1]));

        let child = libc::fork();
        if child == 0 {
            if follow_child_open {
                let c = libc::open(path.as_ptr(), libc::O_RDONLY);
                libc::close(c);
            }
            libc::_exit(0);
        }
        check(child, "fork");
        steps.push(Step::child(Op::Fork, child));
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);

        check(libc::close(client), "close");
        steps.push(Step::fd(Op::Close, client));
    }
    for s in &steps {
        println!("{}", s.to_json());
    }
    println!("done");
    // Keep stdin open until the test has read our report.
    let _ = std::io::stdin().lock().lines().next();
}
