//! Building and sending records: the pieces every hook family shares.
//!
//! Every program is a thin wrapper, `finish(try_program(&ctx))`, over a
//! `try_` function returning `Result<_, Loss>`: where a program has to give
//! up, the reason is a [`Loss`] value, and [`finish`] counts it. Partial
//! data (a failed user read, a missing stack) is counted where it happens
//! and the record still goes out, flagged.
use core::arch::asm;

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns,
        generated::{bpf_get_current_task_btf, bpf_get_stack, bpf_task_pt_regs},
    },
    programs::tracing::StackIdContext,
};
use aya_log_ebpf::{debug, warn};
use fdtrace_common::{
    config_flags, fd_flags, runtime_flags,
    syscall::consts::{AF_INET, AF_INET6, AF_UNIX, EEXIST},
    EventKind, Header, Loss, SockAddr, SockOwner, StackRecord, MAX_EVENT_SIZE, PATH_CAP, STACK_DEPTH,
    STACK_INLINE,
};

use crate::{
    arch,
    maps::{config, EVENTS, LOSSES, RUNTIME, SCRATCH, SCRATCH_BUSY, SOCKS, STACKS, TARGETS},
    mem,
};

pub use fdtrace_common::STACK_NOT_CAPTURED;

/// A program's return value, once its `try_` function is done: a loss it
/// stopped at is counted. The value is ignored by the kernel for these
/// program types.
#[inline(always)]
pub fn finish<T>(result: Result<T, Loss>) -> u32 {
    if let Err(loss) = result {
        count(loss);
    }
    0
}

/// Whether `tgid` is traced. Every program asks this first.
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { TARGETS.get(tgid).is_some() }
}

/// The `fdtrace_common::target` flags of `tgid`, if traced.
#[inline(always)]
pub fn traced(tgid: u32) -> Option<u32> {
    // SAFETY: copied out (the value may change under us: any value read is
    // a valid one).
    unsafe { TARGETS.get(tgid) }.copied()
}

/// Whether `fd_install` is hooked (decided after attaching, so read from
/// the RUNTIME map, not CONFIG).
#[inline(always)]
pub fn install_hooked() -> bool {
    RUNTIME.get(0).is_some_and(|f| f & runtime_flags::INSTALL_HOOKED != 0)
}

/// Adds `v` (wrapping: `u64::MAX` subtracts one) to a per-CPU word with a
/// single BPF_XADD. Nothing on this CPU can run between its read and its
/// write, as it could between the load and the store of `*word += v` in a
/// program that can be preempted (see [`Scratch`]). The fetching atomics
/// came in Linux 5.12; this one is in every kernel fdtrace supports.
#[inline(always)]
pub fn atomic_add(word: *mut u64, v: u64) {
    // SAFETY: `word` comes from a successful map lookup (callers check it),
    // so it points at 8 bytes of map value memory the verifier lets
    // programs write.
    unsafe { asm!("lock *(u64 *)({word} + 0) += {v}", word = in(reg) word, v = in(reg) v, options(nostack)) };
}

/// Counts one loss of the given kind.
#[inline(always)]
pub fn count(loss: Loss) {
    if let Some(counter) = LOSSES.get_ptr_mut(loss as u32) {
        atomic_add(counter, 1);
    }
}

/// Remembers that `sk` belongs to a traced process (as `fd`, -1 if not
/// known), so its state changes (often in softirq context) can be
/// attributed.
#[inline(always)]
pub fn track_sock(sk: u64, tgid: u32, fd: i32) {
    if sk != 0 {
        let _ = SOCKS.insert(sk, SockOwner { tgid, fd }, 0);
    }
}

/// A record's header. The thread's name only where `--events` shows it
/// ([`config_flags::COMM`]): reading it is a helper call per record.
#[inline(always)]
pub fn header(kind: EventKind, pid_tgid: u64) -> Header {
    let comm = if config!(flags) & config_flags::COMM != 0 {
        bpf_get_current_comm().unwrap_or([0; 16])
    } else {
        [0; 16]
    };
    Header {
        kind: kind as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad: 0,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm,
    }
}

/// The header of a record that names its process (fork, exec, exit):
/// always with the thread's name.
#[inline(always)]
pub fn named_header(kind: EventKind, pid_tgid: u64) -> Header {
    Header { comm: bpf_get_current_comm().unwrap_or([0; 16]), ..header(kind, pid_tgid) }
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
pub fn send<T: 'static>(record: T) -> Result<(), Loss> {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(wakeup_flags(size_of::<T>()));
            Ok(())
        }
        None => Err(Loss::RingbufFull),
    }
}

