//! Tracepoint tier: two programs shared by every `syscalls:sys_enter_*` and
//! `syscalls:sys_exit_*` tracepoint fdtrace attaches to. They dispatch on
//! the syscall number in the record.
//!
//! Ordering: fds are *removed* while `close`/`close_range` run and
//! *installed* while an fd-creating syscall runs. Removals are reported at
//! entry and installs at exit, so in the single ring buffer a removal always
//! precedes a reuse of the same number by another thread — the ledger never
//! sees "open 5" before the "close 5" that freed it.
//!
//! Missed entries: a syscall already running when fdtrace attached (a
//! blocked `accept`) reaches the exit hook without stashed arguments. For
//! fd-creating calls the new fd is still reported, flagged `MISSED_ENTRY`,
//! with what the return value alone tells.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext as _,
};
use fdtrace_common::{
    fd_flags,
    syscall::consts::{
        EAGAIN, FD_CLOEXEC, FIOCLEX, FIONCLEX, F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD, O_CREAT, O_TRUNC, O_WRONLY,
        SOCK_TYPE_MASK,
    },
    Close, CloseRange, EventKind, FdOpen, Inflight, Loss, SetCloexec, SockAddrEvent, SockOp, Syscall,
    PATH_CAP,
};

use crate::{
    emit::{
        count, header, is_traced, read_fd_pair, read_sockaddr, read_user_str, scratch, send, send_scratch,
        user_stack, UserRegs,
    },
    maps::INFLIGHT,
    sockets::socket_addrs,
};

/// Record layout of every `sys_enter_*` tracepoint: `__syscall_nr` at 8,
/// then one 8-byte slot per argument. The loader checks each tracepoint's
/// format file against these before attaching.
const ENTER_NR_OFF: usize = 8;
const ENTER_ARGS_OFF: usize = 16;
/// `sys_exit_*`: `__syscall_nr` at 8, `ret` at 16.
const EXIT_NR_OFF: usize = 8;
const EXIT_RET_OFF: usize = 16;

macro_rules! nr {
    ($($name:ident = $sc:ident),* $(,)?) => {
        $(const $name: u32 = Syscall::$sc.nr();)*
    };
}
nr! {
    NR_SOCKET = Socket, NR_SOCKETPAIR = Socketpair, NR_ACCEPT = Accept, NR_ACCEPT4 = Accept4,
    NR_CONNECT = Connect, NR_BIND = Bind, NR_LISTEN = Listen,
    NR_OPEN = Open, NR_OPENAT = Openat, NR_OPENAT2 = Openat2, NR_CREAT = Creat,
    NR_OPEN_BY_HANDLE_AT = OpenByHandleAt, NR_MEMFD_CREATE = MemfdCreate,
    NR_MEMFD_SECRET = MemfdSecret, NR_PIPE = Pipe, NR_PIPE2 = Pipe2,
    NR_DUP = Dup, NR_DUP2 = Dup2, NR_DUP3 = Dup3, NR_FCNTL = Fcntl, NR_IOCTL = Ioctl,
    NR_EVENTFD = Eventfd, NR_EVENTFD2 = Eventfd2, NR_EPOLL_CREATE = EpollCreate,
    NR_EPOLL_CREATE1 = EpollCreate1, NR_TIMERFD_CREATE = TimerfdCreate,
    NR_SIGNALFD = Signalfd, NR_SIGNALFD4 = Signalfd4, NR_INOTIFY_INIT = InotifyInit,
    NR_INOTIFY_INIT1 = InotifyInit1, NR_FANOTIFY_INIT = FanotifyInit,
    NR_PIDFD_OPEN = PidfdOpen, NR_PIDFD_GETFD = PidfdGetfd, NR_USERFAULTFD = Userfaultfd,
    NR_PERF_EVENT_OPEN = PerfEventOpen, NR_IO_URING_SETUP = IoUringSetup,
    NR_CLOSE = Close, NR_CLOSE_RANGE = CloseRange,
}

/// Reads a field of the tracepoint record at a constant offset.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: direct context access at an offset inside the record; the
    // verifier checks it.
    unsafe { *(ctx.as_ptr() as *const u8).add(off).cast::<T>() }
}

