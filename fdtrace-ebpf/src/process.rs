//! Process lifecycle: fork (a child starts with a copy of the fd table),
//! exec (close-on-exec fds go), exit (the table goes).
//!
//! Struct field offsets (`task_struct::tgid`, `::files`, ...) come from the
//! running kernel's BTF through the loader's `CONFIG`: Rust eBPF has no CO-RE
//! field relocations.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext as _,
};
use fdtrace_common::{config_flags, fork_flags, target, EventKind, Exec, Exit, Fork, Loss, PATH_CAP};

use crate::{
    emit::{count, finish, is_traced, named_header, send, Scratch},
    keep,
    maps::{config, INFLIGHT, TARGETS},
    mem,
};

/// Reads a `T` at `base + off` in kernel memory; `None` if the offset is
/// unknown (0: the loader found no such field) or the read faults.
#[inline(always)]
fn read_at<T>(base: u64, off: u32) -> Option<T> {
    if off == 0 {
        return None;
    }
    mem::kernel(base, off)
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`,
/// in the parent's context. Threads (same tgid) are ignored: they share the
/// table and the tgid filter already covers them.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    finish(try_process_fork(&ctx)) as i32
}

#[inline(always)]
fn try_process_fork(ctx: &RawTracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let parent_tgid = (pid_tgid >> 32) as u32;
    if !is_traced(parent_tgid) {
        return Ok(());
    }
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let Some(child_tgid) = read_at::<u32>(child, config!(task_tgid_off)) else {
        return Ok(());
    };
    if child_tgid == parent_tgid {
        return Ok(());
    }
    let mut flags = 0;
    let files_off = config!(task_files_off);
    if let (Some(a), Some(b)) = (read_at::<u64>(parent, files_off), read_at::<u64>(child, files_off)) {
        if a == b {
            flags |= fork_flags::SHARES_FILES;
        }
    }
    // With --comm, a matching process's forks have its name: new
    // processes with that name too.
    if config!(flags) & config_flags::FOLLOW_FORKS != 0 || comm_matches() {
        let shares = flags & fork_flags::SHARES_FILES != 0;
        let child_flags = if shares { target::CHILD | target::NO_PAIRING } else { target::CHILD };
        if TARGETS.insert(child_tgid, child_flags, 0).is_ok() {
            flags |= fork_flags::FOLLOWED;
            // The child's table holds the parent's kept fds too (or is the
            // parent's): fdtrace must know them before the kernel pairs
            // another close of the parent's.
            if shares {
                keep::stop_pairing(parent_tgid);
            } else {
                keep::hold(parent_tgid);
            }
        } else {
            count(Loss::TargetsFull);
        }
    }
    send(Fork { header: named_header(EventKind::Fork, pid_tgid), child_tgid, flags })
}

/// `sched:sched_process_exec`, in the context of the new program.
#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    finish(try_process_exec(&ctx))
}

#[inline(always)]
fn try_process_exec(ctx: &TracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        // --comm: the new program has the name; trace it from here, before
        // its first instruction runs.
        if !comm_matches() {
            return Ok(());
        }
        if TARGETS.insert(tgid, target::COMM, 0).is_err() {
            return Err(Loss::TargetsFull);
        }
    }
    // Its close-on-exec fds are gone, kept ones among them.
    keep::hold(tgid);
    let mut scratch = Scratch::take()?;
    let ev: &mut Exec = scratch.event.get()?;
    ev.header = named_header(EventKind::Exec, pid_tgid);
    ev.flags = 0;
    ev._pad = [0; 6];
    ev.path_len = 0;
    let base = ctx.as_ptr() as u64;
    ev.old_tid = read_at::<u32>(base, config!(exec_old_pid_off)).unwrap_or(0);
    // `__data_loc char[] filename`: low 16 bits offset, high 16 length.
    if let Some(loc) = read_at::<u32>(base, config!(exec_filename_loc_off)) {
        if let Some(len) = mem::kernel_str(base + u64::from(loc & 0xffff), &mut ev.path) {
            ev.path_len = len as u16;
        }
    }
    let len = ev.path_len as usize;
    scratch.event.send(size_of::<Exec>() - PATH_CAP, len)
}

/// `--comm`: whether the current task's name is the one configured (at
/// exec, the new program's name: the kernel sets it before the tracepoint).
#[inline(always)]
fn comm_matches() -> bool {
    if config!(flags) & config_flags::MATCH_COMM == 0 {
        return false;
    }
    let Ok(comm) = bpf_get_current_comm() else {
        return false;
    };
    let want = config!(comm);
    let mut i = 0;
    while i < 16 {
        if comm[i] != want[i] {
            return false;
        }
        if comm[i] == 0 {
            return true;
        }
        i += 1;
    }
    true
}

/// `sched:sched_process_exit`, once per exiting thread, in its context.
#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    finish(try_process_exit(&ctx))
}

#[inline(always)]
fn try_process_exit(ctx: &TracePointContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_traced(tgid) {
        return Ok(());
    }
    let _ = INFLIGHT.remove(pid_tgid as u32);
    if !group_dead(ctx) {
        return Ok(());
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let exit_code = read_at::<u32>(task, config!(task_exit_code_off)).unwrap_or(0);
    // A later process that reuses this pid is not the one the user asked for.
    let _ = TARGETS.remove(tgid);
    send(Exit { header: named_header(EventKind::Exit, pid_tgid), exit_code, _pad: 0 })
}

/// Whether the exiting thread is the last of its process: the record's
/// `group_dead` field on kernels that have it, else `signal->live == 0`
/// (decremented just before the tracepoint fires).
#[inline(always)]
fn group_dead(ctx: &TracePointContext) -> bool {
    let off = config!(exit_group_dead_off);
    if off != 0 {
        return read_at::<u8>(ctx.as_ptr() as u64, off).unwrap_or(0) != 0;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    match read_at::<u64>(task, config!(task_signal_off)) {
        Some(signal) => read_at::<i32>(signal, config!(signal_live_off)) == Some(0),
        // Without the offsets, the leader's exit stands for the process.
        None => pid_tgid_is_leader(),
    }
}

#[inline(always)]
fn pid_tgid_is_leader() -> bool {
    let id = bpf_get_current_pid_tgid();
    (id >> 32) as u32 == id as u32
}
