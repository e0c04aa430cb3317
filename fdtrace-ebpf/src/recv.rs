//! fds received over `SCM_RIGHTS` (recvmsg, recvmmsg), seen at the
//! syscall's exit on the tracepoint tier: the kernel has installed them
//! and written their numbers into the caller's control buffer
//! (`scm_detach_fds`), and `msg_controllen` into the `msghdr` says how much
//! of it it wrote. Each fd becomes an `FdOpen` record with the stack, its
//! kind and socket from the fd table, and close-on-exec from
//! `MSG_CMSG_CLOEXEC` or the table's bit: the record `fd_install` makes on
//! the function tiers (which do not attach these exits).
//!
//! The walk is bounded for the verifier: [`MAX_MSGS`] messages of a
//! recvmmsg, [`MAX_CMSGS`] control messages per message, [`MAX_FDS`] fds
//! per call. A call with more is reported as far as the bounds go and
//! counted as [`Loss::RecvTruncated`]; reconciliation finds the rest. Loop
//! counters are u64: the verifier keeps a 64-bit counter exact through
//! the compiler's spills, where a u32's zero-extension loses its bounds
//! (it then sees neither an in-bounds index nor a loop that ends).
use aya_ebpf::programs::tracing::StackIdContext;
use aya_log_ebpf::debug;
use fdtrace_common::{
    fd_flags,
    syscall::consts::{
        AF_UNIX, CMSGHDR_SIZE, CMSG_ALIGN, MMSGHDR_SIZE, MSGHDR_CONTROLLEN_OFF, MSGHDR_CONTROL_OFF,
        SCM_RIGHTS, SOL_SOCKET,
    },
    FdOpen, Loss, Syscall, PATH_CAP,
};

use crate::{
    emit::{count, track_sock, user_stack, Args, EventSlot, FdsSlot, StackSlot},
    fdopen::{begin, Site},
    mem::{self, USER_AT_CAP},
    sockets::{fd_is_cloexec, file_kind, file_of_fd, sock_addrs, sock_family, sock_of_fd, sock_of_file},
    table::NR_RECVMSG,
};

/// fds reported per call.
pub const MAX_FDS: u64 = 16;
/// Control messages walked per message (a unix socket adds credentials,
/// security labels, timestamps... before the fds).
pub const MAX_CMSGS: u64 = 8;
/// Messages of a recvmmsg walked.
pub const MAX_MSGS: u64 = 8;
/// Messages of a recvmmsg past [`MAX_MSGS`] checked for control data (any
/// makes the call truncated); a call with more is truncated.
pub const MAX_MSGS_CHECKED: u64 = 64;

/// The fds found, in the fds slot of the scratch memory.
#[repr(C)]
pub struct Received {
    n: u32,
    truncated: u32,
    /// `MAX_FDS` ints, in a buffer large enough for [`mem::user_at`].
    fds: [u8; USER_AT_CAP],
}

/// Reports the fds a recvmsg/recvmmsg received (`ret`: its return value).
#[inline(always)]
pub fn report<C: StackIdContext>(
    site: &Site<'_, C>,
    event: &mut EventSlot,
    stack: &mut StackSlot,
    fds: &mut FdsSlot,
    nr: u32,
    ret: i64,
    entry: &Args,
) -> Result<(), Loss> {
    // A missed entry is counted already; without the arguments there is
    // no buffer to read.
    if ret < 0 || !entry.known {
        return Ok(());
    }
    // Only unix sockets carry fds: the calls of every other socket (UDP
    // servers batching with recvmmsg) cost no user reads. Where the kernel
    // walk is unavailable the buffers are read anyway.
    if sock_of_fd(entry.args[0] as i32).and_then(sock_family).is_some_and(|family| family != AF_UNIX) {
        return Ok(());
    }
    let (syscall, flags) =
        if nr == NR_RECVMSG { (Syscall::Recvmsg, entry.args[2]) } else { (Syscall::Recvmmsg, entry.args[3]) };
    let got: &mut Received = fds.get()?;
    got.n = 0;
    got.truncated = 0;
    if nr == NR_RECVMSG {
        collect(got, entry.args[1]);
    } else {
        // recvmmsg returns the number of messages received.
        let mut m: u64 = 0;
        while m < MAX_MSGS {
            if m >= ret as u64 {
                break;
            }
            collect(got, entry.args[1] + m * MMSGHDR_SIZE);
            m += 1;
        }
        // Past the walk, a message with control data may carry fds.
        let mut m = MAX_MSGS;
        while m < MAX_MSGS_CHECKED {
            if m >= ret as u64 {
                break;
            }
            if mem::user::<u64>(entry.args[1] + m * MMSGHDR_SIZE + MSGHDR_CONTROLLEN_OFF).unwrap_or(1) != 0 {
                got.truncated = 1;
                break;
            }
            m += 1;
        }
        if ret as u64 > MAX_MSGS_CHECKED {
            got.truncated = 1;
        }
    }
    let mut i: u64 = 0;
    while i < MAX_FDS {
        if i >= u64::from(got.n) {
            break;
        }
        let at = 4 * i as usize;
        let fd = i32::from_ne_bytes([got.fds[at], got.fds[at + 1], got.fds[at + 2], got.fds[at + 3]]);
        report_fd(site, event, stack, syscall, flags, fd)?;
        i += 1;
    }
    if got.truncated != 0 {
        debug!(
            &(),
            "{} received more fds than fdtrace reports per call ({}): the rest show as missed opens", nr, i
        );
        return Err(Loss::RecvTruncated);
    }
    Ok(())
}

