//! Workload: fds that arrive without an fd-creating syscall of their own.
//!
//! - SCM_RIGHTS, over a datagram socketpair whose receiver gets its
//!   credentials too (an `SCM_CREDENTIALS` message in front of the fds):
//!   a file, a pipe end and a TCP listener sent in one message across two
//!   `SCM_RIGHTS` control messages and received with
//!   recvmsg(MSG_CMSG_CLOEXEC); then an eventfd and a memfd in two
//!   messages, received with one recvmmsg;
//! - pidfd_getfd: a copy of one of our own fds through a pidfd;
//! - io_uring: IORING_OP_OPENAT (kept), IORING_OP_OPENAT then
//!   IORING_OP_CLOSE, IORING_OP_ACCEPT (kept), IORING_OP_SOCKET where the
//!   kernel has it (5.19+, kept). On kernels before 5.12 io_uring runs
//!   its work in kernel threads outside the process, so it is skipped.
//!
//! Prints `ready PID`, waits for a line, does all of it, prints one JSON
//! line per fd it ends up holding from those paths (`fdtrace_workload::Held`: how it came,
//! `fd`, and for received fds `kind` and `cloexec`), `paused`, and waits
//! for a line before exiting.
//!
//! `fdpaths many N`: only SCM_RIGHTS, N fds (copies of one file) in one
//! message received with one recvmsg; then recvmmsg batches of 12
//! messages without fds, over UDP and over a unix socket (no truncation
//! to report there).
#![allow(
    unused_crate_dependencies,
    reason = "each program is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "a test program: a failed unwrap fails the test that runs it")]
use std::{ffi::CString, io::BufRead, mem, ptr};

use fdtrace_workload::{check, ready_then_wait, Held};

/// A received fd as printed: how it came, its number, what it is.
fn came(how: &str, fd: i32) -> Held {
    Held { how: how.into(), fd, kind: None, cloexec: None }
}

fn main() {
    let many: Option<usize> = match std::env::args().nth(1).as_deref() {
        Some("many") => Some(std::env::args().nth(2).and_then(|n| n.parse().ok()).expect("many N")),
        Some(other) => panic!("unknown mode {other}"),
        None => None,
    };
    ready_then_wait();
    let mut held: Vec<Held> = vec![];
    // SAFETY: plain syscalls on memory we own.
    unsafe {
        let path = CString::new("/proc/self/status").unwrap();
        if let Some(n) = many {
            let (tx, rx) = dgram_pair();
            let file = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
            let copies: Vec<i32> = (0..n).map(|_| file).collect();
            send_fds(tx, &[&copies]);
            libc::close(file);
            for fd in recv_fds(rx, 0) {
                held.push(Held { kind: Some("file".into()), ..came("scm_rights_many", fd) });
            }
            // Batches of more messages than the kernel side walks, with no
            // fds: over UDP, and over a unix socket.
            batch_without_fds();
        } else {
            received(&path, &mut held);
            others(&path, &mut held);
        }
    }
    for h in &held {
        println!("{}", h.to_json());
    }
    println!("paused");
    let _ = std::io::stdin().lock().lines().next();
}

/// SCM_RIGHTS: five fds of four kinds, in one message (two cmsgs, after
/// the credentials) and in two messages read by one recvmmsg.
///
/// # Safety
/// Plain syscalls.
unsafe fn received(path: &CString, held: &mut Vec<Held>) {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let (tx, rx) = dgram_pair();
        let one: i32 = 1;
        check(
            libc::setsockopt(rx, libc::SOL_SOCKET, libc::SO_PASSCRED, (&raw const one).cast(), 4),
            "SO_PASSCRED",
        );
        let file = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
        let mut pipe = [0i32; 2];
        check(libc::pipe(pipe.as_mut_ptr()), "pipe");
        let (listener, _) = listener();
        send_fds(tx, &[&[file, pipe[0]], &[listener]]);
        for fd in [file, pipe[0], pipe[1], listener] {
            libc::close(fd);
        }
        let got = recv_fds(rx, libc::MSG_CMSG_CLOEXEC);
        assert_eq!(got.len(), 3, "three fds in one message");
        for ((path, kind), fd) in
            [("scm_rights_file", "file"), ("scm_rights_pipe", "pipe"), ("scm_rights_socket", "socket")]
                .into_iter()
                .zip(got)
        {
            held.push(Held { how: path.into(), fd, kind: Some(kind.into()), cloexec: Some(true) });
        }

        let event = check(libc::eventfd(0, 0), "eventfd");
        let name = CString::new("fdpaths").unwrap();
        let memfd = check(libc::memfd_create(name.as_ptr(), 0), "memfd_create");
        send_fds(tx, &[&[event]]);
        send_fds(tx, &[&[memfd]]);
        libc::close(event);
        libc::close(memfd);
        // eventfd's inode is anonymous: the kernel side says "other", as
        // it does for every anonymous inode it did not see created.
        for ((path, kind), fd) in
            [("recvmmsg_eventfd", "other"), ("recvmmsg_memfd", "file")].into_iter().zip(recvmmsg_fds(rx, 2))
        {
            held.push(Held { how: path.into(), fd, kind: Some(kind.into()), cloexec: Some(false) });
        }
    }
}

