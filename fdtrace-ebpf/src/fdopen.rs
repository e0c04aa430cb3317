//! The `FdOpen` record, built the same way whether the syscall's exit
//! reports it (tracepoint tier) or `fd_install` does (function tiers), so
//! the ledger never knows which.
use aya_ebpf::programs::tracing::StackIdContext;
use fdtrace_common::{
    fd_flags, kind_hint,
    syscall::consts::{EAGAIN, O_CREAT, O_TRUNC, O_WRONLY, SOCK_TYPE_MASK},
    syscall::Flags,
    EventKind, FdOpen, Loss, Syscall, PATH_CAP, STACK_NOT_CAPTURED,
};

use crate::{
    emit::{
        header, read_fd_pair, read_sockaddr, read_user_str, track_sock, user_stack, Args, EventSlot,
        KeptSlot, StackSlot, UserRegs,
    },
    go::goroutine_origin,
    keep::{self, Opened},
    mem,
    node::connect_origin,
    python::python_stack,
    sockets::{fd_is_cloexec, file_kind, sock_addrs, sock_of_fd, sock_of_file},
    table::*,
};

/// The stacks of a created fd, none for a failure: a macro, as the same
/// code in an `#[inline(always)]` function costs the verifier 5-10% more
/// instructions in every program using it (measured: `sys_exit_openat`
/// 53,049 → 58,073).
macro_rules! stacks {
    ($ev:expr, $site:expr, $stack:expr, $pid_tgid:expr, $ret:expr) => {
        if $ret >= 0 {
            $ev.stack_id = user_stack($site.ctx, $stack, $pid_tgid);
            $ev.caller_ip = $site.regs.caller_ip();
            $ev.py_stack = python_stack($stack, $pid_tgid);
        } else {
            $ev.stack_id = STACK_NOT_CAPTURED;
            $ev.caller_ip = 0;
            $ev.py_stack = 0;
        }
    };
}

/// Where a record is made: the program's context (for stacks), the thread,
/// its process's `target` flags and its user registers.
pub struct Site<'a, C> {
    pub ctx: &'a C,
    pub pid_tgid: u64,
    pub target: u32,
    pub regs: &'a UserRegs,
}

/// An fd being installed: `fd_install(fd, file)`; `file` 0 when the
/// record is a syscall exit's.
#[derive(Clone, Copy)]
pub struct Install {
    pub fd: i32,
    pub file: u64,
}

impl Install {
    pub const NONE: Install = Install { fd: -1, file: 0 };

    fn is_some(&self) -> bool {
        self.file != 0
    }
}

