//! Node programs: joining a socket to the JavaScript that asked for it.
//!
//! `net.connect` (and so `http.get` through an `http.Agent`) connects from
//! the tick queue: at `socket()` the stack holds the event loop, never the
//! program's function. What does run in the program's own call is the
//! socket's handle being made: `new TCP()` in `Socket.connect` runs
//! `node::TCPWrap::New`, which calls libuv's `uv_tcp_init(loop, handle)`.
//! A uprobe there keeps the stack by handle; one on `uv_tcp_connect(req,
//! handle, addr, cb)`, which creates the socket synchronously, tells the
//! `socket()` that follows on the thread which handle it is for; that
//! open's origin is then the stack that made the handle (as a goroutine's
//! is its creator's, `go`). No uretprobes: the connect's time bounds the
//! join instead.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::{tracing::StackIdContext, ProbeContext},
};
use fdtrace_common::{config_flags, GoOrigin, Loss, NodeConnect, NodeHandle, STACK_NOT_CAPTURED};

use crate::{
    arch,
    emit::{finish, is_traced},
    maps::{config, NODE_CONNECTS, NODE_HANDLES, STACKS},
    mem,
};

/// How long after `uv_tcp_connect` its `socket()` may come (it is the
/// same call, microseconds later; a connect on a handle that has its
/// socket already makes none, and must not name a later one).
const CONNECT_TO_SOCKET_NS: u64 = 1_000_000;

/// `uv_tcp_init(loop, handle)`: the stack of the code making a TCP handle.
#[uprobe]
pub fn node_tcp_init(ctx: ProbeContext) -> u32 {
    finish(try_node_tcp_init(&ctx))
}

#[inline(always)]
fn try_node_tcp_init(ctx: &ProbeContext) -> Result<(), Loss> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_traced(tgid) {
        return Ok(());
    }
    let Some(handle) = ctx.arg::<u64>(1) else { return Ok(()) };
    // SAFETY: the uprobe context is the user registers.
    let sp = unsafe { arch::user_sp(ctx.regs) };
    // At the entry, the top of the stack is the return address: the
    // caller's frame, which the frame-pointer walk from here skips.
    let caller = mem::user::<u64>(sp).unwrap_or(0);
    let stack_id = match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        Err(_) => return Err(Loss::StackFailed),
    };
    let _ =
        NODE_HANDLES.insert(NodeHandle { tgid, _pad: 0, handle }, GoOrigin { stack_id, _pad: 0, caller }, 0);
    Ok(())
}

/// `uv_tcp_connect(req, handle, addr, cb)`: the thread's next `socket()`
/// is this handle's.
#[uprobe]
pub fn node_tcp_connect(ctx: ProbeContext) -> u32 {
    finish(try_node_tcp_connect(&ctx))
}

#[inline(always)]
fn try_node_tcp_connect(ctx: &ProbeContext) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let Some(handle) = ctx.arg::<u64>(1) else { return Ok(()) };
    // SAFETY: no preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let _ = NODE_CONNECTS.insert(pid_tgid as u32, NodeConnect { handle, ts_ns }, 0);
    Ok(())
}

/// For a socket a Node thread opens inside `uv_tcp_connect`: the stack
/// that made its handle, and that stack's innermost caller; or none.
#[inline(always)]
pub fn connect_origin(pid_tgid: u64) -> (i32, u64) {
    let none = (STACK_NOT_CAPTURED, 0);
    if config!(flags) & config_flags::NODE == 0 {
        return none;
    }
    let tid = pid_tgid as u32;
    // SAFETY: copied out.
    let Some(c) = (unsafe { NODE_CONNECTS.get(tid) }).copied() else { return none };
    let _ = NODE_CONNECTS.remove(tid);
    // SAFETY: no preconditions.
    if unsafe { bpf_ktime_get_ns() }.wrapping_sub(c.ts_ns) > CONNECT_TO_SOCKET_NS {
        return none;
    }
    let key = NodeHandle { tgid: (pid_tgid >> 32) as u32, _pad: 0, handle: c.handle };
    // SAFETY: copied out.
    match unsafe { NODE_HANDLES.get(key) } {
        Some(o) => (o.stack_id, o.caller),
        None => none,
    }
}
