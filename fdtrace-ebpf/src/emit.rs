//! Building and sending records: the pieces every hook family shares.
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_get_stack, bpf_task_pt_regs},
    },
    programs::tracing::StackIdContext,
};
use fdtrace_common::{
    config_flags, fd_flags, runtime_flags,
    syscall::consts::{AF_INET, AF_INET6, AF_UNIX},
    EventKind, Header, Loss, SockAddr, StackRecord, MAX_EVENT_SIZE, PATH_CAP, STACK_DEPTH, STACK_INLINE,
};

use crate::maps::{config, EVENTS, LOSSES, RUNTIME, SCRATCH, SOCKS, STACKS, TARGETS};

pub use fdtrace_common::STACK_NOT_CAPTURED;

/// Whether `tgid` is traced. Every program asks this first.
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { TARGETS.get(&tgid).is_some() }
}

/// Whether `fd_install` is hooked (decided after attaching, so read from
/// the RUNTIME map, not CONFIG).
#[inline(always)]
pub fn install_hooked() -> bool {
    // SAFETY: plain read of an array slot.
    RUNTIME.get(0).is_some_and(|f| f & runtime_flags::INSTALL_HOOKED != 0)
}

/// Counts one loss of the given kind.
#[inline(always)]
pub fn count(loss: Loss) {
    if let Some(counter) = LOSSES.get_ptr_mut(loss as u32) {
        // SAFETY: per-CPU slot; programs do not migrate while running.
        unsafe { *counter += 1 };
    }
}

/// Remembers that `sk` belongs to a traced process, so its state changes
/// (often in softirq context) can be attributed.
#[inline(always)]
pub fn track_sock(sk: u64, tgid: u32) {
    if sk != 0 {
        let _ = SOCKS.insert(&sk, &tgid, 0);
    }
}

#[inline(always)]
pub fn header(kind: EventKind, pid_tgid: u64) -> Header {
    Header {
        kind: kind as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad: 0,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Submit flags for a record of `size` bytes: wake fdtrace only when the
/// data waiting crosses `wakeup_bytes` with this record (fdtrace drains on
/// a timer otherwise). A wakeup per record is an interrupt per record:
/// most of tracing's cost in a VM.
#[inline(always)]
pub fn wakeup_flags(size: usize) -> u64 {
    let threshold = u64::from(config!(wakeup_bytes));
    if threshold == 0 {
        return 0;
    }
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if waiting < threshold && waiting + size as u64 >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Sends a fixed-size record, reserved in place in the ring buffer.
#[inline(always)]
pub fn send<T: 'static>(record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(wakeup_flags(size_of::<T>()));
        }
        None => count(Loss::RingbufFull),
    }
}

const USER_CS: u64 = 0x33;
const USER_DS: u64 = 0x2b;

/// The per-CPU scratch record, for records too large for the BPF stack.
#[inline(always)]
pub fn scratch<T>() -> Option<&'static mut T> {
    scratch_slot(0)
}

#[inline(always)]
pub fn scratch_slot<T>(slot: u32) -> Option<&'static mut T> {
    const { assert!(size_of::<T>() <= MAX_EVENT_SIZE) };
    let ptr = SCRATCH.get_ptr_mut(slot)?;
    // SAFETY: the slot is MAX_EVENT_SIZE bytes (asserted above), 8-aligned
    // map memory, owned by this CPU for the duration of the program.
    Some(unsafe { &mut *ptr.cast::<T>() })
}

/// Sends the first `fixed + string_len` bytes (rounded up to 8) of the
/// scratch record: the fixed part of the record and the used part of its
/// trailing string.
#[inline(always)]
pub fn send_scratch(fixed: usize, string_len: usize) {
    send_slot(0, fixed, string_len)
}

#[inline(always)]
fn send_slot(slot: u32, fixed: usize, string_len: usize) {
    let mut size = fixed + ((string_len + 7) & !7);
    if size > MAX_EVENT_SIZE {
        size = MAX_EVENT_SIZE;
    }
    let Some(ptr) = SCRATCH.get_ptr(slot) else {
        return;
    };
    // SAFETY: `size` is at most the slot's size.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), size) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags(size)).is_err() {
        count(Loss::RingbufFull);
    }
}

/// Captures the user stack into the stack map. Returns the stack id; or
/// [`STACK_INLINE`] when the stack's map bucket held another stack and the
/// frames were sent inline, just before the caller's event; or a negative
/// errno (counted as a loss); or [`STACK_NOT_CAPTURED`].
#[inline(always)]
pub fn user_stack<C: StackIdContext>(ctx: &C, pid_tgid: u64) -> i32 {
    const EEXIST: i32 = 17;
    if config!(flags) & config_flags::CAPTURE_STACKS == 0 {
        return STACK_NOT_CAPTURED;
    }
    match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        Err(err) if err == -EEXIST && send_inline_stack(ctx, pid_tgid) => {
            count(Loss::StackInline);
            STACK_INLINE
        }
        Err(err) => {
            count(Loss::StackFailed);
            err
        }
    }
}