/// Reports one fd installed by `fd_install` (called inside the syscall;
/// `ret` is the fd), or fcntl's F_DUPFD at its exit (`install` is
/// [`Install::NONE`]): every other syscall's exit is
/// [`report_created`]'s. In pairing mode the fd is kept in the kernel
/// instead, where it can be ([`keep`]).
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "the scratch slots are separate borrows by design")]
pub fn report_open<C: StackIdContext>(
    site: &Site<'_, C>,
    event: &mut EventSlot,
    stack: &mut StackSlot,
    kept: &mut KeptSlot,
    nr: u32,
    ret: i64,
    entry: &Args,
    install: Install,
) -> Result<(), Loss> {
    let pid_tgid = site.pid_tgid;
    // A non-blocking accept finding nothing is routine, not an event.
    if ret == -EAGAIN {
        return Ok(());
    }
    let syscall = match syscall_of(nr) {
        Some(s) => s,
        // fd_install from a path with no fd-creating syscall of its own.
        None if install.is_some() => {
            aya_log_ebpf::debug!(
                &(),
                "fd {} installed by syscall {}, which fdtrace does not know: reported as \"other\"",
                install.fd,
                nr
            );
            Syscall::Other
        }
        None => return Ok(()),
    };
    let ev: &mut FdOpen = event.get()?;
    begin(ev, site, syscall, ret);

    if !entry.known {
        ev.fd_flags |= fd_flags::MISSED_ENTRY;
    }
    let args = entry.args;
    // What each syscall's arguments tell: (raw flags, path pointer).
    let mut path_ptr = 0u64;
    match nr {
        NR_SOCKET | NR_SOCKETPAIR => {
            ev.family = args[0] as u16;
            ev.sock_type = (args[1] & SOCK_TYPE_MASK) as u16;
            ev.protocol = args[2] as u16;
            ev.flags = args[1];
        }
        NR_ACCEPT | NR_ACCEPT4 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_ACCEPT4 {
                ev.flags = args[3];
            }
        }
        NR_OPEN => {
            path_ptr = args[0];
            ev.flags = args[1];
        }
        NR_OPENAT => {
            path_ptr = args[1];
            ev.flags = args[2];
        }
        NR_OPENAT2 => {
            path_ptr = args[1];
            // struct open_how starts with the u64 flags.
            ev.flags = mem::user::<u64>(args[2]).unwrap_or(0);
        }
        NR_CREAT => {
            path_ptr = args[0];
            ev.flags = O_CREAT | O_WRONLY | O_TRUNC;
        }
        NR_OPEN_BY_HANDLE_AT => ev.flags = args[2],
        NR_MEMFD_CREATE => {
            path_ptr = args[0];
            ev.flags = args[1];
        }
        // Each install is one fd of the pair.
        NR_PIPE2 => ev.flags = args[1],
        NR_DUP | NR_DUP2 | NR_DUP3 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_DUP3 {
                ev.flags = args[2];
            }
        }
        NR_FCNTL => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            ev.flags = args[1];
        }
        NR_SIGNALFD | NR_SIGNALFD4 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_SIGNALFD4 {
                ev.flags = args[3];
            }
            // signalfd on an existing signalfd updates it in place.
            if ev.src_fd >= 0 {
                ev.fd_flags |= fd_flags::REUSED_FD;
            }
        }
        NR_PIDFD_GETFD => {
            ev.src_fd = if entry.known { args[1] as i32 } else { -1 };
            ev.flags = args[2];
        }
        NR_EVENTFD2 | NR_TIMERFD_CREATE | NR_PIDFD_OPEN => ev.flags = args[1],
        NR_EPOLL_CREATE1 | NR_INOTIFY_INIT1 | NR_FANOTIFY_INIT | NR_USERFAULTFD | NR_MEMFD_SECRET => {
            ev.flags = args[0]
        }
        NR_PERF_EVENT_OPEN => ev.flags = args[4],
        // The flags say MSG_CMSG_CLOEXEC.
        NR_RECVMSG => ev.flags = args[2],
        NR_RECVMMSG => ev.flags = args[3],
        _ => {}
    }
    if install.is_some() {
        // What the fd table says, whatever the path.
        if fd_is_cloexec(install.fd) {
            ev.fd_flags |= fd_flags::CLOEXEC;
        }
        ev.kind_hint = file_kind(install.file);
    } else if syscall.new_fd_cloexec(ev.flags) {
        ev.fd_flags |= fd_flags::CLOEXEC;
    }
    // Sockets: the kernel's addresses, exact even for accept without an
    // address buffer (a dup's come from its source).
    let sock = if install.is_some() { sock_of_file(install.file) } else { None };
    if let Some(sk) = sock {
        ev.sk = sk;
        sock_addrs(sk, &mut ev.local, &mut ev.remote);
    }
    stacks!(ev, site, stack, pid_tgid, ret);
    if keep::open(ev, site.target, kept) == Opened::Handled {
        return Ok(());
    }
    // Going through the ring: what only the record carries.
    if ev.sk != 0 {
        track_sock(ev.sk, (pid_tgid >> 32) as u32, ev.fd);
    }
    if path_ptr != 0 && entry.known {
        let (n, f) = read_user_str(path_ptr, &mut ev.path);
        ev.path_len = n;
        ev.fd_flags |= f;
    }
    let path_len = ev.path_len as usize;
    event.send(size_of::<FdOpen>() - PATH_CAP, path_len)
}

/// Reports the exit of an [`Exit::Created`] syscall (`nr` read from the
/// tracepoint): the fd(s) it made, from what its row says its arguments
/// hold. What differs by syscall is written into the record, and the few
/// decisions left ([`Made`]) are taken once each, so the verifier walks
/// the rest once for all of them.
///
/// [`Exit::Created`]: fdtrace_common::syscall::Exit::Created
#[inline(always)]
pub fn report_created<C: StackIdContext>(
    site: &Site<'_, C>,
    event: &mut EventSlot,
    stack: &mut StackSlot,
    kept: &mut KeptSlot,
    nr: u32,
    ret: i64,
    entry: &Args,
) -> Result<(), Loss> {
    // A non-blocking accept finding nothing is routine, not an event.
    if ret == -EAGAIN {
        return Ok(());
    }
    let ev: &mut FdOpen = event.get()?;
    begin(ev, site, Syscall::Other, ret);
    let Some(made) = created(nr, entry, ret, site.pid_tgid, ev) else {
        return Ok(());
    };
    if !entry.known {
        ev.fd_flags |= fd_flags::MISSED_ENTRY;
    }
    // Sockets: the kernel's addresses, exact even for accept without an
    // address buffer.
    if made.socket {
        if let Some(sk) = sock_of_fd(ret as i32) {
            ev.sk = sk;
            sock_addrs(sk, &mut ev.local, &mut ev.remote);
        }
    }
    stacks!(ev, site, stack, site.pid_tgid, ret);
    if keep::open(ev, site.target, kept) == Opened::Handled {
        return Ok(());
    }
    // Going through the ring: what only the record carries.
    if ev.sk != 0 {
        track_sock(ev.sk, (site.pid_tgid >> 32) as u32, ev.fd);
    }
    // accept's address argument (the length is value-result: readable
    // after the call): a Unix peer's path; the kernel's view, read above,
    // wins for IPv4/IPv6.
    if made.peer != 0 && made.peer_len != 0 {
        let len = mem::user::<u32>(made.peer_len).unwrap_or(0);
        let mut arg = fdtrace_common::SockAddr::default();
        let (n, f) = read_sockaddr(made.peer, u64::from(len), &mut arg, &mut ev.path);
        if ev.remote.family == 0 {
            ev.remote = arg;
        }
        ev.path_len = n;
        ev.fd_flags |= f;
    }
    if made.path != 0 {
        let (n, f) = read_user_str(made.path, &mut ev.path);
        ev.path_len = n;
        ev.fd_flags |= f;
    }
    let path_len = ev.path_len as usize;
    event.send(size_of::<FdOpen>() - PATH_CAP, path_len)
}

