//! Function tiers: TCP. `tcp_connect(sk)` runs in the connecting task with
//! the local port chosen and the SYN about to leave; `tcp_close(sk)` when
//! the last reference to the socket goes (its state then says how it
//! ended: CLOSE_WAIT means the peer had closed first).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use fdtrace_common::{sock_source, EventKind, SockState};

use crate::{
    emit::{header, is_traced, send, UserRegs},
    fdopen::NR_CONNECT,
    sockets::{sock_addrs, sock_state},
};

#[fentry]
pub fn fentry_tcp_connect(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    on_sock(sk, sock_source::TCP_CONNECT);
    0
}

#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        on_sock(sk, sock_source::TCP_CONNECT);
    }
    0
}

#[fentry]
pub fn fentry_tcp_close(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    on_sock(sk, sock_source::TCP_CLOSE);
    0
}

#[kprobe]
pub fn kprobe_tcp_close(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        on_sock(sk, sock_source::TCP_CLOSE);
    }
    0
}

#[inline(always)]
fn on_sock(sk: u64, source: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    // In connect(2) the fd is its first argument.
    let fd = match UserRegs::read() {
        Some(r) if r.syscall_nr() == NR_CONNECT => r.args()[0] as i32,
        _ => -1,
    };
    let (local, remote) = sock_addrs(sk);
    let state = sock_state(sk);
    send(SockState {
        header: header(EventKind::SockState, pid_tgid),
        source,
        family: local.family,
        fd,
        old_state: 0,
        new_state: state,
        sk,
        local,
        remote,
    });
}
