//! What the kernel side could not deliver in full, summed from its per-CPU
//! counters (`fdtrace_common::Loss`).
use std::collections::BTreeMap;

/// Counts of what the kernel side could not deliver in full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Losses {
    /// Events dropped: the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events sent without their stack.
    pub stack_failed: u64,
    pub inflight_full: u64,
    pub missed_entry: u64,
    pub read_failed: u64,
    pub targets_full: u64,
    /// Not losses: stacks sent inline after a stack-map collision.
    pub stack_inline: u64,
    /// Events dropped: the CPU's scratch memory was taken by a preempted
    /// program.
    pub scratch_busy: u64,
    /// recvmsg/recvmmsg calls with more fds than the kernel side reports.
    pub recv_truncated: u64,
    /// Pairing mode, not losses: fds kept in the kernel, and closes paired
    /// there (events that never went through the ring).
    pub kept: u64,
    pub paired: u64,
    /// Pairing mode, not losses: opens that went through the ring instead
    /// (an inline stack, a dup of an fd fdtrace holds...), and those for
    /// which the kernel's tables were full.
    pub not_kept: u64,
    pub kept_full: u64,
    /// Pairing mode: kept fds whose number was installed again with no
    /// close seen (io_uring's close on the tracepoint tier): missed closes.
    pub kept_overwritten: u64,
}

impl Losses {
    /// Events the kernel handled without sending them (pairing mode).
    pub fn kept_in_kernel(&self) -> u64 {
        self.kept + self.paired
    }

    /// Events that never reached userspace.
    pub fn lost_events(&self) -> u64 {
        self.ringbuf_full + self.scratch_busy
    }

    /// Events that never reached userspace, by reason (non-zero reasons
    /// only).
    pub fn lost(&self) -> BTreeMap<&'static str, u64> {
        [("ringbuf_full", self.ringbuf_full), ("scratch_busy", self.scratch_busy)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Events sent with part of their data missing, by reason (non-zero
    /// reasons only).
    pub fn partial(&self) -> BTreeMap<&'static str, u64> {
        [
            ("missed_entry", self.missed_entry),
            ("read_failed", self.read_failed),
            ("inflight_full", self.inflight_full),
            ("targets_full", self.targets_full),
            ("recv_truncated", self.recv_truncated),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}
