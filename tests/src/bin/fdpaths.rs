//! Workload: fds that arrive by paths the syscall tracepoints do not see,
//! next to one they do.
//!
//! - SCM_RIGHTS: a file sent over a socketpair and received with recvmsg;
//! - pidfd_getfd: a copy of one of our own fds through a pidfd;
//! - io_uring: IORING_OP_OPENAT (kept), IORING_OP_OPENAT then
//!   IORING_OP_CLOSE, IORING_OP_ACCEPT (kept), IORING_OP_SOCKET where the
//!   kernel has it (5.19+, kept). On kernels before 5.12 io_uring runs
//!   its work in kernel threads outside the process, so it is skipped.
//!
//! Prints `ready PID`, waits for a line, does all of it, prints one JSON
//! line per fd it ends up holding from those paths, `paused`, and waits for
//! a line before exiting.
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{ffi::CString, io::BufRead, mem, ptr};

use fdtrace_tests::workload::{check, ready_then_wait};

fn main() {
    ready_then_wait();
    let mut held: Vec<(&str, i32)> = vec![];
    // SAFETY: plain syscalls on memory we own.
    unsafe {
        let path = CString::new("/proc/self/status").unwrap();

        // SCM_RIGHTS.
        let mut sv = [0i32; 2];
        check(libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()), "socketpair");
        let file = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
        send_fd(sv[0], file);
        libc::close(file);
        held.push(("scm_rights", recv_fd(sv[1])));

        // pidfd_getfd.
        let pidfd = check(libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32, "pidfd_open");
        let other = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
        let copy = check(libc::syscall(libc::SYS_pidfd_getfd, pidfd, other, 0) as i32, "pidfd_getfd");
        libc::close(other);
        held.push(("pidfd_getfd", copy));

        if kernel_at_least(5, 12) {
            let mut ring = Ring::new();
            held.push(("io_uring_openat", check(ring.openat(&path), "io_uring openat")));
            let closed = check(ring.openat(&path), "io_uring openat");
            check(ring.close(closed), "io_uring close");

            let (listener, addr) = listener();
            let client = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
            check(
                libc::connect(client, (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as u32),
                "connect",
            );
            held.push(("io_uring_accept", check(ring.accept(listener), "io_uring accept")));
            if kernel_at_least(5, 19) {
                held.push(("io_uring_socket", check(ring.socket(), "io_uring socket")));
            }
            // The ring stays open (Ring has no Drop): it is an fd too.
            let _ = ring;
        } else {
            println!("{{\"skipped\":\"io_uring (kernel before 5.12 runs it outside the process)\"}}");
        }
    }
    for (path, fd) in &held {
        println!("{}", serde_json::json!({"path": path, "fd": fd}));
    }
    println!("paused");
    let _ = std::io::stdin().lock().lines().next();
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// # Safety
/// Plain syscalls.
unsafe fn listener() -> (i32, libc::sockaddr_in) {
    // SAFETY: socket calls on a new fd, with pointers to locals that
    // outlive them; a zeroed sockaddr_in is valid.
    unsafe {
        let l = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let mut addr: libc::sockaddr_in = mem::zeroed();
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = size_of::<libc::sockaddr_in>() as u32;
        check(libc::bind(l, (&raw const addr).cast(), len), "bind");
        check(libc::listen(l, 4), "listen");
        check(libc::getsockname(l, (&raw mut addr).cast(), &mut len), "getsockname");
        (l, addr)
    }
}

/// # Safety
/// `sock` is a unix socket, `fd` an open fd.
unsafe fn send_fd(sock: i32, fd: i32) {
    // SAFETY: the message, its iovec and its control buffer are locals
    // that outlive sendmsg; the buffer (32 bytes, u64-aligned) holds one
    // cmsghdr with an int, so CMSG_FIRSTHDR is non-null and CMSG_DATA in
    // bounds (the write is unaligned-safe anyway).
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let mut cmsg_buf = [0u64; 4];
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<i32>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        check(libc::sendmsg(sock, &msg, 0) as i32, "sendmsg");
    }
}

