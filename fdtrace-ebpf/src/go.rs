//! Go programs: following a goroutine back to the code that started it.
//!
//! net/http dials in a goroutine of its own, so the stack at `socket()`
//! ends in net/http and never reaches the code that made the request. The
//! runtime records in each goroutine's `g.gopc` the pc of the `go`
//! statement that created it; a uprobe on `runtime.newproc` (the `go`
//! statement) sees that same pc as its return address, on the creator's
//! stack. Keyed by that pc (and, from Go 1.21, the creator's goroutine id,
//! which the new `g` keeps as `parentGoid`), the creator's stack is found
//! again when the new goroutine opens an fd.
//!
//! Go's register ABI (amd64, Go 1.17+) keeps the current `g` in r14 and
//! passes the first arguments in rax, rbx, ... No uretprobes: Go moves
//! goroutine stacks, which breaks them.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::bpf_get_current_pid_tgid,
    macros::uprobe,
    programs::{tracing::StackIdContext, ProbeContext},
};
use fdtrace_common::{GoInfo, GoKey, GoOrigin, GoroutineKey, Loss, STACK_NOT_CAPTURED};

use crate::{
    arch,
    emit::{finish, is_traced, UserRegs},
    maps::{GO_CREATORS, GO_DIALS, GO_PROCS, STACKS},
    mem,
};

/// A word of the Go program's memory; 0 where unreadable (a field left
/// unknown, not a loss).
#[inline(always)]
fn read_u64(addr: u64) -> u64 {
    mem::user::<u64>(addr).unwrap_or(0)
}

#[inline(always)]
fn go_info(tgid: u32) -> Option<GoInfo> {
    // SAFETY: copied out.
    unsafe { GO_PROCS.get(tgid) }.copied()
}

/// `runtime.newproc(fn *funcval)`, entered on the creating goroutine.
#[uprobe]
pub fn go_newproc(ctx: ProbeContext) -> u32 {
    finish(try_go_newproc(&ctx))
}

#[inline(always)]
fn try_go_newproc(ctx: &ProbeContext) -> Result<(), Loss> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_traced(tgid) {
        return Ok(());
    }
    let Some(info) = go_info(tgid) else { return Ok(()) };
    // SAFETY: the uprobe context is the user registers.
    let regs = unsafe { arch::go_regs(ctx.regs) };
    // At the entry, the top of the stack is newproc's return address: the
    // pc the new goroutine will have as gopc.
    let caller = read_u64(regs.sp);
    let parent_goid = if info.parent_goid_off != 0 { read_u64(regs.g + u64::from(info.goid_off)) } else { 0 };
    let stack_id = match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        // The goroutine's fds will say their origin is unknown.
        Err(_) => return Err(Loss::StackFailed),
    };
    let key = GoKey { tgid, _pad: 0, gopc: caller, parent_goid };
    let _ = GO_CREATORS.insert(key, GoOrigin { stack_id, _pad: 0, caller }, 0);
    Ok(())
}

/// `net/http.(*Transport).dialConnFor(t, w)`, in the dial goroutine: the
/// first argument register holds `t`.
#[uprobe]
pub fn go_dial_conn_for(ctx: ProbeContext) -> u32 {
    finish(try_go_dial_conn_for(&ctx))
}

#[inline(always)]
fn try_go_dial_conn_for(ctx: &ProbeContext) -> Result<(), Loss> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_traced(tgid) {
        return Ok(());
    }
    let Some(info) = go_info(tgid) else { return Ok(()) };
    // SAFETY: the uprobe context is the user registers.
    let regs = unsafe { arch::go_regs(ctx.regs) };
    let key = GoroutineKey { g: regs.g, goid: read_u64(regs.g + u64::from(info.goid_off)) };
    let _ = GO_DIALS.insert(key, regs.arg0, 0);
    Ok(())
}

/// For an fd opened by a Go program: the creator stack of the current
/// goroutine (stack id, innermost pc) and the Transport it dials for.
#[inline(always)]
pub fn goroutine_origin(tgid: u32, regs: &UserRegs) -> (i32, u64, u64) {
    let none = (STACK_NOT_CAPTURED, 0, 0);
    if !regs.ok {
        return none;
    }
    let Some(info) = go_info(tgid) else { return none };
    let g = regs.go_g();
    if g == 0 || info.gopc_off == 0 {
        return none;
    }
    let gopc = read_u64(g + u64::from(info.gopc_off));
    let goid = read_u64(g + u64::from(info.goid_off));
    let parent_goid =
        if info.parent_goid_off != 0 { read_u64(g + u64::from(info.parent_goid_off)) } else { 0 };
    let key = GoKey { tgid, _pad: 0, gopc, parent_goid };
    // SAFETY: values copied out.
    let (stack, pc) = match unsafe { GO_CREATORS.get(key) } {
        Some(o) => (o.stack_id, o.caller),
        None => (STACK_NOT_CAPTURED, 0),
    };
    // SAFETY: as above.
    let transport = unsafe { GO_DIALS.get(GoroutineKey { g, goid }) }.copied().unwrap_or(0);
    (stack, pc, transport)
}
