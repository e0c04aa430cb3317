//! Function tiers (fentry, kprobe): the kernel's fd-table functions.
//!
//! - `fd_install(fd, file)` runs for every fd installed, whichever path
//!   installs it: syscalls, SCM_RIGHTS (`recvmsg`), io_uring, pidfd_getfd.
//!   The syscall in progress (and its arguments) come from the user
//!   registers, so the record is the one the tracepoint tier would send.
//! - The per-fd removal (`file_close_fd_locked(files, fd)` on Linux 6.8+,
//!   `pick_file(files, fd)` before) runs for close, close_range and
//!   io_uring's close; where it is inlined, `close_fd(fd)` /
//!   `file_close_fd(fd)` covers close(). Reported at entry, before the slot
//!   is freed, so a reuse of the number always comes after in the ring.
//!
//! dup2/dup3 (slot replaced without an install), close-on-exec at exec and
//! the exit of a process stay with the syscall and sched tracepoints.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe},
    programs::{tracing::StackIdContext, FEntryContext, ProbeContext},
};
use fdtrace_common::{Close, EventKind, Loss};

use crate::{
    emit::{finish, header, send, traced, Args, Scratch},
    fdopen::{report_open, Install, Site},
    keep,
};

#[fentry]
pub fn fentry_fd_install(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(0);
    let file: u64 = ctx.arg(1);
    finish(try_install(&ctx, fd as i32, file))
}

#[kprobe]
pub fn kprobe_fd_install(ctx: ProbeContext) -> u32 {
    match (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        (Some(fd), Some(file)) => finish(try_install(&ctx, fd as i32, file)),
        _ => 0,
    }
}

#[inline(always)]
fn try_install<C: StackIdContext>(ctx: &C, fd: i32, file: u64) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(target) = traced((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    let mut scratch = Scratch::take()?;
    let s = &mut scratch;
    let regs = s.regs.read()?;
    // Without the registers the syscall is unknown: the record still says
    // which fd, and the inode says what kind.
    let (nr, entry) = if regs.ok {
        (regs.syscall_nr(), Args { known: true, args: regs.args() })
    } else {
        (u32::MAX, Args::UNKNOWN)
    };
    let site = Site { ctx, pid_tgid, target, regs };
    report_open(
        &site,
        &mut s.event,
        &mut s.stack,
        &mut s.kept,
        nr,
        i64::from(fd),
        &entry,
        Install { fd, file },
    )
}

/// `file_close_fd_locked(files, fd)` / `pick_file(files, fd)`.
#[fentry]
pub fn fentry_fd_remove(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(1);
    finish(try_close(fd as i32))
}

#[kprobe]
pub fn kprobe_fd_remove(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(1) {
        Some(fd) => finish(try_close(fd as i32)),
        None => 0,
    }
}

/// `close_fd(fd)` / `file_close_fd(fd)`.
#[fentry]
pub fn fentry_close_fd(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(0);
    finish(try_close(fd as i32))
}

#[kprobe]
pub fn kprobe_close_fd(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(0) {
        Some(fd) => finish(try_close(fd as i32)),
        None => 0,
    }
}

#[inline(always)]
fn try_close(fd: i32) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let Some(target) = traced(tgid) else {
        return Ok(());
    };
    if keep::close(tgid, target, fd) {
        return Ok(());
    }
    send(Close { header: header(EventKind::Close, pid_tgid), fd, _pad: 0 })
}