/// # Safety
/// `sock` is a unix socket with an fd in flight.
unsafe fn recv_fd(sock: i32) -> i32 {
    // SAFETY: as in send_fd: locals that outlive recvmsg; the control
    // data is read only after recvmsg filled it, and checked first.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let mut cmsg_buf = [0u64; 4];
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&cmsg_buf);
        check(libc::recvmsg(sock, &mut msg, 0) as i32, "recvmsg");
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no fd received");
        ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())
    }
}

// A minimal io_uring, one request at a time (no liburing).
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_OP_ACCEPT: u8 = 13;
const IORING_OP_OPENAT: u8 = 18;
const IORING_OP_CLOSE: u8 = 19;
const IORING_OP_SOCKET: u8 = 45;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    file_index: u32,
    addr3: u64,
    pad: u64,
}

#[repr(C)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

struct Ring {
    fd: i32,
    sq: *mut u8,
    cq: *mut u8,
    sqes: *mut Sqe,
    p: Params,
}

impl Ring {
    fn new() -> Ring {
        let mut p = Params::default();
        // SAFETY: io_uring_setup and mmap of its rings, as documented.
        unsafe {
            let fd = check(libc::syscall(libc::SYS_io_uring_setup, 4, &mut p) as i32, "io_uring_setup");
            let map = |len: usize, off: i64| {
                let m = libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    off,
                );
                assert_ne!(m, libc::MAP_FAILED, "mmap io_uring ring");
                m.cast::<u8>()
            };
            let sq = map(p.sq_off.array as usize + p.sq_entries as usize * 4, IORING_OFF_SQ_RING);
            let cq =
                map(p.cq_off.cqes as usize + p.cq_entries as usize * size_of::<Cqe>(), IORING_OFF_CQ_RING);
            let sqes = map(p.sq_entries as usize * size_of::<Sqe>(), IORING_OFF_SQES).cast::<Sqe>();
            Ring { fd, sq, cq, sqes, p }
        }
    }

    /// Submits one request and waits for its result.
    fn submit(&mut self, sqe: Sqe) -> i32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        // SAFETY: the ring layout comes from the kernel's offsets.
        unsafe {
            let at = |base: *mut u8, off: u32| &*(base.add(off as usize).cast::<AtomicU32>());
            let mask = at(self.sq, self.p.sq_off.ring_mask).load(Ordering::Relaxed);
            let tail = at(self.sq, self.p.sq_off.tail).load(Ordering::Acquire);
            let slot = tail & mask;
            *self.sqes.add(slot as usize) = sqe;
            *self.sq.add(self.p.sq_off.array as usize).cast::<u32>().add(slot as usize) = slot;
            at(self.sq, self.p.sq_off.tail).store(tail.wrapping_add(1), Ordering::Release);
            check(
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd,
                    1,
                    1,
                    IORING_ENTER_GETEVENTS,
                    ptr::null::<u8>(),
                    0,
                ) as i32,
                "io_uring_enter",
            );
            let cq_mask = at(self.cq, self.p.cq_off.ring_mask).load(Ordering::Relaxed);
            let head = at(self.cq, self.p.cq_off.head).load(Ordering::Acquire);
            let cqe = &*self.cq.add(self.p.cq_off.cqes as usize).cast::<Cqe>().add((head & cq_mask) as usize);
            let res = cqe.res;
            at(self.cq, self.p.cq_off.head).store(head.wrapping_add(1), Ordering::Release);
            res
        }
    }

    fn openat(&mut self, path: &CString) -> i32 {
        self.submit(Sqe {
            opcode: IORING_OP_OPENAT,
            fd: libc::AT_FDCWD,
            addr: path.as_ptr() as u64,
            op_flags: libc::O_RDONLY as u32,
            ..Sqe::default()
        })
    }

    fn close(&mut self, fd: i32) -> i32 {
        self.submit(Sqe { opcode: IORING_OP_CLOSE, fd, ..Sqe::default() })
    }

    fn accept(&mut self, listener: i32) -> i32 {
        self.submit(Sqe { opcode: IORING_OP_ACCEPT, fd: listener, ..Sqe::default() })
    }

    fn socket(&mut self) -> i32 {
        // fd = domain, off = type, len = protocol.
        self.submit(Sqe {
            opcode: IORING_OP_SOCKET,
            fd: libc::AF_INET,
            off: libc::SOCK_DGRAM as u64,
            ..Sqe::default()
        })
    }
}