/// Sends the user stack as a [`StackRecord`] (scratch slot 1).
#[inline(always)]
fn send_inline_stack<C: StackIdContext>(ctx: &C, pid_tgid: u64) -> bool {
    let Some(rec) = scratch_slot::<StackRecord>(1) else {
        return false;
    };
    rec.header = header(EventKind::Stack, pid_tgid);
    rec._pad = 0;
    // SAFETY: the helper writes at most the buffer's size.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            rec.frames.as_mut_ptr().cast(),
            size_of::<[u64; STACK_DEPTH]>() as u32,
            u64::from(BPF_F_USER_STACK),
        )
    };
    if bytes <= 0 {
        return false;
    }
    let mut bytes = bytes as usize;
    if bytes > STACK_DEPTH * 8 {
        bytes = STACK_DEPTH * 8;
    }
    rec.nframes = (bytes / 8) as u32;
    send_slot(1, size_of::<StackRecord>() - STACK_DEPTH * 8, bytes);
    true
}

/// The user registers of the current syscall, from `pt_regs` words 1..=20
/// (r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax,
/// ip, cs, flags, sp, ss), read in one go into a per-CPU map slot (the programs that use them are close
/// to the 512-byte stack limit). Not an `Option`: LLVM may copy an
/// `Option`'s uninitialized payload, which the verifier refuses to read;
/// `ok` says whether the words are real.
pub struct UserRegs {
    w: [u64; 20],
    pub ok: bool,
}

/// Scratch slot holding the current [`UserRegs`].
const REGS_SLOT: u32 = 2;

impl UserRegs {
    /// Reads the registers; `None` only if the scratch slot is missing.
    #[inline(always)]
    pub fn read() -> Option<&'static UserRegs> {
        let regs: &mut UserRegs = scratch_slot(REGS_SLOT)?;
        regs.ok = false;
        let from = if config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
            // SAFETY: the loader only sets the flag on kernels that have
            // bpf_task_pt_regs.
            unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
        } else {
            Self::stack_pt_regs()
        };
        if from != 0 {
            let src = (from + 8) as *const u8;
            // SAFETY: checked kernel read into the slot.
            let dst = unsafe { core::slice::from_raw_parts_mut(regs.w.as_mut_ptr().cast::<u8>(), 20 * 8) };
            regs.ok = unsafe { bpf_probe_read_kernel_buf(src, dst) }.is_ok();
        }
        // Trust registers only if they are a 64-bit user frame (cs, ss): a
        // kernel thread, or a wrong THREAD_SIZE guess, fails this.
        if regs.w[16] != USER_CS || regs.w[19] != USER_DS {
            regs.ok = false;
        }
        Some(regs)
    }

    /// x86_64's `task_pt_regs()`, where there is no helper: the user
    /// registers are the last `pt_regs` of the task's kernel stack. 0 if
    /// the loader gave no offsets.
    #[inline(always)]
    fn stack_pt_regs() -> u64 {
        let (stack_off, thread_size) = (config!(task_stack_off), config!(thread_size));
        if stack_off == 0 || thread_size == 0 {
            return 0;
        }
        // SAFETY: checked kernel read.
        let task = unsafe { bpf_get_current_task() };
        match unsafe { bpf_probe_read_kernel((task + u64::from(stack_off)) as *const u64) } {
            Ok(stack) if stack != 0 => stack + u64::from(thread_size) - size_of::<pt_regs>() as u64,
            _ => 0,
        }
    }

    /// The syscall's arguments (x86_64: di, si, dx, r10, r8, r9). At
    /// syscall exit they still hold what the caller passed: handlers read
    /// them, they do not write them.
    #[inline(always)]
    pub fn args(&self) -> [u64; 6] {
        let r = &self.w;
        [r[13], r[12], r[11], r[6], r[8], r[7]]
    }

    /// r14: the current goroutine's `g` in Go code (register ABI, Go 1.17+).
    #[inline(always)]
    pub fn r14(&self) -> u64 {
        self.w[0]
    }

    /// The number of the syscall in progress.
    #[inline(always)]
    pub fn syscall_nr(&self) -> u32 {
        self.w[14] as u32
    }

    /// The word at the user stack pointer. At the `syscall` instruction of
    /// a frameless libc wrapper it is the return address into the
    /// wrapper's caller, which a frame-pointer walk skips.
    #[inline(always)]
    pub fn caller_ip(&self) -> u64 {
        let sp = self.w[18];
        if !self.ok || sp == 0 {
            return 0;
        }
        // SAFETY: checked user read.
        unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0)
    }
}

