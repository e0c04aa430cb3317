//! The kernel's walk of a thread's Python frames, done from userspace:
//! the reference the kernel side is tested against, and a way to look at
//! a live process's Python stack (`walk`).
//!
//! It follows [`fdtrace_common::PyInfo`]'s path field by field, with one
//! difference: the kernel finds the current thread's state by its
//! `thread_id` (the `pthread_t`, which is the thread's fs base), which
//! userspace cannot read without stopping the thread; here a thread is
//! found by `native_thread_id`, its kernel tid (3.11+). CPython 3.10 does
//! not record the tid: there the main thread (tid = pid) is found by
//! `_PyRuntime.main_thread`, and other threads are an error.
use fdtrace_common::{PyFrame, PY_DEPTH, PY_FRAME_OWNED_BY_CSTACK};

use super::{process::Memory, Interpreter, PyError};

/// One frame of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    pub frame: PyFrame,
    /// Where an evaluation loop call started (3.10: every frame; 3.11: the
    /// frame's `is_entry`; 3.12+: the frame whose caller is an entry shim,
    /// a frame owned by the C stack).
    pub is_entry: bool,
}

/// Threads looked at before giving up (a list that loops, or garbage).
const MAX_THREADS: usize = 4096;
/// Frames looked at: [`PY_DEPTH`] kept, the entry shims between them
/// (3.12+) skipped.
const MAX_STEPS: usize = 2 * PY_DEPTH;

/// Thread `tid`'s Python frames in process `pid`, innermost first, at most
/// [`PY_DEPTH`].
pub fn walk(pid: u32, tid: u32, interp: &Interpreter) -> Result<Vec<Walked>, PyError> {
    let mem = Memory::open(pid).map_err(|source| PyError::Proc { pid, what: "mem", source })?;
    let read = |addr: u64, what: &'static str| mem.u64(addr).map_err(|_| PyError::Memory { pid, what, addr });
    let o = &interp.offsets;
    let runtime = interp.info.runtime;
    let head = read(runtime + u64::from(o.runtime_interp_head), "_PyRuntime.interpreters.head")?;
    if head == 0 {
        return Err(PyError::NotStarted { pid });
    }
    let tstate = thread(&mem, pid, tid, interp, head)?;
    let mut frame = read(tstate + u64::from(o.tstate_frame), "thread state's frame")?;
    if let Some(current) = o.cframe_current {
        frame = match frame {
            0 => 0,
            cframe => read(cframe + u64::from(current), "_PyCFrame.current_frame")?,
        };
    }
    let mut out: Vec<Walked> = vec![];
    for _ in 0..MAX_STEPS {
        if frame == 0 || out.len() == PY_DEPTH {
            break;
        }
        let code = read(frame + u64::from(o.frame_code), "frame's code")?;
        let at = frame + u64::from(o.frame_instr);
        let instr = if interp.info.minor == 10 {
            // An int: the kernel reads its 4 bytes into a zeroed u64.
            mem.u32(at).map(u64::from).map_err(|_| PyError::Memory { pid, what: "f_lasti", addr: at })?
        } else {
            read(at, "frame's instruction pointer")?
        };
        let owner = match o.frame_owner {
            Some(off) => Some(mem.u8(frame + u64::from(off)).map_err(|_| PyError::Memory {
                pid,
                what: "frame's owner",
                addr: frame + u64::from(off),
            })?),
            None => None,
        };
        let is_entry = match o.frame_is_entry {
            Some(off) => {
                let addr = frame + u64::from(off);
                mem.u8(addr).map_err(|_| PyError::Memory { pid, what: "frame's is_entry", addr })? != 0
            }
            None => o.frame_owner.is_none(),
        };
        frame = read(frame + u64::from(o.frame_back), "frame's caller")?;
        if code == 0 {
            break;
        }
        if interp.info.minor >= 12 && owner == Some(PY_FRAME_OWNED_BY_CSTACK) {
            // An entry shim: the frame before it started its loop call.
            if let Some(last) = out.last_mut() {
                last.is_entry = true;
            }
            continue;
        }
        if interp.info.minor >= 13 && !is_code(&mem, interp, code) {
            continue;
        }
        out.push(Walked { frame: PyFrame { code, instr }, is_entry });
    }
    Ok(out)
}

/// Whether the object at `addr` is a code object (3.13's `f_executable`
/// can be another object); without `PyCode_Type`'s address, any object.
fn is_code(mem: &Memory, interp: &Interpreter, addr: u64) -> bool {
    let Some(code_type) = interp.code_type else { return true };
    mem.u64(addr + u64::from(interp.offsets.code.ob_type)).is_ok_and(|t| t == code_type)
}

/// The thread state of thread `tid` in the interpreter at `interp_addr`.
fn thread(mem: &Memory, pid: u32, tid: u32, interp: &Interpreter, interp_addr: u64) -> Result<u64, PyError> {
    let o = &interp.offsets;
    let read = |addr: u64, what: &'static str| mem.u64(addr).map_err(|_| PyError::Memory { pid, what, addr });
    let main_thread = match o.tstate_native_thread_id {
        Some(_) => None,
        None if tid == pid => {
            Some(read(interp.info.runtime + u64::from(o.runtime_main_thread), "_PyRuntime.main_thread")?)
        }
        None => return Err(PyError::ThreadIdUnknown { pid, tid }),
    };
    let mut tstate = read(interp_addr + u64::from(o.interp_threads), "interpreter's thread list")?;
    for _ in 0..MAX_THREADS {
        if tstate == 0 {
            break;
        }
        let found = match (o.tstate_native_thread_id, main_thread) {
            (Some(off), _) => read(tstate + u64::from(off), "native_thread_id")? == u64::from(tid),
            (None, Some(main)) => read(tstate + u64::from(o.tstate_thread_id), "thread_id")? == main,
            (None, None) => false,
        };
        if found {
            return Ok(tstate);
        }
        tstate = read(tstate + u64::from(o.tstate_next), "thread state's next")?;
    }
    Err(PyError::NoThread { pid, tid })
}