/// The enter program reads exactly as many arguments as the tracepoint has:
/// the kernel refuses to attach a program whose context reads go past a
/// record's end, so there is one program per arity (`sys_enter_0`..`_6`),
/// and the loader picks by each tracepoint's format.
macro_rules! enter_programs {
    ($($name:ident = $n:literal),*) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            let mut args = [0u64; 6];
            let mut i = 0;
            #[allow(unused_comparisons)]
            while i < $n {
                args[i] = field::<u64>(&ctx, ENTER_ARGS_OFF + 8 * i);
                i += 1;
            }
            sys_enter(&ctx, &args);
            0
        }
    )*};
}
enter_programs!(
    sys_enter_0 = 0,
    sys_enter_1 = 1,
    sys_enter_2 = 2,
    sys_enter_3 = 3,
    sys_enter_4 = 4,
    sys_enter_5 = 5,
    sys_enter_6 = 6
);

#[inline(always)]
fn sys_enter(ctx: &TracePointContext, args: &[u64; 6]) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let nr = field::<i32>(ctx, ENTER_NR_OFF) as u32;
    let arg = |i: usize| args[i];
    match nr {
        NR_CLOSE => send(Close { header: header(EventKind::Close, pid_tgid), fd: arg(0) as i32, _pad: 0 }),
        NR_CLOSE_RANGE => send(CloseRange {
            header: header(EventKind::CloseRange, pid_tgid),
            first: arg(0) as u32,
            last: arg(1) as u32,
            flags: arg(2) as u32,
            _pad: 0,
        }),
        NR_FCNTL => match arg(1) {
            F_SETFD => send(SetCloexec {
                header: header(EventKind::SetCloexec, pid_tgid),
                fd: arg(0) as i32,
                cloexec: (arg(2) & FD_CLOEXEC) as u32,
            }),
            F_DUPFD | F_DUPFD_CLOEXEC => stash(pid_tgid, nr, &arg),
            _ => {}
        },
        NR_IOCTL => match arg(1) & 0xffff_ffff {
            FIOCLEX | FIONCLEX => send(SetCloexec {
                header: header(EventKind::SetCloexec, pid_tgid),
                fd: arg(0) as i32,
                cloexec: u32::from(arg(1) & 0xffff_ffff == FIOCLEX),
            }),
            _ => {}
        },
        _ => stash(pid_tgid, nr, &arg),
    }
}

#[inline(always)]
fn stash(pid_tgid: u64, nr: u32, arg: &impl Fn(usize) -> u64) {
    let entry = Inflight { nr, _pad: 0, args: [arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)] };
    if INFLIGHT.insert(&(pid_tgid as u32), &entry, 0).is_err() {
        count(Loss::InflightFull);
    }
}

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let nr = field::<i32>(&ctx, EXIT_NR_OFF) as u32;
    let ret = field::<i64>(&ctx, EXIT_RET_OFF);
    let regs = UserRegs::read();
    let entry = match regs {
        // Linux 5.15+: the arguments are still in the user registers.
        Some(r) => {
            let args = r.args();
            if !exit_control(pid_tgid, nr, ret, &args) {
                return 0;
            }
            Some(Inflight { nr, _pad: 0, args })
        }
        None => {
            let tid = pid_tgid as u32;
            // SAFETY: copied out before the entry is removed.
            let entry = unsafe { INFLIGHT.get(&tid) }.copied();
            let _ = INFLIGHT.remove(&tid);
            match entry {
                Some(e) if e.nr == nr => Some(e),
                // fcntl's entry only stashes the commands that create fds:
                // any other fcntl arrives here without one, and is not an
                // event.
                _ if nr == NR_FCNTL => return 0,
                _ => {
                    count(Loss::MissedEntry);
                    None
                }
            }
        }
    };
    match nr {
        NR_CONNECT => sock_addr(pid_tgid, SockOp::Connect, ret, entry),
        NR_BIND => sock_addr(pid_tgid, SockOp::Bind, ret, entry),
        NR_LISTEN => sock_addr(pid_tgid, SockOp::Listen, ret, entry),
        _ => fd_open(&ctx, pid_tgid, nr, ret, entry, regs),
    }
    0
}

/// fcntl and ioctl at exit (when their arguments come from the registers):
/// reports close-on-exec changes, and says whether the call is an fd
/// creation to report (fcntl's F_DUPFD*). Everything else is not.
#[inline(always)]
fn exit_control(pid_tgid: u64, nr: u32, ret: i64, args: &[u64; 6]) -> bool {
    let cloexec = match (nr, args[1]) {
        (NR_FCNTL, F_DUPFD | F_DUPFD_CLOEXEC) => return true,
        (NR_FCNTL, F_SETFD) => args[2] & FD_CLOEXEC != 0,
        (NR_IOCTL, cmd) if cmd & 0xffff_ffff == FIOCLEX => true,
        (NR_IOCTL, cmd) if cmd & 0xffff_ffff == FIONCLEX => false,
        (NR_FCNTL | NR_IOCTL, _) => return false,
        _ => return true,
    };
    if ret == 0 {
        send(SetCloexec {
            header: header(EventKind::SetCloexec, pid_tgid),
            fd: args[0] as i32,
            cloexec: u32::from(cloexec),
        });
    }
    false
}

