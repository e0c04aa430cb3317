//! Tracepoint record layouts the kernel programs read at fixed offsets.
//! The programs read these constants; the loader checks each tracepoint's
//! `format` file against the same constants before attaching, and skips
//! (with a warning) a tracepoint whose layout differs.
//!
//! Layouts read at offsets the loader finds in the format file at start-up
//! (`sched_process_exec`, `sched_process_exit`) are not here: they travel
//! in `Config`.

/// A field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: u32,
    pub size: u32,
}

const fn field(name: &'static str, offset: u32, size: u32) -> Field {
    Field { name, offset, size }
}

/// `syscalls:sys_enter_*`: `__syscall_nr`, then one 8-byte slot per
/// argument.
pub mod sys_enter {
    use super::{field, Field};

    pub const NR: Field = field("__syscall_nr", 8, 4);
    /// Offset of the first argument.
    pub const ARGS: u32 = 16;
    pub const ARG_SIZE: u32 = 8;

    /// Offset of argument `i`.
    pub const fn arg(i: usize) -> u32 {
        ARGS + ARG_SIZE * i as u32
    }
}

/// `syscalls:sys_exit_*`.
pub mod sys_exit {
    use super::{field, Field};

    pub const NR: Field = field("__syscall_nr", 8, 4);
    pub const RET: Field = field("ret", 16, 8);
}

/// `sock:inet_sock_set_state` (Linux 4.16+).
pub mod inet_sock_set_state {
    use super::{field, Field};

    pub const SKADDR: Field = field("skaddr", 8, 8);
    pub const OLDSTATE: Field = field("oldstate", 16, 4);
    pub const NEWSTATE: Field = field("newstate", 20, 4);
    pub const SPORT: Field = field("sport", 24, 2);
    pub const DPORT: Field = field("dport", 26, 2);
    pub const FAMILY: Field = field("family", 28, 2);
    pub const PROTOCOL: Field = field("protocol", 30, 2);
    pub const SADDR: Field = field("saddr", 32, 4);
    pub const DADDR: Field = field("daddr", 36, 4);
    pub const SADDR_V6: Field = field("saddr_v6", 40, 16);
    pub const DADDR_V6: Field = field("daddr_v6", 56, 16);

    /// Every field the program reads.
    pub const ALL: [Field; 11] =
        [SKADDR, OLDSTATE, NEWSTATE, SPORT, DPORT, FAMILY, PROTOCOL, SADDR, DADDR, SADDR_V6, DADDR_V6];
}
