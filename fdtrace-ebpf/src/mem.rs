//! Reading kernel and user memory: the one place the probe-read helpers
//! are called for plain values. Each returns `None` for a null base or a
//! faulting read; what a failure means (a loss to count, a field left
//! unknown) is the caller's to decide.
use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
    bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes, generated,
};

/// The `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn kernel<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: a checked kernel read (it faults into an error, never a crash).
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) }.ok()
}

/// Fills `dst` from `base + off` in kernel memory; whether it worked.
#[inline(always)]
pub fn kernel_buf(base: u64, off: u32, dst: &mut [u8]) -> bool {
    // SAFETY: a checked kernel read, bounded by `dst`.
    base != 0 && unsafe { bpf_probe_read_kernel_buf((base + u64::from(off)) as *const u8, dst) }.is_ok()
}

/// The `T` at `addr` in the current task's user memory.
#[inline(always)]
pub fn user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: a checked user read.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// Fills `dst` from `addr` in user memory; whether it worked.
#[inline(always)]
pub fn user_buf(addr: u64, dst: &mut [u8]) -> bool {
    // SAFETY: a checked user read, bounded by `dst`.
    addr != 0 && unsafe { bpf_probe_read_user_buf(addr as *const u8, dst) }.is_ok()
}

/// Reads a NUL-terminated user string into `dst`: its length (without the
/// NUL, at most `dst.len() - 1`).
#[inline(always)]
pub fn user_str(addr: u64, dst: &mut [u8]) -> Option<usize> {
    // SAFETY: a checked user read; the helper bounds the write to `dst`.
    unsafe { bpf_probe_read_user_str_bytes(addr as *const u8, dst) }.ok().map(|s| s.len())
}

/// Reads a NUL-terminated kernel string into `dst`: its length.
#[inline(always)]
pub fn kernel_str(addr: u64, dst: &mut [u8]) -> Option<usize> {
    // SAFETY: a checked kernel read; the helper bounds the write to `dst`.
    unsafe { bpf_probe_read_kernel_str_bytes(addr as *const u8, dst) }.ok().map(|s| s.len())
}

/// Reads the first `n` bytes (at most 127) at `addr` in user memory into
/// `dst`: a read whose size is only known at run time.
#[inline(always)]
pub fn user_upto_127(addr: u64, dst: &mut [u8; fdtrace_common::PATH_CAP], n: u32) -> bool {
    // The size is masked so older verifiers (5.10) see it bounded and
    // unsigned. The compiler knows the callers' bounds and would drop a
    // plain mask; read it back through a volatile so the mask reaches the
    // verifier.
    // SAFETY: reading a local.
    let n = unsafe { core::ptr::read_volatile(&n) } & 0x7f;
    // SAFETY: n <= 127 < PATH_CAP; the helper writes at most n bytes.
    n == 0 || unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr().cast(), n, addr as *const _) } == 0
}

/// Bytes [`user_at`] reads into.
pub const USER_AT_CAP: usize = 192;

/// Reads `len` bytes at `addr` in user memory into `dst[at..]`, where both
/// are known only at run time. For the verifier, `at` is masked to 0..=63
/// and `len` to 0..=127, so the write stays inside `dst` whatever they are
/// (callers keep them smaller).
#[inline(always)]
pub fn user_at(addr: u64, dst: &mut [u8; USER_AT_CAP], at: u32, len: u32) -> bool {
    // As in `user_upto_127`: volatile reads keep the masks from being
    // folded away by a compiler that knows the callers' bounds.
    // SAFETY: reading locals.
    let (at, len) = unsafe { (core::ptr::read_volatile(&at) & 0x3f, core::ptr::read_volatile(&len) & 0x7f) };
    // SAFETY: at + len <= 63 + 127 < USER_AT_CAP: the helper writes inside
    // `dst`.
    len == 0
        || unsafe {
            generated::bpf_probe_read_user(dst.as_mut_ptr().add(at as usize).cast(), len, addr as *const _)
        } == 0
}

/// Fills `dst` from `addr` in user memory, whether or not the read works
/// (a failed read leaves zeros: the helper clears its buffer). No result
/// to branch on: in a loop, each read leaves the verifier one path.
#[inline(always)]
pub fn user_or_zero<T>(addr: u64, dst: &mut T) {
    // SAFETY: a checked user read of `size_of::<T>()` bytes into `dst`.
    unsafe {
        generated::bpf_probe_read_user((dst as *mut T).cast(), size_of::<T>() as u32, addr as *const _);
    }
}
