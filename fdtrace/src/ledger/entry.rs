//! What the ledger knows about one open fd.
pub use crate::events::Site;
use crate::events::{Addr, FdKind, SockSpec, StackRef, Syscall, TcpState};

/// One lifetime of one fd number in one fd table.
#[derive(Clone, Debug, PartialEq)]
pub struct FdEntry {
    /// Unique per lifetime: two fds that reuse a number never share it.
    pub serial: u64,
    pub fd: i32,
    pub kind: FdKind,
    pub cloexec: bool,
    /// When it was installed (CLOCK_MONOTONIC ns). For fds found at
    /// attach, the attach time (their real age is unknown).
    pub opened_ns: u64,
    pub origin: Origin,
    /// Thread that installed it (0 when unknown).
    pub tid: u32,
    /// Where in the program it was opened; `None` for fds found at attach.
    pub stack: Option<StackRef>,
    pub desc: FdDesc,
    /// Kept by the kernel from its open until fdtrace took it (pairing
    /// mode): its open reached the ledger late, so a close stamped before
    /// `opened_ns` is of an earlier fd with its number.
    pub adopted: bool,
}

impl FdEntry {
    /// Where it was opened, for counting: its stack, and in Go the stack
    /// that started the goroutine.
    pub fn site(&self) -> Option<Site> {
        Some(Site { stack: self.stack?, spawn: self.desc.go_spawn })
    }

    /// Whether an event stamped `ts_ns` on its number is about an earlier
    /// fd: this one was kept by the kernel, opened after `ts_ns`, and
    /// reached the ledger ahead of that event.
    pub fn opened_after(&self, ts_ns: u64) -> bool {
        self.adopted && self.opened_ns > ts_ns
    }
}

/// How an fd came to be in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Seen being installed by this syscall.
    Syscall(Syscall),
    /// Open when fdtrace attached (from `/proc/PID/fd`).
    PreExisting,
    /// Copied from the parent's table at fork.
    Inherited,
    /// Found in `/proc/PID/fd` at a reconciliation without an open event.
    MissedOpen,
}

impl Origin {
    /// Made by the dup family (the new fd is the source's file).
    pub fn is_dup(self) -> bool {
        matches!(self, Origin::Syscall(s) if s.new_fd() == fdtrace_common::syscall::NewFd::CopyOfSource)
    }
}

/// What the fd refers to, as far as fdtrace knows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FdDesc {
    /// File path (open*), memfd name, or `/proc/PID/fd` link target.
    pub path: Option<String>,
    /// socket()/socketpair() arguments.
    pub sock: Option<SockSpec>,
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
    /// listen() succeeded on it.
    pub listening: bool,
    /// Inode number, for fds found in `/proc` (`socket:[123]`).
    pub inode: Option<u64>,
    /// The kernel's `struct sock *`, for sockets seen being created.
    pub sk: Option<u64>,
    /// Last TCP state the kernel reported.
    pub state: Option<TcpState>,
    /// Go: the stack that started the goroutine that opened it.
    pub go_spawn: Option<StackRef>,
    /// Go: the `*http.Transport` it was dialed for.
    pub go_transport: Option<u64>,
}

/// Why an fd left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseCause {
    Close,
    CloseRange,
    /// dup2/dup3/F_DUPFD onto its number (or an install on a number the
    /// ledger still held, which means a close was missed).
    Replaced,
    /// Close-on-exec at execve.
    Exec,
    /// The process exited (the last user of the table).
    Exit,
    /// Reconciliation found it missing from `/proc/PID/fd`.
    MissedClose,
}

impl CloseCause {
    pub const ALL: [CloseCause; 6] = [
        CloseCause::Close,
        CloseCause::CloseRange,
        CloseCause::Replaced,
        CloseCause::Exec,
        CloseCause::Exit,
        CloseCause::MissedClose,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CloseCause::Close => "close",
            CloseCause::CloseRange => "close_range",
            CloseCause::Replaced => "replaced",
            CloseCause::Exec => "close-on-exec",
            CloseCause::Exit => "exit",
            CloseCause::MissedClose => "missed close",
        }
    }
}

impl crate::events::Named for CloseCause {
    fn name(self) -> &'static str {
        CloseCause::name(self)
    }
    fn from_name(name: &str) -> Option<Self> {
        CloseCause::ALL.into_iter().find(|c| c.name() == name)
    }
}
