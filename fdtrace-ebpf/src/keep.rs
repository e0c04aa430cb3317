//! Pairing mode (`config_flags::PAIRING`: reports, not `--events`): the
//! kernel pairs what it can. An fd opened is kept in [`OPEN_FDS`] instead of
//! sent; its close, when the kernel still holds it, deletes it and counts
//! the pair per place in [`PAIRS`]; nothing goes through the ring. A
//! short-lived fd then costs a few map operations and no work in fdtrace.
//! fdtrace takes the fds still kept when it needs them (a report, a fork,
//! an exec, an exit: `events::Kept` in fdtrace) and from then on owns them:
//! their closes go through the ring as before.
//!
//! Who owns a kept fd is decided by deleting it: the kernel's close and
//! fdtrace's take (a batched lookup-and-delete) both delete, and only one
//! succeeds. A close whose delete fails (fdtrace took the fd meanwhile)
//! goes through the ring.
//!
//! What the kernel cannot pair goes through the ring, as in `--events`
//! mode: an open whose stack came inline, a dup of an fd the kernel does
//! not hold, a dup2 over one it does not hold, received fds, opens when a
//! map is full, and everything of a process that is held
//! (`target::HELD`: after a fork fdtrace follows, an exec or a
//! close_range, until fdtrace took its kept fds) or shares its fd table
//! with another process (`target::NO_PAIRING`). Changes to a kept fd
//! (close-on-exec, addresses, TCP state) replace its entry, never write it
//! in place: a deleted entry's memory is reused at once in a preallocated
//! map, and a replace fails (and the change goes through the ring) when
//! fdtrace took the fd meanwhile.
use aya_ebpf::bindings::{BPF_EXIST, BPF_NOEXIST};
use fdtrace_common::{
    config_flags, fd_flags, syscall::consts::E2BIG, target, EventKind, FdKey, FdOpen, Kept, Loss, Released,
    SiteKey, SiteSeen, SockAddr, Syscall, STACK_INLINE,
};

use crate::{
    emit::{atomic_add, count, header, send, track_sock, KeptSlot},
    maps::{config, OPEN_FDS, PAIRS, SOCKS, TARGETS},
    sockets::sock_spec,
};

/// Whether the events of a process with these `target` flags are paired
/// in the kernel.
#[inline(always)]
pub fn pairing(target_flags: u32) -> bool {
    config!(flags) & config_flags::PAIRING != 0 && target_flags & (target::NO_PAIRING | target::HELD) == 0
}

/// Sets one byte of a process's `target` flags (a single store: another
/// CPU's store to another byte is not lost).
#[inline(always)]
fn set_target_byte(tgid: u32, byte: usize) {
    if config!(flags) & config_flags::PAIRING == 0 {
        return;
    }
    if let Some(flags) = TARGETS.get_ptr_mut(tgid) {
        // SAFETY: a byte of the 4-byte map value.
        unsafe { core::ptr::write_volatile(flags.cast::<u8>().add(byte), 1) };
    }
}

/// The kept fds of `tgid` no longer say what its table holds (a fork that
/// copies it, an exec, a close_range): nothing more is paired until
/// fdtrace took them.
#[inline(always)]
pub fn hold(tgid: u32) {
    set_target_byte(tgid, target::HELD_BYTE);
}

/// `tgid` shares its fd table with another process: never pair again.
#[inline(always)]
pub fn stop_pairing(tgid: u32) {
    set_target_byte(tgid, target::NO_PAIRING_BYTE);
    set_target_byte(tgid, target::HELD_BYTE);
}

#[inline(always)]
fn key(tgid: u32, fd: i32) -> FdKey {
    FdKey { tgid, fd }
}

/// The place a kept fd was opened at.
#[inline(always)]
fn site_of(tgid: u32, k: &Kept) -> SiteKey {
    SiteKey {
        tgid,
        stack_id: k.stack_id,
        caller_ip: k.caller_ip,
        go_spawn_stack: k.go_spawn_stack,
        _pad: 0,
        origin: SiteKey::origin_of(k.go_spawn_pc, k.py_stack),
    }
}

