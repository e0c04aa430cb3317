//! Syscall tracepoints: one exit program per syscall; entry programs for
//! close and close_range, and, on kernels without `bpf_task_pt_regs`, one
//! per arity that stashes the arguments for the exit.
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
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext, EbpfContext as _,
};
use fdtrace_common::{
    config_flags,
    syscall::consts::{
        CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE, FD_CLOEXEC, FIOCLEX, FIONCLEX, F_DUPFD, F_DUPFD_CLOEXEC,
        F_SETFD,
    },
    Close, CloseRange, EventKind, Inflight, Loss, SetCloexec, SockAddrEvent, SockOp, PATH_CAP,
};

use crate::{
    emit::{
        count, header, install_hooked, is_traced, read_sockaddr, scratch, send, send_scratch, track_sock,
        Args, UserRegs,
    },
    fdopen::*,
    maps::{config, INFLIGHT},
    sockets::{sock_addrs, sock_of_fd},
};

/// Record layout of every `sys_enter_*` tracepoint: `__syscall_nr` at 8,
/// then one 8-byte slot per argument. The loader checks each tracepoint's
/// format file against these before attaching.
const ENTER_NR_OFF: usize = 8;
const ENTER_ARGS_OFF: usize = 16;
/// `sys_exit_*`: `__syscall_nr` at 8, `ret` at 16.
const EXIT_RET_OFF: usize = 16;

/// Reads a field of the tracepoint record at a constant offset.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: direct context access at an offset inside the record; the
    // verifier checks it.
    unsafe { *(ctx.as_ptr() as *const u8).add(off).cast::<T>() }
}

/// The stashing entry programs (kernels before 5.15) read exactly as many
/// arguments as the tracepoint has:
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

/// `close(fd)`: reported at entry (see the module comment on ordering).
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_traced((pid_tgid >> 32) as u32) {
        let fd = field::<u64>(&ctx, ENTER_ARGS_OFF) as i32;
        send(Close { header: header(EventKind::Close, pid_tgid), fd, _pad: 0 });
    }
    0
}

/// `close_range(first, last, flags)`: the closing form is reported at
/// entry. `CLOSE_RANGE_CLOEXEC` closes nothing, only marks, and kernels
/// before 5.11 refuse it (EINVAL): that form is reported at exit, and only
/// when it succeeded. Flags the kernel does not know fail the call, which
/// then closes nothing: not reported.
#[tracepoint]
pub fn sys_enter_close_range(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_traced((pid_tgid >> 32) as u32) {
        let arg = |i: usize| field::<u64>(&ctx, ENTER_ARGS_OFF + 8 * i);
        // The arguments are `unsigned int`: the upper half of the
        // registers is not theirs.
        let flags = arg(2) as u32;
        if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 {
            return 0;
        }
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            if config!(flags) & config_flags::HAVE_TASK_PT_REGS == 0 {
                // Only the record's three arguments: the kernel refuses to
                // attach a program that reads past a record's end.
                let three = [arg(0), arg(1), u64::from(flags)];
                stash(pid_tgid, NR_CLOSE_RANGE, &|i| three.get(i).copied().unwrap_or(0));
            }
            return 0;
        }
        send(CloseRange {
            header: header(EventKind::CloseRange, pid_tgid),
            first: arg(0) as u32,
            last: arg(1) as u32,
            flags,
            _pad: 0,
        });
    }
    0
}

/// `close_range(.., CLOSE_RANGE_CLOEXEC)` that succeeded (see the entry).
#[tracepoint]
pub fn sys_exit_close_range(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let ret = field::<i64>(&ctx, EXIT_RET_OFF);
    let args = if config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
        match UserRegs::read() {
            Some(regs) if regs.ok => regs.args(),
            _ => return 0,
        }
    } else {
        let tid = pid_tgid as u32;
        // SAFETY: copied out before the entry is removed.
        let stashed = unsafe { INFLIGHT.get(&tid) }.copied();
        match stashed {
            Some(e) if e.nr == NR_CLOSE_RANGE => {
                let _ = INFLIGHT.remove(&tid);
                e.args
            }
            // Only the marking form stashes: nothing to do for the others.
            _ => return 0,
        }
    };
    if ret == 0 && (args[2] as u32) & CLOSE_RANGE_CLOEXEC != 0 {
        send(CloseRange {
            header: header(EventKind::CloseRange, pid_tgid),
            first: args[0] as u32,
            last: args[1] as u32,
            flags: args[2] as u32,
            _pad: 0,
        });
    }
    0
}

