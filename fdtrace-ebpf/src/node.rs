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
//! is its creator's, `go`).
//!
//! No uretprobe (on older kernels its trampoline takes the place of a
//! return address in every user stack captured below it): the handle
//! says whether the connect makes a socket. libuv keeps `uv_tcp_t`'s
//! layout through 1.x (its ABI promise), so `uv_tcp_connect` creates one
//! exactly when the handle has no fd and no connect pending; the next
//! `socket()` on the thread is then that one, however long the thread
//! waits for a CPU in between. A handle whose type field is not `UV_TCP`
//! means another layout: the join is then bounded by time only.
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

/// How long after `uv_tcp_connect` its `socket()` may come where the
/// handle said a socket will be made: a bound for the connects that fail
/// before it (`socket()` itself failing, EMFILE), so that their entry
/// names no later socket.
const CONNECT_TO_SOCKET_NS: u64 = 1_000_000_000;
/// The same where the handle's layout is not libuv 1.x's: it is the same
/// call, microseconds later, unless the thread is preempted in between.
const CONNECT_TO_SOCKET_UNKNOWN_NS: u64 = 5_000_000;

/// `uv_tcp_t` in libuv 1.x on 64-bit Linux: `uv_handle_t.type`,
/// `uv_stream_t.connect_req` and `uv_stream_t.io_watcher.fd`.
mod uv_tcp {
    pub const TYPE: u64 = 16;
    pub const CONNECT_REQ: u64 = 120;
    pub const FD: u64 = 184;
    /// `UV_TCP` in `uv_handle_type`.
    pub const UV_TCP: u32 = 12;
}

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
    let tid = pid_tgid as u32;
    let window = if mem::user::<u32>(handle + uv_tcp::TYPE) == Some(uv_tcp::UV_TCP) {
        let pending = mem::user::<u64>(handle + uv_tcp::CONNECT_REQ).unwrap_or(1) != 0;
        let has_fd = mem::user::<i32>(handle + uv_tcp::FD).unwrap_or(0) != -1;
        if pending || has_fd {
            // No socket comes of this connect.
            let _ = NODE_CONNECTS.remove(tid);
            return Ok(());
        }
        CONNECT_TO_SOCKET_NS
    } else {
        CONNECT_TO_SOCKET_UNKNOWN_NS
    };
    // SAFETY: no preconditions.
    let deadline_ns = unsafe { bpf_ktime_get_ns() } + window;
    let _ = NODE_CONNECTS.insert(tid, NodeConnect { handle, deadline_ns }, 0);
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
    if unsafe { bpf_ktime_get_ns() } > c.deadline_ns {
        return none;
    }
    let key = NodeHandle { tgid: (pid_tgid >> 32) as u32, _pad: 0, handle: c.handle };
    // SAFETY: copied out.
    match unsafe { NODE_HANDLES.get(key) } {
        Some(o) => (o.stack_id, o.caller),
        None => none,
    }
}