/// What became of an open in pairing mode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Kept in the kernel, or nothing to keep (a failed call): no record.
    Handled,
    /// The record goes through the ring.
    Send,
}

/// Keeps the fd(s) of an open in the kernel, if it can.
#[inline(always)]
pub fn open(ev: &FdOpen, target_flags: u32, slot: &mut KeptSlot) -> Opened {
    let dup = ev.syscall == Syscall::Dup as u16
        || ev.syscall == Syscall::Dup2 as u16
        || ev.syscall == Syscall::Dup3 as u16
        || ev.syscall == Syscall::Fcntl as u16;
    let accept = ev.syscall == Syscall::Accept as u16 || ev.syscall == Syscall::Accept4 as u16;
    let tgid = ev.header.tgid;
    if !pairing(target_flags) {
        // Held: a kept source is not handed over here — the barrier that
        // held the process (exec, fork, close_range) is in the ring before
        // this record, and a source released after it would reach the
        // ledger after the barrier it predates. fdtrace takes it with the
        // rest at the barrier, and fills in ring dups of it then.
        return Opened::Send;
    }
    // Nothing the reports show: a failed call, signalfd on an existing
    // signalfd, dup2(fd, fd).
    if ev.ret < 0 || ev.fd_flags & fd_flags::REUSED_FD != 0 || (dup && ev.src_fd == ev.fd && ev.src_fd >= 0) {
        return Opened::Handled;
    }
    // The inline stack record went out already: its open must follow it;
    // a pipe whose fds could not be read says nothing to keep.
    // An open the ring carries whose source (a dup's, accept's listener)
    // the kernel keeps: fdtrace must hold the source first, or the ledger
    // would look it up in vain (or find a later fd on its number).
    let send = |slot: &mut KeptSlot| {
        count(Loss::NotKept);
        if (dup || accept) && ev.src_fd >= 0 {
            let _ = release(tgid, target_flags, ev.src_fd, slot);
        }
        Opened::Send
    };
    if ev.stack_id == STACK_INLINE || ev.fd < 0 {
        return send(slot);
    }
    let Ok(kept) = slot.get::<Kept>() else {
        return Opened::Send;
    };
    kept.opened_ns = ev.header.ts_ns;
    kept.tid = ev.header.tid;
    kept.syscall = ev.syscall;
    kept.kind_hint = ev.kind_hint;
    kept.family = ev.family;
    kept.sock_type = ev.sock_type;
    kept.protocol = ev.protocol;
    kept.fd_flags =
        (ev.fd_flags & (fd_flags::CLOEXEC | fd_flags::MISSED_ENTRY | fd_flags::READ_FAILED)) as u16;
    kept.src_fd = ev.src_fd;
    kept.stack_id = ev.stack_id;
    kept.caller_ip = ev.caller_ip;
    kept.go_spawn_stack = ev.go_spawn_stack;
    kept.state = 0;
    kept.go_spawn_pc = ev.go_spawn_pc;
    kept.go_transport = ev.go_transport;
    kept.sk = ev.sk;
    kept.local = ev.local;
    kept.remote = ev.remote;
    kept.origin_syscall = ev.syscall;
    kept._pad = [0; 3];
    kept.py_stack = ev.py_stack;
    if ev.syscall == Syscall::Dup2 as u16 || ev.syscall == Syscall::Dup3 as u16 {
        // Over an open fd it closed it first: one the kernel holds is
        // paired here (whatever becomes of the new one); one fdtrace holds
        // (or none: the kernel cannot tell) makes this fdtrace's to pair.
        if !close(tgid, target_flags, ev.fd) {
            return send(slot);
        }
    }
    if dup {
        // The new fd refers to the source's file: its kind, socket and
        // addresses. A source fdtrace holds is not known here.
        let Some(src) = OPEN_FDS.get_ptr(key(tgid, ev.src_fd)) else {
            count(Loss::NotKept);
            return Opened::Send;
        };
        // SAFETY: a live map value; fields copied one by one.
        unsafe {
            kept.kind_hint = (*src).kind_hint;
            kept.family = (*src).family;
            kept.sock_type = (*src).sock_type;
            kept.protocol = (*src).protocol;
            kept.fd_flags |= (*src).fd_flags & fd_flags::LISTENING as u16;
            kept.state = (*src).state;
            kept.sk = (*src).sk;
            kept.local = (*src).local;
            kept.remote = (*src).remote;
            kept.go_transport = (*src).go_transport;
            kept.origin_syscall = (*src).origin_syscall;
        }
    } else if ev.sk != 0 && kept.sock_type == 0 {
        // accept, a received or io_uring-installed socket: what the
        // socket says.
        (kept.family, kept.sock_type, kept.protocol) = sock_spec(ev.sk);
    }
    let site = site_of(tgid, kept);
    if !seen(&site, ev) {
        return send(slot);
    }
    if !insert(key(tgid, ev.fd), kept) {
        return send(slot);
    }
    if ev.fd2 >= 0 && !insert(key(tgid, ev.fd2), kept) {
        // The pair's halves go together: hand both to fdtrace.
        let _ = OPEN_FDS.remove(key(tgid, ev.fd));
        return send(slot);
    }
    count(Loss::Kept);
    if ev.fd2 >= 0 {
        count(Loss::Kept);
    }
    if ev.sk != 0 {
        track_sock(ev.sk, tgid, ev.fd);
    }
    Opened::Handled
}