/// Reports an fd-creating syscall's result.
#[inline(always)]
fn fd_open(
    ctx: &TracePointContext,
    pid_tgid: u64,
    nr: u32,
    ret: i64,
    entry: Option<Inflight>,
    regs: Option<UserRegs>,
) {
    // A non-blocking accept finding nothing is routine, not an event.
    if ret == -EAGAIN {
        return;
    }
    let Some(syscall) = syscall_of(nr) else {
        return;
    };
    let Some(ev) = scratch::<FdOpen>() else {
        return;
    };
    ev.header = header(EventKind::FdOpen, pid_tgid);
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
    ev._pad = 0;
    ev.local = Default::default();
    ev.remote = Default::default();
    ev.path_len = 0;
    ev._pad2 = [0; 6];

    let args = match entry {
        Some(e) => e.args,
        None => {
            ev.fd_flags |= fd_flags::MISSED_ENTRY;
            [0; 6]
        }
    };
    // What each syscall's arguments tell: (raw flags, path pointer).
    let mut path_ptr = 0u64;
    match nr {
        NR_SOCKET | NR_SOCKETPAIR => {
            ev.family = args[0] as u16;
            ev.sock_type = (args[1] & SOCK_TYPE_MASK) as u16;
            ev.protocol = args[2] as u16;
            ev.flags = args[1];
            if nr == NR_SOCKETPAIR {
                ev.fd = -1;
                if ret == 0 && entry.is_some() {
                    match read_fd_pair(args[3]) {
                        Some((a, b)) => {
                            ev.fd = a;
                            ev.fd2 = b;
                        }
                        None => ev.fd_flags |= fd_flags::READ_FAILED,
                    }
                }
            }
        }
        NR_ACCEPT | NR_ACCEPT4 => {
            ev.src_fd = if entry.is_some() { args[0] as i32 } else { -1 };
            if nr == NR_ACCEPT4 {
                ev.flags = args[3];
            }
            if ret >= 0 && args[1] != 0 && args[2] != 0 {
                // The address length is value-result: read what the kernel
                // wrote back.
                // SAFETY: user read through the checked helper.
                let len = unsafe { bpf_probe_read_user(args[2] as *const u32) }.unwrap_or(0);
                let (n, f) = read_sockaddr(args[1], u64::from(len), &mut ev.remote, &mut ev.path);
                ev.path_len = n;
                ev.fd_flags |= f;
            }
            // The kernel's view is exact even when the caller passed no
            // address buffer.
            if ret >= 0 {
                let (local, remote) = socket_addrs(ret as i32);
                if local.family != 0 {
                    ev.local = local;
                }
                if remote.family != 0 {
                    ev.remote = remote;
                }
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
            if args[2] != 0 {
                // SAFETY: user read through the checked helper.
                ev.flags = unsafe { bpf_probe_read_user(args[2] as *const u64) }.unwrap_or(0);
            }
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
        NR_PIPE | NR_PIPE2 => {
            ev.fd = -1;
            if nr == NR_PIPE2 {
                ev.flags = args[1];
            }
            if ret == 0 && entry.is_some() {
                match read_fd_pair(args[0]) {
                    Some((a, b)) => {
                        ev.fd = a;
                        ev.fd2 = b;
                    }
                    None => ev.fd_flags |= fd_flags::READ_FAILED,
                }
            }
        }
        NR_DUP | NR_DUP2 | NR_DUP3 => {
            ev.src_fd = if entry.is_some() { args[0] as i32 } else { -1 };
            if nr == NR_DUP3 {
                ev.flags = args[2];
            }
        }
        NR_FCNTL => {
            ev.src_fd = if entry.is_some() { args[0] as i32 } else { -1 };
            ev.flags = args[1];
        }
        NR_SIGNALFD | NR_SIGNALFD4 => {
            ev.src_fd = if entry.is_some() { args[0] as i32 } else { -1 };
            if nr == NR_SIGNALFD4 {
                ev.flags = args[3];
            }
            // signalfd on an existing signalfd updates it in place.
            if ev.src_fd >= 0 {
                ev.fd_flags |= fd_flags::REUSED_FD;
            }
        }
        NR_PIDFD_GETFD => {
            ev.src_fd = if entry.is_some() { args[1] as i32 } else { -1 };
            ev.flags = args[2];
        }
        NR_EVENTFD2 | NR_TIMERFD_CREATE => ev.flags = args[1],
        NR_EPOLL_CREATE1 | NR_INOTIFY_INIT1 | NR_FANOTIFY_INIT | NR_USERFAULTFD | NR_MEMFD_SECRET
        | NR_PIDFD_OPEN => ev.flags = args[0],
        NR_PERF_EVENT_OPEN => ev.flags = args[4],
        _ => {}
    }
    if syscall.new_fd_cloexec(ev.flags) {
        ev.fd_flags |= fd_flags::CLOEXEC;
    }
    if path_ptr != 0 && entry.is_some() {
        let (n, f) = read_user_str(path_ptr, &mut ev.path);
        ev.path_len = n;
        ev.fd_flags |= f;
    }
    if ret >= 0 {
        ev.stack_id = user_stack(ctx, pid_tgid);
        ev.caller_ip = regs.map_or(0, |r| r.caller_ip());
    } else {
        ev.stack_id = crate::emit::STACK_NOT_CAPTURED;
        ev.caller_ip = 0;
    }
    let path_len = ev.path_len as usize;
    send_scratch(size_of::<FdOpen>() - PATH_CAP, path_len);
}

/// Reports connect/bind/listen.
#[inline(always)]
fn sock_addr(pid_tgid: u64, op: SockOp, ret: i64, entry: Option<Inflight>) {
    let Some(ev) = scratch::<SockAddrEvent>() else {
        return;
    };
    ev.header = header(EventKind::SockAddr, pid_tgid);
    ev.op = op as u16;
    ev._pad = 0;
    ev.ret = ret;
    ev.flags = 0;
    ev._pad1 = 0;
    ev.addr = Default::default();
    ev.local = Default::default();
    ev.remote = Default::default();
    ev.path_len = 0;
    ev._pad2 = [0; 6];
    match entry {
        Some(e) => {
            ev.fd = e.args[0] as i32;
            if op != SockOp::Listen {
                let (n, f) = read_sockaddr(e.args[1], e.args[2], &mut ev.addr, &mut ev.path);
                ev.path_len = n;
                ev.flags |= f;
            }
            (ev.local, ev.remote) = socket_addrs(ev.fd);
        }
        None => {
            // Without the entry the fd is unknown: nothing to report.
            return;
        }
    }
    let path_len = ev.path_len as usize;
    send_scratch(size_of::<SockAddrEvent>() - PATH_CAP, path_len);
}

#[inline(always)]
fn syscall_of(nr: u32) -> Option<Syscall> {
    Some(match nr {
        NR_SOCKET => Syscall::Socket,
        NR_SOCKETPAIR => Syscall::Socketpair,
        NR_ACCEPT => Syscall::Accept,
        NR_ACCEPT4 => Syscall::Accept4,
        NR_OPEN => Syscall::Open,
        NR_OPENAT => Syscall::Openat,
        NR_OPENAT2 => Syscall::Openat2,
        NR_CREAT => Syscall::Creat,
        NR_OPEN_BY_HANDLE_AT => Syscall::OpenByHandleAt,
        NR_MEMFD_CREATE => Syscall::MemfdCreate,
        NR_MEMFD_SECRET => Syscall::MemfdSecret,
        NR_PIPE => Syscall::Pipe,
        NR_PIPE2 => Syscall::Pipe2,
        NR_DUP => Syscall::Dup,
        NR_DUP2 => Syscall::Dup2,
        NR_DUP3 => Syscall::Dup3,
        NR_FCNTL => Syscall::Fcntl,
        NR_EVENTFD => Syscall::Eventfd,
        NR_EVENTFD2 => Syscall::Eventfd2,
        NR_EPOLL_CREATE => Syscall::EpollCreate,
        NR_EPOLL_CREATE1 => Syscall::EpollCreate1,
        NR_TIMERFD_CREATE => Syscall::TimerfdCreate,
        NR_SIGNALFD => Syscall::Signalfd,
        NR_SIGNALFD4 => Syscall::Signalfd4,
        NR_INOTIFY_INIT => Syscall::InotifyInit,
        NR_INOTIFY_INIT1 => Syscall::InotifyInit1,
        NR_FANOTIFY_INIT => Syscall::FanotifyInit,
        NR_PIDFD_OPEN => Syscall::PidfdOpen,
        NR_PIDFD_GETFD => Syscall::PidfdGetfd,
        NR_USERFAULTFD => Syscall::Userfaultfd,
        NR_PERF_EVENT_OPEN => Syscall::PerfEventOpen,
        NR_IO_URING_SETUP => Syscall::IoUringSetup,
        _ => return None,
    })
}
