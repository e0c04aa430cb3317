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
        Some(Site { stack: self.stack?, spawn: self.desc.go_spawn() })
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

/// What the fd refers to, as far as fdtrace knows. What only some fds
/// have (a socket's addresses, a Go dial's origin) is boxed: the ledger
/// holds one of these per open fd (88 bytes; 192 unboxed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FdDesc {
    /// File path (open*), memfd name, or `/proc/PID/fd` link target.
    pub path: Option<String>,
    /// socket()/socketpair() arguments.
    pub sock: Option<SockSpec>,
    /// A socket's addresses, once known.
    pub(crate) ends: Option<Box<Ends>>,
    /// listen() succeeded on it.
    pub listening: bool,
    /// Inode number, for fds found in `/proc` (`socket:[123]`).
    pub inode: Option<u64>,
    /// The kernel's `struct sock *`, for sockets seen being created.
    pub sk: Option<u64>,
    /// Last TCP state the kernel reported.
    pub state: Option<TcpState>,
    /// Go: where the dial came from.
    pub(crate) go: Option<Box<GoDial>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Ends {
    local: Option<Addr>,
    remote: Option<Addr>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GoDial {
    /// The stack that started the goroutine that opened it.
    spawn: Option<StackRef>,
    /// The `*http.Transport` it was dialed for.
    transport: Option<u64>,
}

impl FdDesc {
    pub fn local(&self) -> Option<&Addr> {
        self.ends.as_ref()?.local.as_ref()
    }

    pub fn remote(&self) -> Option<&Addr> {
        self.ends.as_ref()?.remote.as_ref()
    }

    pub fn set_local(&mut self, a: Option<Addr>) {
        if a.is_some() || self.ends.is_some() {
            self.ends.get_or_insert_with(Box::default).local = a;
        }
    }

    pub fn set_remote(&mut self, a: Option<Addr>) {
        if a.is_some() || self.ends.is_some() {
            self.ends.get_or_insert_with(Box::default).remote = a;
        }
    }

    /// With these addresses (builder style).
    pub fn with_ends(mut self, local: Option<Addr>, remote: Option<Addr>) -> FdDesc {
        self.set_local(local);
        self.set_remote(remote);
        self
    }

    /// Go: the stack that started the goroutine that opened it.
    pub fn go_spawn(&self) -> Option<StackRef> {
        self.go.as_ref()?.spawn
    }

    /// Go: the `*http.Transport` it was dialed for.
    pub fn go_transport(&self) -> Option<u64> {
        self.go.as_ref()?.transport
    }

    /// With this Go origin (builder style).
    pub fn with_go(mut self, spawn: Option<StackRef>, transport: Option<u64>) -> FdDesc {
        self.go = (spawn.is_some() || transport.is_some()).then(|| Box::new(GoDial { spawn, transport }));
        self
    }
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
