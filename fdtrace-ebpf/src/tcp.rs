//! TCP sockets' states. Function tiers: `tcp_connect(sk)` runs in the
//! connecting task with the local port chosen and the SYN about to leave;
//! `tcp_close(sk)` when the last reference to the socket goes (its state
//! then says how it ended: CLOSE_WAIT means the peer had closed first).
//! Every tier: `sock:inet_sock_set_state` for each state change.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
    EbpfContext as _,
};
use fdtrace_common::{
    sock_source,
    syscall::consts::{AF_INET, IPPROTO_TCP, TCP_CLOSE},
    tracepoint::{inet_sock_set_state as layout, Field},
    EventKind, Loss, SockAddr, SockState,
};

use crate::{
    emit::{finish, header, traced, track_sock, wakeup_flags, Scratch},
    keep,
    maps::{EVENTS, SOCKS},
    sockets::{sock_addrs, sock_state},
    table::NR_CONNECT,
};

#[fentry]
pub fn fentry_tcp_connect(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    finish(try_sock(sk, sock_source::TCP_CONNECT))
}

#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(0) {
        Some(sk) => finish(try_sock(sk, sock_source::TCP_CONNECT)),
        None => 0,
    }
}

#[fentry]
pub fn fentry_tcp_close(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    finish(try_sock(sk, sock_source::TCP_CLOSE))
}

#[kprobe]
pub fn kprobe_tcp_close(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(0) {
        Some(sk) => finish(try_sock(sk, sock_source::TCP_CLOSE)),
        None => 0,
    }
}

#[inline(always)]
fn try_sock(sk: u64, source: u16) -> Result<(), Loss> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let Some(target) = traced(tgid) else {
        return Ok(());
    };
    // The last reference to a socket the kernel paired the close of (its
    // owner forgotten then): nothing left to report it to.
    // SAFETY: only tested for presence.
    if source == sock_source::TCP_CLOSE && keep::pairing(target) && unsafe { SOCKS.get(sk) }.is_none() {
        return Ok(());
    }
    // In connect(2) the fd is its first argument. The record does without
    // it (the socket is found by `sk`) if the registers cannot be read.
    let fd = match Scratch::take() {
        Ok(mut scratch) => match scratch.regs.read() {
            Ok(r) if r.ok && r.syscall_nr() == NR_CONNECT => r.args()[0] as i32,
            _ => -1,
        },
        Err(_) => -1,
    };
    if source == sock_source::TCP_CONNECT {
        if fd >= 0 && keep::pairing(target) {
            let (mut local, mut remote) = (SockAddr::default(), SockAddr::default());
            sock_addrs(sk, &mut local, &mut remote);
            if keep::sock_state(tgid, target, fd, sk, sock_state(sk), &local, &remote) {
                return Ok(());
            }
        }
        track_sock(sk, tgid, fd);
    }
    match EVENTS.reserve::<SockState>(0) {
        Some(mut entry) => {
            // SAFETY: every field is written before submit.
            let ev = unsafe { &mut *entry.as_mut_ptr() };
            ev.header = header(EventKind::SockState, pid_tgid);
            ev.source = source;
            ev.fd = fd;
            ev.old_state = 0;
            ev.new_state = sock_state(sk);
            ev.sk = sk;
            sock_addrs(sk, &mut ev.local, &mut ev.remote);
            ev.family = ev.local.family;
            entry.submit(wakeup_flags(size_of::<SockState>()));
            Ok(())
        }
        None => Err(Loss::RingbufFull),
    }
}

/// `sock:inet_sock_set_state`, every TCP state change, in whatever context
/// it happens (the peer's FIN arrives in softirq): attributed through the
/// SOCKS map, not the current task. The loader checks the record layout
/// against the offsets in `fdtrace_common::tracepoint`.
#[tracepoint]
pub fn sock_set_state(ctx: TracePointContext) -> u32 {
    finish(try_sock_set_state(&ctx))
}

#[inline(always)]
fn try_sock_set_state(ctx: &TracePointContext) -> Result<(), Loss> {
    let field = |f: Field| -> *const u8 {
        // SAFETY: in-record offsets, checked by the loader.
        unsafe { (ctx.as_ptr() as *const u8).add(f.offset as usize) }
    };
    // SAFETY: reads at fixed offsets of the tracepoint record.
    let (sk, old, new, sport, dport, family, protocol) = unsafe {
        (
            *field(layout::SKADDR).cast::<u64>(),
            *field(layout::OLDSTATE).cast::<i32>() as u32,
            *field(layout::NEWSTATE).cast::<i32>() as u32,
            *field(layout::SPORT).cast::<u16>(),
            *field(layout::DPORT).cast::<u16>(),
            *field(layout::FAMILY).cast::<u16>(),
            *field(layout::PROTOCOL).cast::<u16>(),
        )
    };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: the value is copied out.
    let Some(owner) = (unsafe { SOCKS.get(sk) }).copied() else {
        return Ok(());
    };
    let tgid = owner.tgid;
    let (mut local, mut remote) = (
        SockAddr { family, port: sport, ..SockAddr::default() },
        SockAddr { family, port: dport, ..SockAddr::default() },
    );
    // Arrays are copied with a read helper: the verifier allows only
    // constant-offset loads from a tracepoint context.
    // SAFETY: in-record offsets, checked by the loader.
    unsafe {
        let at = |f: Field| f.offset as usize;
        if family == AF_INET {
            local.addr[..4].copy_from_slice(&ctx.read_at::<[u8; 4]>(at(layout::SADDR)).unwrap_or([0; 4]));
            remote.addr[..4].copy_from_slice(&ctx.read_at::<[u8; 4]>(at(layout::DADDR)).unwrap_or([0; 4]));
        } else {
            local.addr = ctx.read_at::<[u8; 16]>(at(layout::SADDR_V6)).unwrap_or([0; 16]);
            remote.addr = ctx.read_at::<[u8; 16]>(at(layout::DADDR_V6)).unwrap_or([0; 16]);
        }
    }
    if dport == 0 {
        remote = SockAddr::default();
    }
    if new == TCP_CLOSE {
        let _ = SOCKS.remove(sk);
    }
    // A socket the kernel keeps: its entry holds the state.
    if owner.fd >= 0 {
        if let Some(target) = traced(tgid) {
            if keep::sock_state(tgid, target, owner.fd, sk, new, &local, &remote) {
                return Ok(());
            }
        }
    }
    // Not the current task's: the socket's owner, no thread or comm.
    match EVENTS.reserve::<SockState>(0) {
        Some(mut entry) => {
            // SAFETY: every field is written before submit.
            let ev = unsafe { &mut *entry.as_mut_ptr() };
            ev.header = header(EventKind::SockState, u64::from(tgid) << 32);
            ev.header.comm = [0; 16];
            ev.source = sock_source::SET_STATE;
            ev.family = family;
            ev.fd = -1;
            ev.old_state = old;
            ev.new_state = new;
            ev.sk = sk;
            ev.local = local;
            ev.remote = remote;
            entry.submit(wakeup_flags(size_of::<SockState>()));
            Ok(())
        }
        None => Err(Loss::RingbufFull),
    }
}