/// Sends a record from memory it is in (a scratch slot, a map value).
#[inline(always)]
pub fn send_ref<T>(record: &T) -> Result<(), Loss> {
    EVENTS.output::<T>(record, wakeup_flags(size_of::<T>())).map_err(|_| Loss::RingbufFull)
}

const EVENT_SLOT: u32 = 0;
const STACK_SLOT: u32 = 1;
const REGS_SLOT: u32 = 2;
const FDS_SLOT: u32 = 3;
const KEPT_SLOT: u32 = 4;
const PY_SLOT: u32 = 5;

/// This CPU's scratch memory ([`SCRATCH`]), for records too large for the
/// 512-byte BPF stack, taken by a program for the length of its run. Its
/// slots are fields, each handing out `&mut` to its memory only while it
/// is itself borrowed mutably: two live references to one slot do not
/// type-check, while the event, an inline stack and the registers can be
/// worked on side by side.
///
/// # One per invocation, and why that is enough
/// A program takes at most one `Scratch`, in its `try_` function. Programs
/// do not otherwise share a CPU's scratch, because of how the kernel runs
/// them:
/// - tracepoint and kprobe programs run through `trace_call_bpf()`
///   (`kernel/trace/bpf_trace.c`), with preemption off (`cant_sleep()`),
///   and it skips any program while another one is running on the CPU
///   (the per-CPU `bpf_prog_active`): they never nest, with each other or
///   with themselves;
/// - fentry programs run through `__bpf_prog_enter_recur()`
///   (`kernel/bpf/trampoline.c`) under `migrate_disable()`, which only
///   stops the same program from nesting (`prog->active`). Since Linux
///   5.11, commit 74d862b682f5 ("sched: Make migrate_disable/enable()
///   independent of RT",
///   <https://git.kernel.org/torvalds/c/74d862b682f51e45d25b95b1ecf212428a4967b0>),
///   `migrate_disable()` no longer disables preemption: on a preemptible
///   kernel another task can run on this CPU while an fentry program is
///   halfway through its record, and that task's programs run too.
///
/// So taking the scratch is also checked at run time: a per-CPU counter
/// ([`SCRATCH_BUSY`]) is raised with one atomic add and read back; a taker
/// that does not read 1 lowers it again and gives up with
/// [`Loss::ScratchBusy`]. Two takers can both give up, never both go on.
/// Dropping the `Scratch` lowers the counter.
pub struct Scratch {
    busy: *mut u64,
    pub event: EventSlot,
    pub stack: StackSlot,
    pub regs: RegsSlot,
    pub fds: FdsSlot,
    pub kept: KeptSlot,
}

/// Slot 0: the record being built.
pub struct EventSlot(());
/// Slots 1 and 5: an inline [`StackRecord`], and the Python stack
/// (`python`) read with the same event.
pub struct StackSlot(());
/// Slot 2: the [`UserRegs`].
pub struct RegsSlot(());
/// Slot 3: the fds a recvmsg received (`recv::Received`).
pub struct FdsSlot(());
/// Slot 4: an fd being kept in the kernel (`keep`).
pub struct KeptSlot(());

impl Scratch {
    #[inline(always)]
    pub fn take() -> Result<Scratch, Loss> {
        let busy = SCRATCH_BUSY.get_ptr_mut(0).ok_or(Loss::ScratchBusy)?;
        atomic_add(busy, 1);
        // SAFETY: a map value of this CPU; volatile so the add above is
        // read back, not assumed.
        if unsafe { core::ptr::read_volatile(busy) } != 1 {
            atomic_add(busy, u64::MAX);
            debug!(&(), "scratch memory of this CPU in use by another program: event dropped");
            return Err(Loss::ScratchBusy);
        }
        Ok(Scratch {
            busy,
            event: EventSlot(()),
            stack: StackSlot(()),
            regs: RegsSlot(()),
            fds: FdsSlot(()),
            kept: KeptSlot(()),
        })
    }
}

impl Drop for Scratch {
    #[inline(always)]
    fn drop(&mut self) {
        atomic_add(self.busy, u64::MAX);
    }
}