/// A syscall's arguments, when known (from the registers or the entry
/// stash). Always initialized, for the same reason as [`UserRegs`].
#[derive(Clone, Copy)]
pub struct Args {
    pub known: bool,
    pub args: [u64; 6],
}

impl Args {
    pub const UNKNOWN: Args = Args { known: false, args: [0; 6] };
}

/// Reads a NUL-terminated user string into `dst`. Returns the bytes used
/// and the `fd_flags` to add (truncated or read failure).
#[inline(always)]
pub fn read_user_str(src: u64, dst: &mut [u8; PATH_CAP]) -> (u16, u32) {
    if src == 0 {
        return (0, 0);
    }
    // SAFETY: the helper bounds the write to `dst`.
    match unsafe { bpf_probe_read_user_str_bytes(src as *const u8, dst) } {
        Ok(s) => {
            let len = s.len();
            // A string that fills the buffer lost at least its terminator.
            let flags = if len + 1 >= PATH_CAP { fd_flags::PATH_TRUNCATED } else { 0 };
            (len as u16, flags)
        }
        Err(_) => {
            count(Loss::ReadFailed);
            (0, fd_flags::READ_FAILED)
        }
    }
}

/// Reads a user `struct sockaddr` of `len` bytes. An `AF_UNIX` path goes to
/// `path`. Returns the bytes used in `path` and `fd_flags` to add.
#[inline(always)]
pub fn read_sockaddr(src: u64, len: u64, out: &mut SockAddr, path: &mut [u8; PATH_CAP]) -> (u16, u32) {
    *out = SockAddr::default();
    if src == 0 || len < 2 {
        return (0, 0);
    }
    // SAFETY: user reads through the checked helper.
    let Ok(family) = (unsafe { bpf_probe_read_user(src as *const u16) }) else {
        count(Loss::ReadFailed);
        return (0, fd_flags::READ_FAILED);
    };
    out.family = family;
    let ok = match family {
        // struct sockaddr_in: family, port (be), addr.
        AF_INET if len >= 8 => unsafe {
            read_port(src, out) && bpf_probe_read_user_buf((src + 4) as *const u8, &mut out.addr[..4]).is_ok()
        },
        // struct sockaddr_in6: family, port, flowinfo, addr[16], scope_id.
        AF_INET6 if len >= 24 => unsafe {
            let ok =
                read_port(src, out) && bpf_probe_read_user_buf((src + 8) as *const u8, &mut out.addr).is_ok();
            if len >= 28 {
                out.scope_id = bpf_probe_read_user((src + 24) as *const u32).unwrap_or(0);
            }
            ok
        },
        AF_UNIX => {
            // sun_path: up to len - 2 bytes (at most 108), not necessarily
            // NUL-terminated; abstract addresses start with a NUL. The size
            // is masked so older verifiers (5.10) see it bounded and
            // unsigned.
            let n = (len.min(110) as u32).saturating_sub(2);
            // The compiler knows n <= 108 and would drop a plain mask; read
            // it back through a volatile so the mask reaches the verifier.
            // SAFETY: reading a local.
            let n = unsafe { core::ptr::read_volatile(&n) } & 0x7f;
            if n == 0 {
                return (0, 0);
            }
            // SAFETY: n <= 127 < PATH_CAP; the helper writes at most n bytes.
            let ret = unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_user(
                    path.as_mut_ptr().cast(),
                    n,
                    (src + 2) as *const _,
                )
            };
            if ret != 0 {
                count(Loss::ReadFailed);
                return (0, fd_flags::READ_FAILED);
            }
            // Userspace trims a pathname address at its first NUL.
            return (n.min(108) as u16, 0);
        }
        _ => true,
    };
    if ok {
        (0, 0)
    } else {
        count(Loss::ReadFailed);
        (0, fd_flags::READ_FAILED)
    }
}

/// # Safety
/// `src` is a user address.
#[inline(always)]
unsafe fn read_port(src: u64, out: &mut SockAddr) -> bool {
    match unsafe { bpf_probe_read_user((src + 2) as *const u16) } {
        Ok(port) => {
            out.port = u16::from_be(port);
            true
        }
        Err(_) => false,
    }
}

/// Reads the two ints a pipe/socketpair wrote to user memory.
#[inline(always)]
pub fn read_fd_pair(src: u64) -> Option<(i32, i32)> {
    // SAFETY: user read through the checked helper.
    match unsafe { bpf_probe_read_user(src as *const [i32; 2]) } {
        Ok([a, b]) => Some((a, b)),
        Err(_) => {
            count(Loss::ReadFailed);
            None
        }
    }
}
