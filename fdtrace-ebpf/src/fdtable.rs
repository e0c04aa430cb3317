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
use fdtrace_common::{Close, EventKind};

use crate::{
    emit::{header, is_traced, send, Args, UserRegs},
    fdopen::{report_open, Install},
};

#[fentry]
pub fn fentry_fd_install(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(0);
    let file: u64 = ctx.arg(1);
    on_install(&ctx, fd as i32, file);
    0
}

#[kprobe]
pub fn kprobe_fd_install(ctx: ProbeContext) -> u32 {
    if let (Some(fd), Some(file)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        on_install(&ctx, fd as i32, file);
    }
    0
}

#[inline(always)]
fn on_install<C: StackIdContext>(ctx: &C, fd: i32, file: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let Some(regs) = UserRegs::read() else {
        return;
    };
    // Without the registers the syscall is unknown: the record still says
    // which fd, and the inode says what kind.
    let (nr, entry) = if regs.ok {
        (regs.syscall_nr(), Args { known: true, args: regs.args() })
    } else {
        (u32::MAX, Args::UNKNOWN)
    };
    report_open(ctx, pid_tgid, nr, i64::from(fd), &entry, regs, Install { fd, file });
}

/// `file_close_fd_locked(files, fd)` / `pick_file(files, fd)`.
#[fentry]
pub fn fentry_fd_remove(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(1);
    on_close(fd as i32);
    0
}

#[kprobe]
pub fn kprobe_fd_remove(ctx: ProbeContext) -> u32 {
    if let Some(fd) = ctx.arg::<u64>(1) {
        on_close(fd as i32);
    }
    0
}

/// `close_fd(fd)` / `file_close_fd(fd)`.
#[fentry]
pub fn fentry_close_fd(ctx: FEntryContext) -> u32 {
    let fd: u64 = ctx.arg(0);
    on_close(fd as i32);
    0
}

#[kprobe]
pub fn kprobe_close_fd(ctx: ProbeContext) -> u32 {
    if let Some(fd) = ctx.arg::<u64>(0) {
        on_close(fd as i32);
    }
    0
}

#[inline(always)]
fn on_close(fd: i32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    send(Close { header: header(EventKind::Close, pid_tgid), fd, _pad: 0 });
}
