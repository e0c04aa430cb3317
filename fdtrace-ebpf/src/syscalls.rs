//! Syscall tracepoints: one exit program per syscall and the stashing
//! entry programs, generated from the syscall table ([`crate::table`]) as
//! instances of [`try_sys_exit`] and [`try_sys_enter`]; the entry programs
//! of close and close_range and close_range's exit, written here.
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
use aya_log_ebpf::warn;
use fdtrace_common::{
    config_flags,
    syscall::consts::{
        AF_UNIX, CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE, EINPROGRESS, FD_CLOEXEC, FIOCLEX, FIONCLEX,
        F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD,
    },
    tracepoint::{sys_enter, sys_exit},
    Close, CloseRange, EventKind, Inflight, Loss, SetCloexec, SockAddrEvent, SockOp, PATH_CAP,
};

use crate::{
    emit::{
        count, finish, header, install_hooked, is_traced, read_sockaddr, send, traced, track_sock, Args,
        EventSlot, KeptSlot, Scratch,
    },
    fdopen::{report_created, report_open, Install, Site},
    keep,
    maps::{config, INFLIGHT},
    recv,
    sockets::{sock_addrs, sock_of_fd},
    table::*,
};

/// Reads a field of the tracepoint record at a constant offset (the
/// layouts in `fdtrace_common::tracepoint`, which the loader checks).
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: u32) -> T {
    // SAFETY: direct context access at an offset inside the record; the
    // verifier checks it.
    unsafe { *(ctx.as_ptr() as *const u8).add(off as usize).cast::<T>() }
}

