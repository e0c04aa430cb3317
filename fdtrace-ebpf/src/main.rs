//! fdtrace's kernel programs.
//!
//! Data flow: a hook fires in a traced process → the program checks the
//! tgid against `TARGETS` → fills a record from `fdtrace-common` → sends it
//! through the `EVENTS` ring buffer. Anything that cannot be delivered in
//! full is counted in `LOSSES`.
//!
//! One module per hook family:
//! - [`syscalls`]: syscall tracepoints (`syscalls:sys_enter_*`/`sys_exit_*`),
//!   most of them generated from the syscall table ([`table`]);
//! - [`fdtable`]: the kernel's fd-table functions (fentry/kprobe tiers);
//! - [`tcp`]: TCP states: `inet_sock_set_state`, and `tcp_connect`/`tcp_close`
//!   (fentry/kprobe tiers);
//! - [`go`]: uprobes in Go programs (goroutine origins, net/http dials);
//! - [`node`]: uprobes in Node (the JavaScript that asked for a socket);
//! - [`process`]: fork, exec and exit.
//!
//! [`keep`] pairs in the kernel what it can (reports, not `--events`);
//! [`fdopen`] builds the fd-creation record the same way for every tier,
//! [`recv`] the records of fds received over SCM_RIGHTS; [`sockets`] reads
//! the fd table and sockets; [`python`] reads a CPython thread's Python
//! stack at an open; [`emit`] sends records and owns the per-CPU
//! scratch memory; [`mem`] reads kernel and user memory; [`arch`] holds
//! what depends on the architecture.
//!
//! Diagnostics for rare conditions go through aya-log (`AYA_LOGS`), which
//! the loader turns on only with debug logging (`-v`, `FDTRACE_LOG`); off,
//! the level is a frozen 0 and the verifier removes them.
#![no_std]
#![no_main]
// For BPF_XADD (`emit::atomic_add`); aya-ebpf enables it too.
#![feature(asm_experimental_arch)]

mod arch;
mod emit;
mod fdopen;
mod fdtable;
mod go;
mod keep;
mod maps;
mod mem;
mod node;
mod process;
mod python;
mod recv;
mod sockets;
mod syscalls;
mod table;
mod tcp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot panic; the verifier rejects any path that
    // reaches here, so a reachable panic shows up as a load failure.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
