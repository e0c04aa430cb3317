//! fdtrace's kernel programs.
//!
//! Data flow: a hook fires in a traced process → the program checks the
//! tgid against `TARGETS` → fills a record from `fdtrace-common` → sends it
//! through the `EVENTS` ring buffer. Anything that cannot be delivered in
//! full is counted in `LOSSES`.
//!
//! One module per hook family:
//! - [`syscalls`]: syscall tracepoints (`syscalls:sys_enter_*`/`sys_exit_*`);
//! - [`fdtable`]: the kernel's fd-table functions (fentry/kprobe tiers);
//! - [`tcp`]: TCP states: `inet_sock_set_state`, and `tcp_connect`/`tcp_close`
//!   (fentry/kprobe tiers);
//! - [`go`]: uprobes in Go programs (goroutine origins, net/http dials);
//! - [`process`]: fork, exec and exit.
//!
//! [`fdopen`] builds the fd-creation record the same way for every tier;
//! [`sockets`] reads the fd table and sockets; [`emit`] sends records.
#![no_std]
#![no_main]

mod emit;
mod fdopen;
mod fdtable;
mod go;
mod maps;
mod process;
mod sockets;
mod syscalls;
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