/// What is left to do for a created fd once its record is filled in: the
/// user pointers to read (0: none) and whether the fd is a socket.
pub struct Made {
    pub path: u64,
    pub peer: u64,
    pub peer_len: u64,
    pub socket: bool,
}

/// What the arguments of a constant `syscall` tell (the generated
/// [`created`](crate::table::created) has one call per syscall): the
/// record's syscall, flags, close-on-exec bit, socket triple, source fd
/// and pair of fds; and what is left to read.
#[inline(always)]
pub fn fill_created(syscall: Syscall, entry: &Args, ret: i64, pid_tgid: u64, ev: &mut FdOpen) -> Made {
    let args = &entry.args;
    let flags = match syscall.flags() {
        Flags::None => 0,
        Flags::Arg(i) => args[i],
        Flags::FirstOfStruct(i) => mem::user::<u64>(args[i]).unwrap_or(0),
        Flags::Const(v) => v,
    };
    ev.syscall = syscall as u16;
    ev.flags = flags;
    if syscall.new_fd_cloexec(flags) {
        ev.fd_flags |= fd_flags::CLOEXEC;
    }
    if syscall.socket_args() {
        ev.family = args[0] as u16;
        ev.sock_type = (args[1] & SOCK_TYPE_MASK) as u16;
        ev.protocol = args[2] as u16;
    }
    // Node's connect from the tick queue: the code that asked for it.
    if syscall as u16 == Syscall::Socket as u16 && ev.go_spawn_stack == STACK_NOT_CAPTURED {
        (ev.go_spawn_stack, ev.go_spawn_pc) = connect_origin(pid_tgid);
    }
    if let Some(i) = syscall.src_arg() {
        ev.src_fd = if entry.known { args[i] as i32 } else { -1 };
        // signalfd on an existing signalfd updates it in place.
        if matches!(syscall, Syscall::Signalfd | Syscall::Signalfd4) && ev.src_fd >= 0 {
            ev.fd_flags |= fd_flags::REUSED_FD;
        }
    }
    if let Some(i) = syscall.pair_arg() {
        // At exit the pair is in user memory.
        ev.fd = -1;
        if ret == 0 && entry.known {
            match read_fd_pair(args[i]) {
                Some((a, b)) => {
                    ev.fd = a;
                    ev.fd2 = b;
                }
                None => ev.fd_flags |= fd_flags::READ_FAILED,
            }
        }
    }
    let read = |i: Option<usize>| match i {
        Some(i) if entry.known && ret >= 0 => args[i],
        _ => 0,
    };
    let peer = syscall.peer_args();
    Made {
        path: match syscall.path_arg() {
            Some(i) if entry.known => args[i],
            _ => 0,
        },
        peer: read(peer.map(|p| p.0)),
        peer_len: read(peer.map(|p| p.1)),
        socket: syscall.returns_socket() && ret >= 0,
    }
}

/// Starts an `FdOpen` record: every field written, those the syscall's
/// arguments and the installed file fill in zeroed (or -1).
#[inline(always)]
pub fn begin<C>(ev: &mut FdOpen, site: &Site<'_, C>, syscall: Syscall, ret: i64) {
    ev.header = header(EventKind::FdOpen, site.pid_tgid);
    ev.syscall = syscall as u16;
    ev.family = 0;
    ev.sock_type = 0;
    ev.protocol = 0;
    ev.fd = if ret >= 0 { ret as i32 } else { -1 };
    ev.fd2 = -1;
    ev.src_fd = -1;
    ev.fd_flags = 0;
    ev.ret = ret;
    ev.flags = 0;
    ev.kind_hint = kind_hint::UNKNOWN;
    ev._pad = 0;
    ev.local = Default::default();
    ev.remote = Default::default();
    ev.sk = 0;
    ev._pad3 = 0;
    ev.py_stack = 0;
    (ev.go_spawn_stack, ev.go_spawn_pc, ev.go_transport) =
        goroutine_origin((site.pid_tgid >> 32) as u32, site.regs);
    if ev.go_spawn_stack == STACK_NOT_CAPTURED && syscall == Syscall::Socket {
        (ev.go_spawn_stack, ev.go_spawn_pc) = connect_origin(site.pid_tgid);
    }
    ev.path_len = 0;
    ev._pad2 = [0; 6];
}