/// One exit program per syscall, the number a constant: each holds only
/// its own syscall's code, which keeps them small for the verifier (older
/// kernels verify slowly) and leaves no dispatch at run time.
macro_rules! exit_programs {
    ($($name:ident = $nr:ident),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            sys_exit::<{ $nr }>(&ctx)
        }
    )*};
}
exit_programs!(
    sys_exit_socket = NR_SOCKET,
    sys_exit_socketpair = NR_SOCKETPAIR,
    sys_exit_accept = NR_ACCEPT,
    sys_exit_accept4 = NR_ACCEPT4,
    sys_exit_connect = NR_CONNECT,
    sys_exit_bind = NR_BIND,
    sys_exit_listen = NR_LISTEN,
    sys_exit_open = NR_OPEN,
    sys_exit_openat = NR_OPENAT,
    sys_exit_openat2 = NR_OPENAT2,
    sys_exit_creat = NR_CREAT,
    sys_exit_open_by_handle_at = NR_OPEN_BY_HANDLE_AT,
    sys_exit_memfd_create = NR_MEMFD_CREATE,
    sys_exit_memfd_secret = NR_MEMFD_SECRET,
    sys_exit_pipe = NR_PIPE,
    sys_exit_pipe2 = NR_PIPE2,
    sys_exit_dup = NR_DUP,
    sys_exit_dup2 = NR_DUP2,
    sys_exit_dup3 = NR_DUP3,
    sys_exit_fcntl = NR_FCNTL,
    sys_exit_ioctl = NR_IOCTL,
    sys_exit_eventfd = NR_EVENTFD,
    sys_exit_eventfd2 = NR_EVENTFD2,
    sys_exit_epoll_create = NR_EPOLL_CREATE,
    sys_exit_epoll_create1 = NR_EPOLL_CREATE1,
    sys_exit_timerfd_create = NR_TIMERFD_CREATE,
    sys_exit_signalfd = NR_SIGNALFD,
    sys_exit_signalfd4 = NR_SIGNALFD4,
    sys_exit_inotify_init = NR_INOTIFY_INIT,
    sys_exit_inotify_init1 = NR_INOTIFY_INIT1,
    sys_exit_fanotify_init = NR_FANOTIFY_INIT,
    sys_exit_pidfd_open = NR_PIDFD_OPEN,
    sys_exit_pidfd_getfd = NR_PIDFD_GETFD,
    sys_exit_userfaultfd = NR_USERFAULTFD,
    sys_exit_perf_event_open = NR_PERF_EVENT_OPEN,
    sys_exit_io_uring_setup = NR_IO_URING_SETUP,
);

#[inline(always)]
fn sys_exit<const NR: u32>(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let nr = NR;
    let ret = field::<i64>(ctx, EXIT_RET_OFF);
    let Some(regs) = UserRegs::read() else {
        return 0;
    };
    // Where the loader hooked no entries (bpf_task_pt_regs, Linux 5.15+),
    // the arguments are still in the user registers; else in the stash.
    let entry = if regs.ok && config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
        let args = regs.args();
        if !exit_control(pid_tgid, nr, ret, &args) {
            return 0;
        }
        Args { known: true, args }
    } else {
        let tid = pid_tgid as u32;
        // SAFETY: copied out before the entry is removed.
        let stashed = unsafe { INFLIGHT.get(&tid) }.copied();
        let _ = INFLIGHT.remove(&tid);
        match stashed {
            Some(e) if e.nr == nr => Args { known: true, args: e.args },
            // fcntl's entry only stashes the commands that create fds: any
            // other fcntl arrives here without one, and is not an event.
            _ if nr == NR_FCNTL => return 0,
            _ => {
                count(Loss::MissedEntry);
                Args::UNKNOWN
            }
        }
    };
    match nr {
        NR_CONNECT => sock_addr(pid_tgid, SockOp::Connect, ret, &entry),
        NR_BIND => sock_addr(pid_tgid, SockOp::Bind, ret, &entry),
        NR_LISTEN => sock_addr(pid_tgid, SockOp::Listen, ret, &entry),
        // With fd_install hooked, installs are reported there; exits
        // only add failures, and dup2/dup3 (which replace a slot without
        // installing).
        _ if ret >= 0 && install_hooked() && !matches!(nr, NR_DUP2 | NR_DUP3) => {}
        _ => report_open(ctx, pid_tgid, nr, ret, &entry, regs, Install::NONE),
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

/// Reports connect/bind/listen.
#[inline(always)]
fn sock_addr(pid_tgid: u64, op: SockOp, ret: i64, entry: &Args) {
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
    ev.sk = 0;
    ev.path_len = 0;
    ev._pad2 = [0; 6];
    match entry.known {
        true => {
            ev.fd = entry.args[0] as i32;
            if op != SockOp::Listen {
                let (n, f) = read_sockaddr(entry.args[1], entry.args[2], &mut ev.addr, &mut ev.path);
                ev.path_len = n;
                ev.flags |= f;
            }
            if let Some(sk) = sock_of_fd(ev.fd) {
                ev.sk = sk;
                track_sock(sk, (pid_tgid >> 32) as u32);
                sock_addrs(sk, &mut ev.local, &mut ev.remote);
            }
        }
        false => {
            // Without the entry the fd is unknown: nothing to report.
            return;
        }
    }
    let path_len = ev.path_len as usize;
    send_scratch(size_of::<SockAddrEvent>() - PATH_CAP, path_len);
}
