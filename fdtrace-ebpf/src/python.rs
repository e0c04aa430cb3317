//! CPython programs: the Python stack of the thread opening an fd.
//!
//! The native stack of a CPython process shows only the interpreter's C
//! frames (`sock_initobj`, `_PyEval_EvalFrameDefault`); the Python
//! functions are in the interpreter's own frame chain, in user memory. At
//! an open in a process fdtrace registered as CPython ([`PY_PROCS`], with
//! the interpreter's offsets: `fdtrace_common::PyInfo` says the walk), the
//! chain is read from the thread's current frame outwards, each frame's
//! code object address and position kept, and the whole stored in
//! [`PY_STACKS`] under a hash of its frames, which the event carries.
//! fdtrace names the frames from the code objects while the process lives
//! (`fdtrace::python`). Nothing is needed from the target: no flag, no
//! restart.
//!
//! The thread's state is the one whose `thread_id` (glibc's `pthread_t`,
//! which is the thread's TLS base) is the current task's fs base,
//! `task_struct.thread.fsbase`: it holds for threads in any pid namespace.
//! A thread releases the GIL around `socket()` and `open()`, so the
//! runtime's "current thread state" is not it; the thread list is walked
//! instead, and the match cached per thread ([`PY_THREADS`], checked
//! again at each use: a thread state is freed and its memory reused when
//! its thread ends).
use aya_ebpf::helpers::bpf_get_current_task;
use fdtrace_common::{
    config_flags, py_flags, py_stack_flags, syscall::consts::EEXIST, Loss, PyInfo, PyStack, PY_DEPTH,
};

use crate::{
    emit::{count, StackSlot},
    maps::{config, PY_PROCS, PY_STACKS, PY_THREADS},
    mem,
};

/// Threads of an interpreter looked at to find the current one.
const MAX_THREADS: u32 = 64;

/// A word of the target's memory; 0 where unreadable.
#[inline(always)]
fn word(addr: u64) -> u64 {
    mem::user::<u64>(addr).unwrap_or(0)
}

/// The key in [`PY_STACKS`] of the current thread's Python stack, or 0:
/// not a CPython process fdtrace knows, no Python frame on this thread
/// (a thread the interpreter does not know, or one not running Python
/// code), or the stack could not be read or kept (counted).
#[inline(always)]
pub fn python_stack(stack: &mut StackSlot, pid_tgid: u64) -> u64 {
    let flags = config!(flags);
    if flags & config_flags::CAPTURE_STACKS == 0 || flags & config_flags::PYTHON == 0 {
        return 0;
    }
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // SAFETY: copied out.
    let Some(info) = (unsafe { PY_PROCS.get(tgid) }).copied() else { return 0 };
    let tstate = thread_state(&info, tid);
    if tstate == 0 {
        return 0;
    }
    let mut frame = word(tstate + u64::from(info.tstate_frame));
    if info.flags & py_flags::CFRAME != 0 {
        frame = word(frame + u64::from(info.cframe_current));
    }
    if frame == 0 {
        return 0;
    }
    let Ok(rec) = stack.py::<PyStack>() else { return 0 };
    let (n, mut key) = walk(&info, frame, rec);
    if n == 0 {
        return 0;
    }
    if key == 0 {
        key = 1;
    }
    // BPF_NOEXIST: an equal stack is there already (or, one time in 2^64,
    // another with the same hash, which keeps its frames).
    #[allow(
        clippy::needless_borrows_for_generic_args,
        reason = "by value, the 552-byte stack would be copied onto the 512-byte BPF stack"
    )]
    let inserted = PY_STACKS.insert(&key, &*rec, u64::from(aya_ebpf::bindings::BPF_NOEXIST));
    match inserted {
        Ok(()) => key,
        Err(e) if i64::from(e) == -EEXIST => key,
        Err(_) => {
            count(Loss::PyStackFailed);
            0
        }
    }
}

/// Reads the frame chain from `frame` outwards into `rec`: how many
/// frames, and their hash (FNV-1a over their words). The loop keeps every
/// frame it reads and branches on nothing it read but the end of the
/// chain (a failed read leaves zeros), so each iteration leaves the
/// verifier one state, not a tree of them.
#[inline(always)]
fn walk(info: &PyInfo, mut frame: u64, rec: &mut PyStack) -> (usize, u64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut n: usize = 0;
    while n < PY_DEPTH {
        if frame == 0 {
            break;
        }
        let f = &mut rec.frames[n];
        mem::user_or_zero(frame + u64::from(info.frame_code), &mut f.code);
        // 3.10's `int f_lasti` comes with the 4 bytes after it: fdtrace
        // keeps the low half.
        mem::user_or_zero(frame + u64::from(info.frame_instr), &mut f.instr);
        // 3.10 has no mark (the byte read is not one).
        mem::user_or_zero(frame + u64::from(info.frame_mark), &mut rec.marks[n]);
        hash = (hash ^ f.code).wrapping_mul(0x0000_0100_0000_01b3);
        hash = (hash ^ f.instr).wrapping_mul(0x0000_0100_0000_01b3);
        hash = (hash ^ u64::from(rec.marks[n])).wrapping_mul(0x0000_0100_0000_01b3);
        let mut back = 0u64;
        mem::user_or_zero(frame + u64::from(info.frame_back), &mut back);
        frame = back;
        n += 1;
    }
    rec.nframes = n as u32;
    rec.flags = if frame != 0 { py_stack_flags::TRUNCATED } else { 0 };
    (n, hash)
}

/// The current thread's `PyThreadState`, or 0.
#[inline(always)]
fn thread_state(info: &PyInfo, tid: u32) -> u64 {
    let off = config!(task_fsbase_off);
    if off == 0 {
        return 0;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(fsbase) = mem::kernel::<u64>(task, off) else { return 0 };
    if fsbase == 0 {
        return 0;
    }
    let thread_id = |t: u64| {
        let mut id = 0u64;
        mem::user_or_zero(t + u64::from(info.tstate_thread_id), &mut id);
        id
    };
    // SAFETY: copied out.
    if let Some(&cached) = unsafe { PY_THREADS.get(tid) } {
        if thread_id(cached) == fsbase {
            return cached;
        }
    }
    let interp = word(info.runtime + u64::from(info.interp_head));
    let mut t = word(interp + u64::from(info.interp_threads));
    let mut i = 0;
    while i < MAX_THREADS {
        if t == 0 {
            return 0;
        }
        if thread_id(t) == fsbase {
            let _ = PY_THREADS.insert(tid, t, 0);
            return t;
        }
        let mut next = 0u64;
        mem::user_or_zero(t + u64::from(info.tstate_next), &mut next);
        t = next;
        i += 1;
    }
    0
}