/// Inserts a kept fd. An entry already there is an fd the kernel closed
/// without a hook seeing it: counted as closed at its place.
#[inline(always)]
fn insert(k: FdKey, kept: &Kept) -> bool {
    if let Some(old) = OPEN_FDS.get_ptr(k) {
        // SAFETY: a live map value, copied out before the delete.
        let site = site_of(k.tgid, unsafe { &*old });
        if OPEN_FDS.remove(k).is_ok() {
            pair(&site);
            count(Loss::KeptOverwritten);
        }
    }
    match OPEN_FDS.insert(k, kept, u64::from(BPF_NOEXIST)) {
        Ok(()) => true,
        Err(e) => {
            count(if i64::from(e) == -E2BIG { Loss::KeptFull } else { Loss::NotKept });
            false
        }
    }
}

/// Makes sure the place is counted; the first time, tells fdtrace, which
/// names its stacks while the process lives. `false` when there is no room.
#[inline(always)]
fn seen(site: &SiteKey, ev: &FdOpen) -> bool {
    // SAFETY: only tested for presence.
    if unsafe { PAIRS.get(site) }.is_some() {
        return true;
    }
    match PAIRS.insert(site, 0u64, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            let mut h = header(EventKind::SiteSeen, 0);
            (h.tgid, h.tid) = (site.tgid, ev.header.tid);
            let _ = send(SiteSeen {
                header: h,
                stack_id: site.stack_id,
                go_spawn_stack: site.go_spawn_stack,
                caller_ip: site.caller_ip,
                origin: site.origin,
            })
            .map_err(count);
            true
        }
        Err(e) if i64::from(e) == -E2BIG => {
            count(Loss::KeptFull);
            false
        }
        // Another CPU made it first.
        Err(_) => true,
    }
}

/// Counts one open paired with its close at `site`.
#[inline(always)]
fn pair(site: &SiteKey) {
    if let Some(n) = PAIRS.get_ptr_mut(site) {
        atomic_add(n, 1);
    }
    count(Loss::Paired);
}

/// A close of `fd`: paired in the kernel when it holds the fd (`true`), else
/// the close is fdtrace's to see (`false`).
#[inline(always)]
pub fn close(tgid: u32, target_flags: u32, fd: i32) -> bool {
    if !pairing(target_flags) {
        return false;
    }
    let k = key(tgid, fd);
    let Some(kept) = OPEN_FDS.get_ptr(k) else {
        return false;
    };
    // SAFETY: a live map value, copied out before the delete.
    let (site, sk) = unsafe { (site_of(tgid, &*kept), (*kept).sk) };
    // fdtrace may have taken it since the lookup: then it is fdtrace's.
    if OPEN_FDS.remove(k).is_err() {
        return false;
    }
    pair(&site);
    if sk != 0 {
        // State changes after the close have nobody to report to.
        // SAFETY: only read.
        if unsafe { SOCKS.get(sk) }.is_some_and(|o| o.tgid == tgid && o.fd == fd) {
            let _ = SOCKS.remove(sk);
        }
    }
    true
}

