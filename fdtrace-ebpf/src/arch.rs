//! What depends on the architecture of the traced kernel: the user
//! register frame (`struct pt_regs`), where the syscall's number and
//! arguments sit in it, the user segment selectors, and the syscall
//! numbers. Only x86_64 is supported; the build passes
//! `--cfg=bpf_target_arch="x86_64"` (see `xtask/src/ebpf_build.rs`).
#[cfg(not(bpf_target_arch = "x86_64"))]
compile_error!(
    "fdtrace's kernel programs support x86_64 only (pt_regs layout, syscall numbers, Go's register ABI): \
     build with --cfg=bpf_target_arch=\"x86_64\" (cargo xtask build-ebpf does)"
);

#[cfg(bpf_target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(bpf_target_arch = "x86_64")]
mod x86_64 {
    use aya_ebpf::bindings::pt_regs;
    use fdtrace_common::Syscall;

    /// The architecture's number of a syscall.
    pub const fn nr(sc: Syscall) -> u32 {
        sc.nr_x86_64()
    }

    /// `pt_regs` words read by [`crate::emit::UserRegs`]: words 1..=20
    /// (r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di,
    /// orig_ax, ip, cs, flags, sp, ss), from the start of the frame.
    pub const REGS_FIRST_WORD: u64 = 1;
    pub const REGS_WORDS: usize = 20;
    /// Indices into those words.
    pub const W_R14: usize = 0;
    pub const W_SYSCALL_NR: usize = 14; // orig_ax
    pub const W_CS: usize = 16;
    pub const W_SP: usize = 18;
    pub const W_SS: usize = 19;
    /// The syscall arguments: di, si, dx, r10, r8, r9.
    pub const W_ARGS: [usize; 6] = [13, 12, 11, 6, 8, 7];

    /// The segment selectors of a 64-bit user frame (`__USER_CS`,
    /// `__USER_DS`).
    pub const USER_CS: u64 = 0x33;
    pub const USER_DS: u64 = 0x2b;

    /// `task_pt_regs()` where there is no `bpf_task_pt_regs` (before Linux
    /// 5.15): the user registers are the last `pt_regs` at the top of the
    /// task's kernel stack.
    pub const fn stack_pt_regs(stack: u64, thread_size: u64) -> u64 {
        stack + thread_size - size_of::<pt_regs>() as u64
    }

    /// A uprobe's user registers, as Go's register ABI (Go 1.17+, amd64)
    /// uses them: the current goroutine's `g` is in r14, the first
    /// argument in rax.
    pub struct GoRegs {
        pub g: u64,
        pub sp: u64,
        pub arg0: u64,
    }

    /// A uprobe's user stack pointer (at a function's entry, it points at
    /// the return address).
    ///
    /// # Safety
    /// `regs` is a uprobe context's register frame.
    #[inline(always)]
    pub unsafe fn user_sp(regs: *const pt_regs) -> u64 {
        // SAFETY: as in `go_regs`.
        unsafe { (*regs).rsp }
    }

    /// # Safety
    /// `regs` is a uprobe context's register frame.
    #[inline(always)]
    pub unsafe fn go_regs(regs: *const pt_regs) -> GoRegs {
        // SAFETY: the caller passes the context's frame; reads of its
        // fields are context accesses the verifier checks.
        unsafe { GoRegs { g: (*regs).r14, sp: (*regs).rsp, arg0: (*regs).rax } }
    }
}