/// Sends 12 messages without fds and receives them with one recvmmsg,
/// over UDP (with a timestamp in each) and over a unix datagram
/// socketpair.
fn batch_without_fds() {
    const N: usize = 12;
    // SAFETY: plain syscalls on locals.
    unsafe {
        let (udp_rx, addr) = udp_socket();
        let (udp_tx, _) = udp_socket();
        // Control data in every datagram (a timestamp), none of it fds:
        // only a unix socket can carry fds.
        let one: i32 = 1;
        check(
            libc::setsockopt(udp_rx, libc::SOL_SOCKET, libc::SO_TIMESTAMP, (&raw const one).cast(), 4),
            "SO_TIMESTAMP",
        );
        let (unix_tx, unix_rx) = dgram_pair();
        for _ in 0..N {
            let b = [1u8];
            let to = (&raw const addr).cast();
            let len = size_of::<libc::sockaddr_in>() as u32;
            check(libc::sendto(udp_tx, b.as_ptr().cast(), 1, 0, to, len) as i32, "sendto");
            check(libc::send(unix_tx, b.as_ptr().cast(), 1, 0) as i32, "send");
        }
        for rx in [udp_rx, unix_rx] {
            assert!(recvmmsg_fds(rx, N).is_empty(), "no fds in these messages");
        }
        for fd in [udp_rx, udp_tx, unix_tx, unix_rx] {
            libc::close(fd);
        }
    }
}

/// A UDP socket on 127.0.0.1 and its address.
///
/// # Safety
/// Plain syscalls.
unsafe fn udp_socket() -> (i32, libc::sockaddr_in) {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let s = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0), "socket");
        let mut addr: libc::sockaddr_in = mem::zeroed();
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = size_of::<libc::sockaddr_in>() as u32;
        check(libc::bind(s, (&raw const addr).cast(), len), "bind");
        check(libc::getsockname(s, (&raw mut addr).cast(), &mut len), "getsockname");
        (s, addr)
    }
}

/// pidfd_getfd and io_uring.
///
/// # Safety
/// Plain syscalls.
unsafe fn others(path: &CString, held: &mut Vec<Held>) {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        // pidfd_getfd.
        let pidfd = check(libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32, "pidfd_open");
        let other = check(libc::open(path.as_ptr(), libc::O_RDONLY), "open");
        let copy = check(libc::syscall(libc::SYS_pidfd_getfd, pidfd, other, 0) as i32, "pidfd_getfd");
        libc::close(other);
        held.push(came("pidfd_getfd", copy));

        if kernel_at_least(5, 12) {
            let mut ring = Ring::new();
            held.push(came("io_uring_openat", check(ring.openat(path), "io_uring openat")));
            let closed = check(ring.openat(path), "io_uring openat");
            check(ring.close(closed), "io_uring close");

            let (listener, addr) = listener();
            let client = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
            check(
                libc::connect(client, (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as u32),
                "connect",
            );
            held.push(came("io_uring_accept", check(ring.accept(listener), "io_uring accept")));
            if kernel_at_least(5, 19) {
                held.push(came("io_uring_socket", check(ring.socket(), "io_uring socket")));
            }
            // The ring stays open (Ring has no Drop): it is an fd too.
            let _ = ring;
        } else {
            eprintln!("fdpaths: io_uring skipped (kernel before 5.12 runs it outside the process)");
        }
    }
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
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
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

/// A unix datagram socketpair: (sender, receiver).
fn dgram_pair() -> (i32, i32) {
    let mut sv = [0i32; 2];
    // SAFETY: a syscall writing two ints we own.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, sv.as_mut_ptr()) }, "socketpair");
    (sv[0], sv[1])
}

/// Sends one message with one `SCM_RIGHTS` control message per group.
///
/// # Safety
/// `sock` is a unix socket, the fds are open.
unsafe fn send_fds(sock: i32, groups: &[&[i32]]) {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let space: usize = groups.iter().map(|g| libc::CMSG_SPACE((4 * g.len()) as u32) as usize).sum();
        let mut cmsg_buf = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        for group in groups {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((4 * group.len()) as u32) as usize;
            for (i, fd) in group.iter().enumerate() {
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>().add(i), *fd);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        check(libc::sendmsg(sock, &msg, 0) as i32, "sendmsg");
    }
}

/// The fds of the `SCM_RIGHTS` control messages of a received message.
///
/// # Safety
/// `msg` is a message the kernel filled.
unsafe fn fds_of(msg: &libc::msghdr) -> Vec<i32> {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let mut fds = vec![];
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                fds.extend((0..n).map(|i| ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>().add(i))));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
        assert_eq!(msg.msg_flags & libc::MSG_CTRUNC, 0, "control data truncated");
        fds
    }
}

/// Receives one message with recvmsg; the fds it carried.
///
/// # Safety
/// `sock` is a unix socket with a message waiting.
unsafe fn recv_fds(sock: i32, flags: i32) -> Vec<i32> {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let mut cmsg_buf = [0u64; 256];
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&cmsg_buf);
        check(libc::recvmsg(sock, &mut msg, flags) as i32, "recvmsg");
        fds_of(&msg)
    }
}

/// Receives `n` messages with one recvmmsg; the fds they carried.
///
/// # Safety
/// `sock` is a unix socket with `n` messages waiting.
unsafe fn recvmmsg_fds(sock: i32, n: usize) -> Vec<i32> {
    // SAFETY: per the # Safety above; the buffers given to the kernel are locals.
    unsafe {
        let mut bytes = vec![[0u8; 1]; n];
        let mut iovs: Vec<libc::iovec> =
            bytes.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 1 }).collect();
        let mut cmsg_bufs = vec![[0u64; 16]; n];
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                let mut m: libc::mmsghdr = mem::zeroed();
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = cmsg_bufs[i].as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = size_of_val(&cmsg_bufs[i]);
                m
            })
            .collect();
        let got = check(
            libc::recvmmsg(sock, msgs.as_mut_ptr(), n as u32, libc::MSG_WAITFORONE, ptr::null_mut()),
            "recvmmsg",
        );
        assert_eq!(got as usize, n, "recvmmsg got {got} of {n} messages");
        msgs.iter().flat_map(|m| fds_of(&m.msg_hdr)).collect()
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
