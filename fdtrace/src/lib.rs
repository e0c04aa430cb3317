//! fdtrace: find the file descriptors a process opens and never closes, and
//! the code that opened them.
//!
//! The data flows one way:
//!
//! ```text
//! kernel programs (fdtrace-ebpf)
//!   │  records, in one ring buffer; user stacks in a stack map
//!   ▼
//! events   ring → decode → assemble: whole domain events (Event)
//!   ▼
//! ledger   pairing opens with closes (pure): what is open, per process
//!   │        ← symbolize: stacks named as they first appear
//!   │        ← host: /proc and sock_diag (baseline, reconciliation, sockets)
//!   ▼
//! sinks    event lines · text/JSON reports (report: pure building) ·
//!          flame graphs · the status line
//! ```
//!
//! - [`attach`]: capability checks, tiers, loading and attaching;
//! - [`events`]: ring-buffer records → whole events, and their stacks;
//! - [`ledger`]: pairing opens with closes (pure);
//! - [`host`]: `/proc` and sock_diag: the baseline, reconciliation, one
//!   view of each socket;
//! - [`symbolize`]: user stacks → function, file:line;
//! - [`python`]: CPython processes: their interpreter, and their Python
//!   frames named;
//! - [`report`]: unclosed fds grouped by stack (pure), text and JSON;
//! - [`filter`]: which fds reports and event lines show (typed facts);
//! - [`sinks`]: the outputs, one [`sinks::Sink`] each;
//! - [`session`]: setup, the loop that ties the rest together, teardown;
//!   launching a command to trace from its first instruction.
pub mod attach;
pub mod check;
pub mod cli;
pub mod clock;
pub mod events;
pub mod filter;
pub mod generate;
pub mod golang;
pub mod host;
pub mod ledger;
pub mod python;
pub mod report;
pub mod session;
pub mod sinks;
pub mod symbolize;

#[cfg(test)]
mod golden;

/// Logs to stderr: warnings, or with `verbose` (`-v`) debug messages too;
/// `FDTRACE_LOG` (as `RUST_LOG`: `debug`, `fdtrace::attach=debug`...)
/// overrides both.
pub fn init_logging(verbose: bool) {
    env_logger::Builder::new()
        .filter_level(if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Warn })
        .format_timestamp(None)
        .format_target(false)
        .parse_env("FDTRACE_LOG")
        .init();
}

/// Shared by the seeded fuzz tests.
#[cfg(test)]
mod fuzz {
    /// A xorshift64 generator: deterministic input for fuzz loops.
    pub fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }
}