/// Slot `index` as a `T`.
#[inline(always)]
fn slot<'a, T>(index: u32) -> Result<&'a mut T, Loss> {
    const { assert!(size_of::<T>() <= MAX_EVENT_SIZE && align_of::<T>() <= 8) };
    let ptr = SCRATCH.get_ptr_mut(index).ok_or(Loss::ScratchBusy)?;
    // SAFETY: the slot is MAX_EVENT_SIZE bytes of 8-aligned map memory of
    // this CPU (asserted above), and nothing else refers to it while the
    // reference lives: callers are the slot types' methods, which tie the
    // reference to a mutable borrow of their slot, of which there is one
    // per taken `Scratch`, of which there is one per CPU at a time.
    // Every `T` put here is plain integers: any bytes are a valid value.
    Ok(unsafe { &mut *ptr.cast::<T>() })
}

/// Sends the first `fixed + string_len` bytes (rounded up to 8) of a slot:
/// the fixed part of the record and the used part of its trailing string.
#[inline(always)]
fn send_slot(index: u32, fixed: usize, string_len: usize) -> Result<(), Loss> {
    let mut size = fixed + ((string_len + 7) & !7);
    if size > MAX_EVENT_SIZE {
        size = MAX_EVENT_SIZE;
    }
    let ptr = SCRATCH.get_ptr(index).ok_or(Loss::ScratchBusy)?;
    // SAFETY: `size` is at most the slot's size; no `&mut` to the slot is
    // live (the caller holds its slot borrowed shared).
    let bytes = unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), size) };
    EVENTS.output::<[u8]>(bytes, wakeup_flags(size)).map_err(|_| Loss::RingbufFull)
}

impl EventSlot {
    /// The record being built, as a `T` (its fields hold whatever the last
    /// record left: write every one).
    #[inline(always)]
    pub fn get<T>(&mut self) -> Result<&mut T, Loss> {
        slot(EVENT_SLOT)
    }

    /// Sends the first `fixed + string_len` bytes (rounded up to 8) of the
    /// record.
    #[inline(always)]
    pub fn send(&self, fixed: usize, string_len: usize) -> Result<(), Loss> {
        send_slot(EVENT_SLOT, fixed, string_len)
    }
}

impl FdsSlot {
    #[inline(always)]
    pub fn get<T>(&mut self) -> Result<&mut T, Loss> {
        slot(FDS_SLOT)
    }
}

impl KeptSlot {
    #[inline(always)]
    pub fn get<T>(&mut self) -> Result<&mut T, Loss> {
        slot(KEPT_SLOT)
    }
}

/// Captures the user stack into the stack map. Returns the stack id; or
/// [`STACK_INLINE`] when the stack's map bucket held another stack and the
/// frames were sent inline, just before the caller's event; or a negative
/// errno (counted as a loss); or [`STACK_NOT_CAPTURED`].
#[inline(always)]
pub fn user_stack<C: StackIdContext>(ctx: &C, stack: &mut StackSlot, pid_tgid: u64) -> i32 {
    if config!(flags) & config_flags::CAPTURE_STACKS == 0 {
        return STACK_NOT_CAPTURED;
    }
    match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        Err(err) if err == -(EEXIST as i32) && stack.send_inline(ctx, pid_tgid) => {
            count(Loss::StackInline);
            STACK_INLINE
        }
        Err(err) => {
            count(Loss::StackFailed);
            err
        }
    }
}

impl StackSlot {
    /// The Python stack being read (`fdtrace_common::PyStack`).
    #[inline(always)]
    pub fn py<T>(&mut self) -> Result<&mut T, Loss> {
        slot(PY_SLOT)
    }

