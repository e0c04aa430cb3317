//! What the loader assumes about the traced kernel's architecture; the
//! kernel side's counterpart is `fdtrace-ebpf/src/arch.rs`.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "fdtrace supports x86_64 only: its kernel programs read x86_64 register frames and syscall numbers"
);

/// x86_64 kernel stacks are 16 KiB (`THREAD_SIZE`; 32 KiB with KASAN,
/// which the kernel side detects: the registers it finds then fail its
/// segment check). Used where there is no `bpf_task_pt_regs` (before Linux
/// 5.15) to find the user registers at the top of the stack.
#[cfg(target_arch = "x86_64")]
pub const THREAD_SIZE: u32 = 16 << 10;