/// The stashing entry programs (kernels before 5.15) read exactly as many
/// arguments as the tracepoint has: the kernel refuses to attach a program
/// whose context reads go past a record's end, so there is one program per
/// arity (`sys_enter_0`..`_6`, those the table uses), and the loader picks
/// by each syscall's arity in the table, checked against its format.
#[inline(always)]
pub fn try_sys_enter<const N: usize>(ctx: &TracePointContext) -> Result<(), Loss> {
    let mut args = [0u64; 6];
    let mut i = 0;
    while i < N {
        args[i] = field::<u64>(ctx, sys_enter::arg(i));
        i += 1;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(target) = traced((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    let nr = field::<i32>(ctx, sys_enter::NR.offset) as u32;
    match nr {
        NR_FCNTL => match args[1] {
            F_SETFD => set_cloexec(pid_tgid, target, args[0] as i32, args[2] & FD_CLOEXEC != 0),
            F_DUPFD | F_DUPFD_CLOEXEC => stash(pid_tgid, nr, args),
            _ => Ok(()),
        },
        NR_IOCTL => match args[1] & 0xffff_ffff {
            FIOCLEX | FIONCLEX => {
                set_cloexec(pid_tgid, target, args[0] as i32, args[1] & 0xffff_ffff == FIOCLEX)
            }
            _ => Ok(()),
        },
        _ => stash(pid_tgid, nr, args),
    }
}

/// A close-on-exec change: in the kept entry when the kernel holds the fd,
/// else a record.
#[inline(always)]
fn set_cloexec(pid_tgid: u64, target: u32, fd: i32, cloexec: bool) -> Result<(), Loss> {
    if keep::set_cloexec((pid_tgid >> 32) as u32, target, fd, cloexec) {
        return Ok(());
    }
    send(SetCloexec { header: header(EventKind::SetCloexec, pid_tgid), fd, cloexec: u32::from(cloexec) })
}

#[inline(always)]
fn stash(pid_tgid: u64, nr: u32, args: [u64; 6]) -> Result<(), Loss> {
    let tid = pid_tgid as u32;
    let entry = Inflight { nr, _pad: 0, args };
    INFLIGHT.insert(tid, entry, 0).map_err(|_| {
        warn!(&(), "in-flight table full: the arguments of syscall {} of thread {} are lost", nr, tid);
        Loss::InflightFull
    })
}

/// `close(fd)`: reported at entry (see the module comment on ordering).
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    finish(try_sys_enter_close(&ctx))
}

#[inline(always)]
fn try_sys_enter_close(ctx: &TracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let Some(target) = traced(tgid) else {
        return Ok(());
    };
    let fd = field::<u64>(ctx, sys_enter::arg(0)) as i32;
    if keep::close(tgid, target, fd) {
        return Ok(());
    }
    send(Close { header: header(EventKind::Close, pid_tgid), fd, _pad: 0 })
}

/// `close_range(first, last, flags)`: the closing form is reported at
/// entry. `CLOSE_RANGE_CLOEXEC` closes nothing, only marks, and kernels
/// before 5.11 refuse it (EINVAL): that form is reported at exit, and only
/// when it succeeded. Flags the kernel does not know fail the call, which
/// then closes nothing: not reported.
#[tracepoint]
pub fn sys_enter_close_range(ctx: TracePointContext) -> u32 {
    finish(try_sys_enter_close_range(&ctx))
}

#[inline(always)]
fn try_sys_enter_close_range(ctx: &TracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // Only the record's three arguments: the kernel refuses to attach a
    // program that reads past a record's end.
    let arg = |i: usize| field::<u64>(ctx, sys_enter::arg(i));
    // The arguments are `unsigned int`: the upper half of the registers is
    // not theirs.
    let flags = arg(2) as u32;
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 {
        return Ok(());
    }
    if flags & CLOSE_RANGE_CLOEXEC != 0 {
        if config!(flags) & config_flags::HAVE_TASK_PT_REGS == 0 {
            return stash(pid_tgid, NR_CLOSE_RANGE, [arg(0), arg(1), u64::from(flags), 0, 0, 0]);
        }
        return Ok(());
    }
    // The kept fds in the range are closed without a close each: until
    // fdtrace took them, nothing is paired.
    keep::hold((pid_tgid >> 32) as u32);
    send(CloseRange {
        header: header(EventKind::CloseRange, pid_tgid),
        first: arg(0) as u32,
        last: arg(1) as u32,
        flags,
        _pad: 0,
    })
}

/// `close_range(.., CLOSE_RANGE_CLOEXEC)` that succeeded (see the entry).
#[tracepoint]
pub fn sys_exit_close_range(ctx: TracePointContext) -> u32 {
    finish(try_sys_exit_close_range(&ctx))
}

#[inline(always)]
fn try_sys_exit_close_range(ctx: &TracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let ret = field::<i64>(ctx, sys_exit::RET.offset);
    let args = if config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
        let mut scratch = Scratch::take()?;
        match scratch.regs.read()? {
            regs if regs.ok => regs.args(),
            _ => return Ok(()),
        }
    } else {
        let tid = pid_tgid as u32;
        // SAFETY: copied out before the entry is removed.
        let stashed = unsafe { INFLIGHT.get(tid) }.copied();
        match stashed {
            Some(e) if e.nr == NR_CLOSE_RANGE => {
                let _ = INFLIGHT.remove(tid);
                e.args
            }
            // Only the marking form stashes: nothing to do for the others.
            _ => return Ok(()),
        }
    };
    if ret != 0 || (args[2] as u32) & CLOSE_RANGE_CLOEXEC == 0 {
        return Ok(());
    }
    // The kept fds in the range are marked without a change each.
    keep::hold((pid_tgid >> 32) as u32);
    send(CloseRange {
        header: header(EventKind::CloseRange, pid_tgid),
        first: args[0] as u32,
        last: args[1] as u32,
        flags: args[2] as u32,
        _pad: 0,
    })
}

/// Every generated exit program (see [`crate::table`]): `NR` is a
/// constant, so each program holds only its own syscall's code, which
/// keeps them small for the verifier (older kernels verify slowly) and
/// leaves no dispatch at run time.
#[inline(always)]
pub fn try_sys_exit<const NR: u32>(ctx: &TracePointContext) -> Result<(), Loss> {
    exit::<false>(ctx, NR)
}

/// The exit of every [`Exit::Created`] syscall, whose number it reads
/// from the record: [`report_created`].
///
/// [`Exit::Created`]: fdtrace_common::syscall::Exit::Created
#[tracepoint]
pub fn sys_exit_created(ctx: TracePointContext) -> u32 {
    let nr = field::<i32>(&ctx, sys_exit::NR.offset) as u32;
    finish(exit::<true>(&ctx, nr))
}

/// A syscall's exit: `CREATED` for the shared program of the
/// [`Exit::Created`](fdtrace_common::syscall::Exit::Created) syscalls.
#[inline(always)]
fn exit<const CREATED: bool>(ctx: &TracePointContext, nr: u32) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(target) = traced((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    let ret = field::<i64>(ctx, sys_exit::RET.offset);
    let mut scratch = Scratch::take()?;
    let s = &mut scratch;
    let regs = s.regs.read()?;
    // Where the loader hooked no entries (bpf_task_pt_regs, Linux 5.15+),
    // the arguments are still in the user registers; else in the stash.
    let entry = if regs.ok && config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
        let args = regs.args();
        if !CREATED && !exit_control(pid_tgid, target, nr, ret, &args)? {
            return Ok(());
        }
        Args { known: true, args }
    } else {
        let tid = pid_tgid as u32;
        // SAFETY: copied out before the entry is removed.
        let stashed = unsafe { INFLIGHT.get(tid) }.copied();
        let _ = INFLIGHT.remove(tid);
        match stashed {
            Some(e) if e.nr == nr => Args { known: true, args: e.args },
            // fcntl's entry only stashes the commands that create fds: any
            // other fcntl arrives here without one, and is not an event.
            _ if !CREATED && nr == NR_FCNTL => return Ok(()),
            _ => {
                count(Loss::MissedEntry);
                Args::UNKNOWN
            }
        }
    };
    let site = Site { ctx, pid_tgid, target, regs };
    if CREATED {
        // With fd_install hooked, installs are reported there; but
        // dup2/dup3, which replace a slot without installing.
        if ret >= 0 && install_hooked() && nr != NR_DUP2 && nr != NR_DUP3 {
            return Ok(());
        }
        return report_created(&site, &mut s.event, &mut s.stack, &mut s.kept, nr, ret, &entry);
    }
    match nr {
        NR_CONNECT => sock_addr(&mut s.event, &mut s.kept, pid_tgid, target, SockOp::Connect, ret, &entry),
        NR_BIND => sock_addr(&mut s.event, &mut s.kept, pid_tgid, target, SockOp::Bind, ret, &entry),
        NR_LISTEN => sock_addr(&mut s.event, &mut s.kept, pid_tgid, target, SockOp::Listen, ret, &entry),
        // With fd_install hooked, received fds are reported there (the
        // loader does not even attach these exits then).
        NR_RECVMSG | NR_RECVMMSG if install_hooked() => Ok(()),
        NR_RECVMSG | NR_RECVMMSG => {
            recv::report(&site, &mut s.event, &mut s.stack, &mut s.fds, nr, ret, &entry)
        }
        // With fd_install hooked, installs are reported there; exits
        // only add failures.
        _ if ret >= 0 && install_hooked() => Ok(()),
        _ => report_open(&site, &mut s.event, &mut s.stack, &mut s.kept, nr, ret, &entry, Install::NONE),
    }
}

/// fcntl and ioctl at exit (when their arguments come from the registers):
/// reports close-on-exec changes, and says whether the call is an fd
/// creation to report (fcntl's F_DUPFD*). Everything else is not.
#[inline(always)]
fn exit_control(pid_tgid: u64, target: u32, nr: u32, ret: i64, args: &[u64; 6]) -> Result<bool, Loss> {
    let cloexec = match (nr, args[1]) {
        (NR_FCNTL, F_DUPFD | F_DUPFD_CLOEXEC) => return Ok(true),
        (NR_FCNTL, F_SETFD) => args[2] & FD_CLOEXEC != 0,
        (NR_IOCTL, cmd) if cmd & 0xffff_ffff == FIOCLEX => true,
        (NR_IOCTL, cmd) if cmd & 0xffff_ffff == FIONCLEX => false,
        (NR_FCNTL | NR_IOCTL, _) => return Ok(false),
        _ => return Ok(true),
    };
    if ret == 0 {
        set_cloexec(pid_tgid, target, args[0] as i32, cloexec)?;
    }
    Ok(false)
}

/// Reports connect/bind/listen: in the kept entry, when the kernel holds
/// the fd and the change is one it can hold (IPv4/IPv6 addresses, listen;
/// a Unix address hands the fd to fdtrace first).
#[inline(always)]
fn sock_addr(
    event: &mut EventSlot,
    kept: &mut KeptSlot,
    pid_tgid: u64,
    target: u32,
    op: SockOp,
    ret: i64,
    entry: &Args,
) -> Result<(), Loss> {
    // Without the entry the fd is unknown: nothing to report.
    if !entry.known {
        return Ok(());
    }
    let ev: &mut SockAddrEvent = event.get()?;
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
    ev.fd = entry.args[0] as i32;
    if op != SockOp::Listen {
        let (n, f) = read_sockaddr(entry.args[1], entry.args[2], &mut ev.addr, &mut ev.path);
        ev.path_len = n;
        ev.flags |= f;
    }
    let tgid = (pid_tgid >> 32) as u32;
    if let Some(sk) = sock_of_fd(ev.fd) {
        ev.sk = sk;
        sock_addrs(sk, &mut ev.local, &mut ev.remote);
    }
    // What failed changed nothing (a non-blocking connect in progress has
    // its peer).
    let changed = ret >= 0 || (op == SockOp::Connect && ret == -EINPROGRESS);
    if keep::pairing(target) && !changed {
        return Ok(());
    }
    if ev.addr.family == AF_UNIX {
        keep::release(tgid, target, ev.fd, kept)?;
    } else if keep::sock_call(tgid, target, ev.fd, ev.sk, &ev.local, &ev.remote, op == SockOp::Listen) {
        return Ok(());
    }
    if ev.sk != 0 {
        track_sock(ev.sk, tgid, ev.fd);
    }
    let path_len = ev.path_len as usize;
    event.send(size_of::<SockAddrEvent>() - PATH_CAP, path_len)
}