/// Adds the `SCM_RIGHTS` fds of one `msghdr` to `got`.
#[inline(always)]
fn collect(got: &mut Received, msghdr: u64) {
    let (Some(control), Some(len)) =
        (mem::user::<u64>(msghdr + MSGHDR_CONTROL_OFF), mem::user::<u64>(msghdr + MSGHDR_CONTROLLEN_OFF))
    else {
        count(Loss::ReadFailed);
        return;
    };
    if control == 0 {
        return;
    }
    let mut off = 0u64;
    let mut c: u64 = 0;
    while c < MAX_CMSGS {
        if off + CMSGHDR_SIZE > len {
            return;
        }
        // cmsg_len, then cmsg_level and cmsg_type in one word.
        let Some([cmsg_len, level_type]) = mem::user::<[u64; 2]>(control + off) else {
            count(Loss::ReadFailed);
            return;
        };
        // The kernel wrote these; anything else is not a message to walk.
        if cmsg_len < CMSGHDR_SIZE || off + cmsg_len > len {
            return;
        }
        if level_type as u32 as i32 == SOL_SOCKET && (level_type >> 32) as u32 as i32 == SCM_RIGHTS {
            take(got, control + off + CMSGHDR_SIZE, (cmsg_len - CMSGHDR_SIZE) / 4);
        }
        off += (cmsg_len + CMSG_ALIGN - 1) & !(CMSG_ALIGN - 1);
        c += 1;
    }
    if off + CMSGHDR_SIZE <= len {
        got.truncated = 1;
    }
}

/// Copies up to the room left of `nfds` ints at `data` into `got`.
#[inline(always)]
fn take(got: &mut Received, data: u64, nfds: u64) {
    let n = got.n;
    if u64::from(n) >= MAX_FDS {
        got.truncated = 1;
        return;
    }
    let room = MAX_FDS - u64::from(n);
    let k = if nfds > room {
        got.truncated = 1;
        room
    } else {
        nfds
    };
    if mem::user_at(data, &mut got.fds, 4 * n, 4 * k as u32) {
        got.n = n + k as u32;
    } else {
        count(Loss::ReadFailed);
    }
}

/// One received fd's record.
#[inline(always)]
fn report_fd<C: StackIdContext>(
    site: &Site<'_, C>,
    event: &mut EventSlot,
    stack: &mut StackSlot,
    syscall: Syscall,
    flags: u64,
    fd: i32,
) -> Result<(), Loss> {
    let ev: &mut FdOpen = event.get()?;
    begin(ev, site, syscall, i64::from(fd));
    ev.flags = flags;
    let file = file_of_fd(fd);
    if let Some(file) = file {
        ev.kind_hint = file_kind(file);
    }
    if syscall.new_fd_cloexec(flags) || fd_is_cloexec(fd) {
        ev.fd_flags |= fd_flags::CLOEXEC;
    }
    if let Some(sk) = file.and_then(sock_of_file) {
        ev.sk = sk;
        track_sock(sk, (site.pid_tgid >> 32) as u32);
        sock_addrs(sk, &mut ev.local, &mut ev.remote);
    }
    ev.stack_id = user_stack(site.ctx, stack, site.pid_tgid);
    ev.caller_ip = site.regs.caller_ip();
    event.send(size_of::<FdOpen>() - PATH_CAP, 0)
}