    /// Sends the user stack as a [`StackRecord`].
    #[inline(always)]
    fn send_inline<C: StackIdContext>(&mut self, ctx: &C, pid_tgid: u64) -> bool {
        let Ok(rec) = slot::<StackRecord>(STACK_SLOT) else {
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
        match send_slot(STACK_SLOT, size_of::<StackRecord>() - STACK_DEPTH * 8, bytes) {
            Ok(()) => true,
            Err(loss) => {
                count(loss);
                false
            }
        }
    }
}

/// The user registers of the current syscall, the [`arch`] words of
/// `pt_regs`, read in one go into a per-CPU map slot (the programs that
/// use them are close to the 512-byte stack limit). Not an `Option`: LLVM
/// may copy an `Option`'s uninitialized payload, which the verifier
/// refuses to read; `ok` says whether the words are real.
pub struct UserRegs {
    w: [u64; arch::REGS_WORDS],
    pub ok: bool,
}

impl RegsSlot {
    /// Reads the registers.
    #[inline(always)]
    pub fn read(&mut self) -> Result<&UserRegs, Loss> {
        let regs: &mut UserRegs = slot(REGS_SLOT)?;
        regs.ok = false;
        let from = if config!(flags) & config_flags::HAVE_TASK_PT_REGS != 0 {
            // SAFETY: the loader only sets the flag on kernels that have
            // bpf_task_pt_regs.
            unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
        } else {
            stack_pt_regs()
        };
        if from != 0 {
            // SAFETY: viewing the word array as bytes, for the read below.
            let dst = unsafe {
                core::slice::from_raw_parts_mut(regs.w.as_mut_ptr().cast::<u8>(), arch::REGS_WORDS * 8)
            };
            regs.ok = mem::kernel_buf(from, (arch::REGS_FIRST_WORD * 8) as u32, dst);
        }
        // Trust registers only if they are a 64-bit user frame (cs, ss): a
        // kernel thread, or a wrong THREAD_SIZE guess, fails this.
        if regs.ok && (regs.w[arch::W_CS] != arch::USER_CS || regs.w[arch::W_SS] != arch::USER_DS) {
            regs.ok = false;
            warn!(
                &(),
                "user registers fail the segment check (cs {:x}, ss {:x}): no syscall arguments or caller",
                regs.w[arch::W_CS],
                regs.w[arch::W_SS]
            );
        }
        Ok(regs)
    }
}

/// `task_pt_regs()` where there is no helper (see
/// [`arch::stack_pt_regs`]). 0 if the loader gave no offsets.
#[inline(always)]
fn stack_pt_regs() -> u64 {
    let (stack_off, thread_size) = (config!(task_stack_off), config!(thread_size));
    if stack_off == 0 || thread_size == 0 {
        return 0;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    match mem::kernel::<u64>(task, stack_off) {
        Some(stack) if stack != 0 => arch::stack_pt_regs(stack, u64::from(thread_size)),
        _ => 0,
    }
}

impl UserRegs {
    /// The syscall's arguments. At syscall exit they still hold what the
    /// caller passed: handlers read them, they do not write them.
    #[inline(always)]
    pub fn args(&self) -> [u64; 6] {
        arch::W_ARGS.map(|i| self.w[i])
    }

    /// r14: the current goroutine's `g` in Go code (register ABI, Go 1.17+).
    #[inline(always)]
    pub fn go_g(&self) -> u64 {
        self.w[arch::W_R14]
    }

    /// The number of the syscall in progress.
    #[inline(always)]
    pub fn syscall_nr(&self) -> u32 {
        self.w[arch::W_SYSCALL_NR] as u32
    }

    /// The word at the user stack pointer. At the `syscall` instruction of
    /// a frameless libc wrapper it is the return address into the
    /// wrapper's caller, which a frame-pointer walk skips.
    #[inline(always)]
    pub fn caller_ip(&self) -> u64 {
        if !self.ok {
            return 0;
        }
        mem::user::<u64>(self.w[arch::W_SP]).unwrap_or(0)
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
    match mem::user_str(src, dst) {
        Some(len) => {
            // A string that fills the buffer lost at least its terminator.
            let flags = if len + 1 >= PATH_CAP { fd_flags::PATH_TRUNCATED } else { 0 };
            (len as u16, flags)
        }
        None => {
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
    let Some(family) = mem::user::<u16>(src) else {
        count(Loss::ReadFailed);
        return (0, fd_flags::READ_FAILED);
    };
    out.family = family;
    let port = |out: &mut SockAddr| match mem::user::<u16>(src + 2) {
        Some(port) => {
            out.port = u16::from_be(port);
            true
        }
        None => false,
    };
    let ok = match family {
        // struct sockaddr_in: family, port (be), addr.
        AF_INET if len >= 8 => port(out) && mem::user_buf(src + 4, &mut out.addr[..4]),
        // struct sockaddr_in6: family, port, flowinfo, addr[16], scope_id.
        AF_INET6 if len >= 24 => {
            let ok = port(out) && mem::user_buf(src + 8, &mut out.addr);
            if len >= 28 {
                out.scope_id = mem::user::<u32>(src + 24).unwrap_or(0);
            }
            ok
        }
        AF_UNIX => {
            // sun_path: up to len - 2 bytes (at most 108), not necessarily
            // NUL-terminated; abstract addresses start with a NUL.
            let n = (len.min(110) as u32).saturating_sub(2);
            if n == 0 {
                return (0, 0);
            }
            if !mem::user_upto_127(src + 2, path, n) {
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

/// Reads the two ints a pipe/socketpair wrote to user memory.
#[inline(always)]
pub fn read_fd_pair(src: u64) -> Option<(i32, i32)> {
    match mem::user::<[i32; 2]>(src) {
        Some([a, b]) => Some((a, b)),
        None => {
            count(Loss::ReadFailed);
            None
        }
    }
}