/// Changes a kept fd: `true` when the kernel held it (the change needs no
/// record), `false` when fdtrace holds it (send the record).
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "passed by value, the 128-byte entry is copied again and the sock state program's stack overflows"
)]
fn update(tgid: u32, target_flags: u32, fd: i32, change: impl FnOnce(&mut Kept)) -> bool {
    if !pairing(target_flags) {
        return false;
    }
    let k = key(tgid, fd);
    let Some(ptr) = OPEN_FDS.get_ptr(k) else {
        return false;
    };
    // SAFETY: a live map value, copied out at once.
    let mut kept = unsafe { core::ptr::read(ptr) };
    change(&mut kept);
    // Replaced only if still there: else fdtrace took it, and gets the
    // record.
    OPEN_FDS.insert(k, &kept, u64::from(BPF_EXIST)).is_ok()
}

/// Sets or clears a kept fd's close-on-exec flag.
#[inline(always)]
pub fn set_cloexec(tgid: u32, target_flags: u32, fd: i32, cloexec: bool) -> bool {
    update(tgid, target_flags, fd, |k| {
        k.fd_flags &= !(fd_flags::CLOEXEC as u16);
        if cloexec {
            k.fd_flags |= fd_flags::CLOEXEC as u16;
        }
    })
}

/// A kept socket after connect, bind or listen: the kernel's addresses
/// (IPv4/IPv6; a Unix address goes with [`release`]) and `listening`.
#[inline(always)]
pub fn sock_call(
    tgid: u32,
    target_flags: u32,
    fd: i32,
    sk: u64,
    local: &SockAddr,
    remote: &SockAddr,
    listening: bool,
) -> bool {
    update(tgid, target_flags, fd, |k| {
        if sk != 0 {
            k.sk = sk;
        }
        if local.family != 0 {
            k.local = *local;
        }
        if remote.family != 0 {
            k.remote = *remote;
        }
        if listening {
            k.fd_flags |= fd_flags::LISTENING as u16;
        }
    })
}

/// A kept socket's TCP state (and addresses) changed.
#[inline(always)]
pub fn sock_state(
    tgid: u32,
    target_flags: u32,
    fd: i32,
    sk: u64,
    state: u32,
    local: &SockAddr,
    remote: &SockAddr,
) -> bool {
    update(tgid, target_flags, fd, |k| {
        if k.sk == sk {
            k.state = state;
            if local.family != 0 {
                k.local = *local;
            }
            if remote.family != 0 {
                k.remote = *remote;
            }
        }
    })
}

/// Hands a kept fd to fdtrace through the ring (a [`Released`] record,
/// before the record of the change the map cannot hold: a Unix address).
/// Nothing to do if the kernel does not hold it.
#[inline(always)]
pub fn release(tgid: u32, target_flags: u32, fd: i32, slot: &mut KeptSlot) -> Result<(), Loss> {
    if !pairing(target_flags) {
        return Ok(());
    }
    release_kept(tgid, fd, slot)
}

/// [`release`], whatever the process's flags.
#[inline(always)]
fn release_kept(tgid: u32, fd: i32, slot: &mut KeptSlot) -> Result<(), Loss> {
    let k = key(tgid, fd);
    let Some(kept) = OPEN_FDS.get_ptr(k) else {
        return Ok(());
    };
    let rec: &mut Released = slot.get()?;
    rec.header = header(EventKind::Released, u64::from(tgid) << 32);
    rec.fd = fd;
    rec._pad = 0;
    // SAFETY: a live map value, copied before the delete decides whose it
    // is.
    rec.kept = unsafe { *kept };
    if OPEN_FDS.remove(k).is_err() {
        // fdtrace took it meanwhile.
        return Ok(());
    }
    crate::emit::send_ref(rec)
}
