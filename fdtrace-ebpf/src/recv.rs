//! fds received over `SCM_RIGHTS` (recvmsg, recvmmsg), seen at the
//! syscall's exit on the tracepoint tier: the kernel has installed them
//! and written their numbers into the caller's control buffer
//! (`scm_detach_fds`), and `msg_controllen` into the `msghdr` says how much
//! of it it wrote. The call becomes one `FdsReceived` record: its stack and
//! goroutine, and per fd its number, kind and socket from the fd table and
//! close-on-exec from `MSG_CMSG_CLOEXEC` or the table's bit. The loader
//! turns it into one open per fd, as `fd_install` reports them on the
//! function tiers (which do not attach these exits). Addresses of received
//! sockets come from sock_diag at report time.
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
    kind_hint,
    syscall::consts::{
        AF_UNIX, CMSGHDR_SIZE, CMSG_ALIGN, MMSGHDR_SIZE, MSGHDR_CONTROLLEN_OFF, MSGHDR_CONTROL_OFF,
        SCM_RIGHTS, SOL_SOCKET,
    },
    EventKind, FdsReceived, Loss, ReceivedFd, Syscall, MAX_RECEIVED_FDS,
};

use crate::{
    emit::{count, header, track_sock, user_stack, Args, EventSlot, FdsSlot, StackSlot},
    fdopen::Site,
    go::goroutine_origin,
    mem::{self, USER_AT_CAP},
    python::python_stack,
    sockets::{fd_is_cloexec, file_kind, file_of_fd, sock_family, sock_of_fd, sock_of_file},
    table::NR_RECVMSG,
};

/// fds reported per call.
pub const MAX_FDS: u64 = MAX_RECEIVED_FDS as u64;
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
    if got.n > 0 {
        send_received(site, event, stack, got, syscall, flags)?;
    }
    if got.truncated != 0 {
        debug!(
            &(),
            "{} received more fds than fdtrace reports per call ({}): the rest show as missed opens",
            nr,
            got.n
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

/// One record for the call: its stack and goroutine are every fd's, and
/// per fd only what the fd table says (kind, close-on-exec, socket). A
/// full `FdOpen` per fd in a loop of [`MAX_FDS`] took the verifier a
/// quarter of a second per program.
#[inline(always)]
fn send_received<C: StackIdContext>(
    site: &Site<'_, C>,
    event: &mut EventSlot,
    stack: &mut StackSlot,
    got: &Received,
    syscall: Syscall,
    flags: u64,
) -> Result<(), Loss> {
    let rec: &mut FdsReceived = event.get()?;
    rec.header = header(EventKind::FdsReceived, site.pid_tgid);
    rec.syscall = syscall as u16;
    rec.fd_flags = 0;
    rec.flags = flags;
    rec._pad = 0;
    rec._pad2 = 0;
    (rec.go_spawn_stack, rec.go_spawn_pc, rec.go_transport) =
        goroutine_origin((site.pid_tgid >> 32) as u32, site.regs);
    rec.stack_id = user_stack(site.ctx, stack, site.pid_tgid);
    rec.caller_ip = site.regs.caller_ip();
    rec.py_stack = python_stack(stack, site.pid_tgid);
    let cloexec_flag = syscall.new_fd_cloexec(flags);
    let mut i: u64 = 0;
    while i < MAX_FDS {
        if i >= u64::from(got.n) {
            break;
        }
        let at = 4 * i as usize;
        let fd = i32::from_ne_bytes([got.fds[at], got.fds[at + 1], got.fds[at + 2], got.fds[at + 3]]);
        let slot = &mut rec.fds[i as usize];
        slot.fd = fd;
        slot._pad = 0;
        slot.kind_hint = kind_hint::UNKNOWN;
        slot.sk = 0;
        let file = file_of_fd(fd);
        if let Some(file) = file {
            slot.kind_hint = file_kind(file);
        }
        slot.cloexec = u8::from(cloexec_flag || fd_is_cloexec(fd));
        if let Some(sk) = file.and_then(sock_of_file) {
            slot.sk = sk;
            track_sock(sk, (site.pid_tgid >> 32) as u32, fd);
        }
        i += 1;
    }
    rec.n = i as u16;
    event.send(
        size_of::<FdsReceived>() - MAX_RECEIVED_FDS * size_of::<ReceivedFd>(),
        i as usize * size_of::<ReceivedFd>(),
    )
}
