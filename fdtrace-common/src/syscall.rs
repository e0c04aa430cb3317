//! The syscalls fdtrace hooks, declared once: one row of [`syscall_table!`]
//! per syscall says everything both sides need to know about it.
//!
//! - The loader (`fdtrace`) reads the table to decide which tracepoints to
//!   attach and with which program ([`Syscall::entry`], [`Syscall::exit`],
//!   [`Syscall::arity`], checked against the tracefs format), and what kind
//!   of fd an event creates ([`Syscall::new_fd`]) and whether it is
//!   close-on-exec ([`Syscall::new_fd_cloexec`]).
//! - The eBPF crate's build script generates its `NR_*` constants, one
//!   exit program per syscall whose [`Exit`] is generated, the per-arity
//!   entry programs and the number → [`Syscall`] dispatch from the table
//!   (see `fdtrace-ebpf/build.rs`).
//!
//! Adding a syscall is one row here, plus its argument parsing in
//! `fdtrace-ebpf/src/fdopen.rs` and a ledger case where it has new
//! semantics.
//!
//! fdtrace's own numbering (the enum's values, carried in events) is stable
//! across architectures; the architecture's number is a column of its own
//! (x86_64, the only architecture the kernel side supports).

/// What a syscall does to the fd table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Installs fds: reported at exit with a stack.
    Creates,
    /// recvmsg/recvmmsg: fds arrive in `SCM_RIGHTS` control messages. The
    /// exit reads them back from the control buffers the kernel filled
    /// (tracepoint tier); `fd_install` sees them on the function tiers.
    Receives,
    /// Removes fds: reported at entry.
    Removes,
    /// connect/bind/listen: reported at exit.
    SocketInfo,
    /// fcntl/ioctl: only some commands matter.
    Control,
    /// Not hooked itself: seen installing fds through `fd_install`.
    Installs,
}

/// What an fd refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FdKind {
    Socket,
    File,
    Pipe,
    Memfd,
    Eventfd,
    Epoll,
    Timerfd,
    Signalfd,
    Inotify,
    Fanotify,
    Pidfd,
    Userfaultfd,
    PerfEvent,
    IoUring,
    /// Some other anonymous inode, or not known.
    Other,
}

impl FdKind {
    pub const ALL: [FdKind; 15] = [
        FdKind::Socket,
        FdKind::File,
        FdKind::Pipe,
        FdKind::Memfd,
        FdKind::Eventfd,
        FdKind::Epoll,
        FdKind::Timerfd,
        FdKind::Signalfd,
        FdKind::Inotify,
        FdKind::Fanotify,
        FdKind::Pidfd,
        FdKind::Userfaultfd,
        FdKind::PerfEvent,
        FdKind::IoUring,
        FdKind::Other,
    ];

    /// The kind [`FdKind::name`] names.
    pub fn from_name(name: &str) -> Option<FdKind> {
        FdKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub const fn name(self) -> &'static str {
        match self {
            FdKind::Socket => "socket",
            FdKind::File => "file",
            FdKind::Pipe => "pipe",
            FdKind::Memfd => "memfd",
            FdKind::Eventfd => "eventfd",
            FdKind::Epoll => "epoll",
            FdKind::Timerfd => "timerfd",
            FdKind::Signalfd => "signalfd",
            FdKind::Inotify => "inotify",
            FdKind::Fanotify => "fanotify",
            FdKind::Pidfd => "pidfd",
            FdKind::Userfaultfd => "userfaultfd",
            FdKind::PerfEvent => "perf_event",
            FdKind::IoUring => "io_uring",
            FdKind::Other => "other",
        }
    }
}

impl core::fmt::Display for FdKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a successful call installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewFd {
    /// Nothing.
    None,
    /// A new fd of this kind.
    Of(FdKind),
    /// The dup family: an fd sharing the source fd's file (its kind).
    CopyOfSource,
    /// An fd from elsewhere (another process, a message, io_uring): only
    /// its inode says what it is; `fallback` when the event carries no
    /// inode kind.
    FromInode { fallback: Option<FdKind> },
}

/// Whether the installed fd has close-on-exec set, from the raw flags
/// argument carried in the event (`FdOpen::flags`; fcntl: the command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloexec {
    Never,
    Always,
    /// When the flags argument has this bit.
    Flag(u64),
    /// When the argument is this value (fcntl's `F_DUPFD_CLOEXEC`).
    Equals(u64),
}

/// The entry tracepoint's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    None,
    /// `sys_enter_<name>`, a program of its own: the syscall is reported at
    /// entry (removals; see `fdtrace-ebpf/src/syscalls.rs` on ordering).
    Own,
    /// The shared `sys_enter_<arity>` that stashes the arguments for the
    /// exit (and reports fcntl's and ioctl's close-on-exec commands), only
    /// where the exit cannot read the user registers (before Linux 5.15,
    /// no `bpf_task_pt_regs`).
    Stash,
}

/// Where a syscall's flags are ([`Syscall::flags`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flags {
    None,
    /// The argument, as it is.
    Arg(usize),
    /// The `u64` a struct pointed to by the argument starts with
    /// (openat2's `struct open_how`).
    FirstOfStruct(usize),
    /// Implied by the syscall (creat's `O_CREAT | O_WRONLY | O_TRUNC`).
    Const(u64),
}

/// The exit tracepoint's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    None,
    /// `sys_exit_<name>`, generated: the syscall's number is a constant of
    /// the shared exit code.
    Generated,
    /// `sys_exit_<name>`, generated, attached only where the exit reads the
    /// user registers; elsewhere the stashing entry does all (ioctl).
    GeneratedWithRegs,
    /// `sys_exit_<name>`, written by hand (close_range's marking form).
    Own,
    /// [`SYS_EXIT_CREATED`](crate::programs::SYS_EXIT_CREATED), one program for every such
    /// syscall: each makes an fd (a pipe two) from what its arguments say
    /// ([`Syscall::flags`], [`Syscall::path_arg`], [`Syscall::src_arg`],
    /// [`Syscall::pair_arg`]), which the program reads by syscall number. The kernel
    /// verifies one program for all of them instead of one each.
    Created,
}

/// Defines [`Syscall`] and one `const fn` per column from the rows. Columns:
/// variant = fdtrace's number, name (as in `syscalls:sys_enter_<name>`),
/// x86_64 number, arity (arguments of its tracepoint), [`Role`], [`NewFd`],
/// [`Cloexec`], [`Entry`], [`Exit`].
macro_rules! syscall_table {
    ($(
        $(#[$doc:meta])*
        $v:ident = $val:literal, $name:literal, $nr:literal, $arity:literal,
        $role:ident, $new_fd:expr, $cloexec:expr, $entry:ident, $exit:ident;
    )*) => {
        /// A syscall fdtrace traces. The value is fdtrace's own, stable
        /// across architectures.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Syscall {
            $($(#[$doc])* $v = $val,)*
        }

        impl Syscall {
            pub const ALL: [Syscall; [$($val),*].len()] = [$(Syscall::$v),*];

            /// The syscall's name, as in `syscalls:sys_enter_<name>`.
            pub const fn name(self) -> &'static str {
                match self { $(Syscall::$v => $name,)* }
            }

            /// The x86_64 syscall number (`u32::MAX` for [`Syscall::Other`]).
            pub const fn nr_x86_64(self) -> u32 {
                match self { $(Syscall::$v => $nr,)* }
            }

            /// The arguments its `sys_enter` tracepoint records.
            pub const fn arity(self) -> usize {
                match self { $(Syscall::$v => $arity,)* }
            }

            pub const fn role(self) -> Role {
                match self { $(Syscall::$v => Role::$role,)* }
            }

            pub const fn new_fd(self) -> NewFd {
                match self { $(Syscall::$v => $new_fd,)* }
            }

            pub const fn cloexec(self) -> Cloexec {
                match self { $(Syscall::$v => $cloexec,)* }
            }

            pub const fn entry(self) -> Entry {
                match self { $(Syscall::$v => Entry::$entry,)* }
            }

            pub const fn exit(self) -> Exit {
                match self { $(Syscall::$v => Exit::$exit,)* }
            }
        }
    };
}

use consts::*;
use Cloexec::{Always, Equals, Flag, Never};
use FdKind as K;
use NewFd::{CopyOfSource, FromInode, Of};

// The flag of socket/accept4 is in the type argument, of the others in
// their flags; all of these have the value of O_CLOEXEC. dup2 clears the
// flag on the new fd.
syscall_table! {
//  variant     fdtrace nr  name            x86_64 arity role       new fd                  close-on-exec         entry  exit
    // Sockets.
    Socket          = 1,  "socket",             41, 3, Creates,    Of(K::Socket),          Flag(SOCK_CLOEXEC),   Stash, Created;
    Socketpair      = 2,  "socketpair",         53, 4, Creates,    Of(K::Socket),          Flag(SOCK_CLOEXEC),   Stash, Created;
    Accept          = 3,  "accept",             43, 3, Creates,    Of(K::Socket),          Never,                Stash, Created;
    Accept4         = 4,  "accept4",           288, 4, Creates,    Of(K::Socket),          Flag(SOCK_CLOEXEC),   Stash, Created;
    Connect         = 5,  "connect",            42, 3, SocketInfo, NewFd::None,            Never,                Stash, Generated;
    Bind            = 6,  "bind",               49, 3, SocketInfo, NewFd::None,            Never,                Stash, Generated;
    Listen          = 7,  "listen",             50, 2, SocketInfo, NewFd::None,            Never,                Stash, Generated;
    // Files.
    Open            = 10, "open",                2, 3, Creates,    Of(K::File),            Flag(O_CLOEXEC),      Stash, Created;
    Openat          = 11, "openat",            257, 4, Creates,    Of(K::File),            Flag(O_CLOEXEC),      Stash, Created;
    Openat2         = 12, "openat2",           437, 4, Creates,    Of(K::File),            Flag(O_CLOEXEC),      Stash, Created;
    Creat           = 13, "creat",              85, 2, Creates,    Of(K::File),            Never,                Stash, Created;
    OpenByHandleAt  = 14, "open_by_handle_at", 304, 3, Creates,    Of(K::File),            Flag(O_CLOEXEC),      Stash, Created;
    MemfdCreate     = 15, "memfd_create",      319, 2, Creates,    Of(K::Memfd),           Flag(MFD_CLOEXEC),    Stash, Created;
    MemfdSecret     = 16, "memfd_secret",      447, 1, Creates,    Of(K::Memfd),           Flag(O_CLOEXEC),      Stash, Created;
    // Pipes.
    Pipe            = 20, "pipe",               22, 1, Creates,    Of(K::Pipe),            Never,                Stash, Created;
    Pipe2           = 21, "pipe2",             293, 2, Creates,    Of(K::Pipe),            Flag(O_CLOEXEC),      Stash, Created;
    // Duplication and fd flags.
    Dup             = 30, "dup",                32, 1, Creates,    CopyOfSource,           Never,                Stash, Created;
    Dup2            = 31, "dup2",               33, 2, Creates,    CopyOfSource,           Never,                Stash, Created;
    Dup3            = 32, "dup3",              292, 3, Creates,    CopyOfSource,           Flag(O_CLOEXEC),      Stash, Created;
    Fcntl           = 33, "fcntl",              72, 3, Control,    CopyOfSource,           Equals(F_DUPFD_CLOEXEC), Stash, Generated;
    Ioctl           = 34, "ioctl",              16, 3, Control,    NewFd::None,            Never,                Stash, GeneratedWithRegs;
    // Other fd-creating calls.
    Eventfd         = 40, "eventfd",           284, 1, Creates,    Of(K::Eventfd),         Never,                Stash, Created;
    Eventfd2        = 41, "eventfd2",          290, 2, Creates,    Of(K::Eventfd),         Flag(O_CLOEXEC),      Stash, Created;
    EpollCreate     = 42, "epoll_create",      213, 1, Creates,    Of(K::Epoll),           Never,                Stash, Created;
    EpollCreate1    = 43, "epoll_create1",     291, 1, Creates,    Of(K::Epoll),           Flag(O_CLOEXEC),      Stash, Created;
    TimerfdCreate   = 44, "timerfd_create",    283, 2, Creates,    Of(K::Timerfd),         Flag(O_CLOEXEC),      Stash, Created;
    Signalfd        = 45, "signalfd",          282, 3, Creates,    Of(K::Signalfd),        Never,                Stash, Created;
    Signalfd4       = 46, "signalfd4",         289, 4, Creates,    Of(K::Signalfd),        Flag(O_CLOEXEC),      Stash, Created;
    InotifyInit     = 47, "inotify_init",      253, 0, Creates,    Of(K::Inotify),         Never,                Stash, Created;
    InotifyInit1    = 48, "inotify_init1",     294, 1, Creates,    Of(K::Inotify),         Flag(O_CLOEXEC),      Stash, Created;
    FanotifyInit    = 49, "fanotify_init",     300, 2, Creates,    Of(K::Fanotify),        Flag(FAN_CLOEXEC),    Stash, Created;
    PidfdOpen       = 50, "pidfd_open",        434, 2, Creates,    Of(K::Pidfd),           Always,               Stash, Created;
    /// Takes an fd from another process: only the inode can tell its kind.
    PidfdGetfd      = 51, "pidfd_getfd",       438, 3, Creates,    FromInode { fallback: None }, Always,         Stash, Created;
    Userfaultfd     = 52, "userfaultfd",       323, 1, Creates,    Of(K::Userfaultfd),     Flag(O_CLOEXEC),      Stash, Created;
    PerfEventOpen   = 53, "perf_event_open",   298, 5, Creates,    Of(K::PerfEvent),       Flag(PERF_FLAG_FD_CLOEXEC), Stash, Created;
    IoUringSetup    = 54, "io_uring_setup",    425, 2, Creates,    Of(K::IoUring),         Always,               Stash, Created;
    // Removal.
    Close           = 60, "close",               3, 1, Removes,    NewFd::None,            Never,                Own,   None;
    /// The closing form is reported at entry; the marking form
    /// (`CLOSE_RANGE_CLOEXEC`) at exit, when it succeeded.
    CloseRange      = 61, "close_range",       436, 3, Removes,    NewFd::None,            Never,                Own,   Own;
    // Received.
    /// fds received over SCM_RIGHTS (`MSG_CMSG_CLOEXEC` in the flags, or
    /// the fd table's bit).
    Recvmsg         = 70, "recvmsg",            47, 3, Receives,   FromInode { fallback: Some(K::Other) }, Flag(MSG_CMSG_CLOEXEC), Stash, Generated;
    Recvmmsg        = 71, "recvmmsg",          299, 5, Receives,   FromInode { fallback: Some(K::Other) }, Flag(MSG_CMSG_CLOEXEC), Stash, Generated;
    // fds installed by paths only the function tiers see (fd_install).
    /// io_uring_enter: an io_uring operation installed it.
    IoUringEnter    = 72, "io_uring_enter",    426, 6, Installs,   FromInode { fallback: Some(K::Other) }, Never, None,  None;
    /// Installed outside any syscall fdtrace knows.
    Other           = 79, "other",      4294967295, 0, Installs,   FromInode { fallback: Some(K::Other) }, Never, None,  None;
}

impl Syscall {
    pub const fn from_u16(v: u16) -> Option<Syscall> {
        let mut i = 0;
        while i < Syscall::ALL.len() {
            if Syscall::ALL[i] as u16 == v {
                return Some(Syscall::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The syscall with this x86_64 number.
    pub const fn from_nr_x86_64(nr: u32) -> Option<Syscall> {
        let mut i = 0;
        while i < Syscall::ALL.len() {
            if Syscall::ALL[i].nr_x86_64() == nr {
                return Some(Syscall::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// Where the flags carried in `FdOpen::flags` come from, for the
    /// [`Exit::Created`] syscalls (whose shared program reads them so; the
    /// others' programs know their own).
    pub const fn flags(self) -> Flags {
        match self {
            Syscall::Socket | Syscall::Socketpair => Flags::Arg(1),
            Syscall::Accept4 => Flags::Arg(3),
            Syscall::Open | Syscall::MemfdCreate => Flags::Arg(1),
            Syscall::Openat => Flags::Arg(2),
            Syscall::Openat2 => Flags::FirstOfStruct(2),
            Syscall::Creat => Flags::Const(O_CREAT | O_WRONLY | O_TRUNC),
            Syscall::Eventfd2 | Syscall::TimerfdCreate | Syscall::PidfdOpen | Syscall::Pipe2 => Flags::Arg(1),
            Syscall::Dup3 | Syscall::PidfdGetfd => Flags::Arg(2),
            Syscall::Signalfd4 => Flags::Arg(3),
            Syscall::OpenByHandleAt => Flags::Arg(2),
            Syscall::EpollCreate1
            | Syscall::InotifyInit1
            | Syscall::FanotifyInit
            | Syscall::Userfaultfd
            | Syscall::MemfdSecret => Flags::Arg(0),
            Syscall::PerfEventOpen => Flags::Arg(4),
            _ => Flags::None,
        }
    }

    /// The argument holding the fd the new one is made from, for the
    /// [`Exit::Created`] syscalls: a dup's source, the signalfd updated in
    /// place, the other process's fd pidfd_getfd takes.
    pub const fn src_arg(self) -> Option<usize> {
        match self {
            Syscall::Accept
            | Syscall::Accept4
            | Syscall::Dup
            | Syscall::Dup2
            | Syscall::Dup3
            | Syscall::Signalfd
            | Syscall::Signalfd4 => Some(0),
            Syscall::PidfdGetfd => Some(1),
            _ => None,
        }
    }

    /// The argument pointing to the `int[2]` a pipe's (a socket pair's)
    /// two fds are written to, for the [`Exit::Created`] syscalls.
    pub const fn pair_arg(self) -> Option<usize> {
        match self {
            Syscall::Pipe | Syscall::Pipe2 => Some(0),
            Syscall::Socketpair => Some(3),
            _ => None,
        }
    }

    /// Whether the arguments are `(family, type, protocol)`.
    pub const fn socket_args(self) -> bool {
        matches!(self, Syscall::Socket | Syscall::Socketpair)
    }

    /// Whether the fd returned is one socket, whose addresses the kernel
    /// has (socket, accept).
    pub const fn returns_socket(self) -> bool {
        matches!(self.new_fd(), Of(FdKind::Socket)) && self.pair_arg().is_none()
    }

    /// The arguments `(addr, addrlen)` of a peer address the syscall
    /// writes back (accept's).
    pub const fn peer_args(self) -> Option<(usize, usize)> {
        match self {
            Syscall::Accept | Syscall::Accept4 => Some((1, 2)),
            _ => None,
        }
    }

    /// The argument holding the path (a memfd's name) the record carries,
    /// for the [`Exit::Created`] syscalls.
    pub const fn path_arg(self) -> Option<usize> {
        match self {
            Syscall::Open | Syscall::Creat | Syscall::MemfdCreate => Some(0),
            Syscall::Openat | Syscall::Openat2 => Some(1),
            _ => None,
        }
    }

    /// The tracepoints of this syscall fdtrace attaches, from its row:
    /// removals are reported at entry, everything else at exit. Without
    /// the user registers at exit (`bpf_task_pt_regs`, before Linux 5.15)
    /// the entry also stashes the arguments, and handles fcntl's and
    /// ioctl's close-on-exec changes.
    pub const fn phases(self, regs_at_exit: bool) -> &'static [&'static str] {
        let enter = match self.entry() {
            Entry::None => false,
            Entry::Own => true,
            Entry::Stash => !regs_at_exit,
        };
        let exit = match self.exit() {
            Exit::None => false,
            Exit::Generated | Exit::Own | Exit::Created => true,
            Exit::GeneratedWithRegs => regs_at_exit,
        };
        match (enter, exit) {
            (true, true) => &["enter", "exit"],
            (true, false) => &["enter"],
            (false, true) => &["exit"],
            (false, false) => &[],
        }
    }

    /// Whether the fd this syscall installs has close-on-exec set, given
    /// the raw flags argument carried in the event (`FdOpen::flags`; for
    /// fcntl, the command).
    pub const fn new_fd_cloexec(self, flags: u64) -> bool {
        match self.cloexec() {
            Never => false,
            Always => true,
            Flag(bit) => flags & bit != 0,
            Equals(value) => flags == value,
        }
    }
}

/// Constants from the kernel's uapi headers that both sides need.
pub mod consts {
    pub const AF_UNIX: u16 = 1;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;
    pub const AF_NETLINK: u16 = 16;

    pub const SOCK_TYPE_MASK: u64 = 0xf;
    pub const SOCK_CLOEXEC: u64 = 0o2000000;
    pub const O_CLOEXEC: u64 = 0o2000000;
    pub const O_CREAT: u64 = 0o100;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_TRUNC: u64 = 0o1000;

    pub const F_DUPFD: u64 = 0;
    pub const F_SETFD: u64 = 2;
    pub const F_DUPFD_CLOEXEC: u64 = 1030;
    pub const FD_CLOEXEC: u64 = 1;

    pub const FIONCLEX: u64 = 0x5450;
    pub const FIOCLEX: u64 = 0x5451;

    pub const CLOSE_RANGE_UNSHARE: u32 = 1 << 1;
    pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

    pub const FAN_CLOEXEC: u64 = 0x1;
    pub const PERF_FLAG_FD_CLOEXEC: u64 = 1 << 3;
    pub const MFD_CLOEXEC: u64 = 1;

    /// `recvmsg` flag: received fds get close-on-exec.
    pub const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
    pub const SOL_SOCKET: i32 = 1;
    pub const SCM_RIGHTS: i32 = 1;

    /// `struct user_msghdr` (LP64): where the control buffer is, and the
    /// length the kernel wrote back into `msg_controllen`.
    pub const MSGHDR_CONTROL_OFF: u64 = 32;
    pub const MSGHDR_CONTROLLEN_OFF: u64 = 40;
    /// `struct mmsghdr`: a `msghdr` and the message's length, padded.
    pub const MMSGHDR_SIZE: u64 = 64;
    /// `struct cmsghdr` (LP64): `cmsg_len` (size_t), `cmsg_level`,
    /// `cmsg_type`, then the data; each header is aligned to 8
    /// (`CMSG_ALIGN`).
    pub const CMSGHDR_SIZE: u64 = 16;
    pub const CMSG_ALIGN: u64 = 8;

    pub const S_IFMT: u16 = 0o170000;
    pub const S_IFSOCK: u16 = 0o140000;
    pub const S_IFIFO: u16 = 0o010000;

    /// `include/net/tcp_states.h`, `IPPROTO_TCP`.
    pub const TCP_CLOSE: u32 = 7;
    pub const IPPROTO_TCP: u16 = 6;

    /// errno values (`asm-generic/errno*.h`) and their names, one table
    /// for both sides: `errno_name(24)` is `Some("EMFILE")`.
    macro_rules! errnos {
        ($($name:ident = $value:literal,)*) => {
            $(pub const $name: i64 = $value;)*

            /// The name of an errno value, if it is one fdtrace names.
            pub const fn errno_name(errno: i64) -> Option<&'static str> {
                match errno {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        };
    }
    errnos! {
        EPERM = 1,
        ENOENT = 2,
        EINTR = 4,
        E2BIG = 7,
        EBADF = 9,
        EAGAIN = 11,
        ENOMEM = 12,
        EACCES = 13,
        EFAULT = 14,
        EEXIST = 17,
        ENOTDIR = 20,
        EISDIR = 21,
        EINVAL = 22,
        ENFILE = 23,
        EMFILE = 24,
        ENOSPC = 28,
        ENAMETOOLONG = 36,
        ENOTSOCK = 88,
        EPROTONOSUPPORT = 93,
        EAFNOSUPPORT = 97,
        EADDRINUSE = 98,
        EADDRNOTAVAIL = 99,
        ENETUNREACH = 101,
        ECONNABORTED = 103,
        ECONNRESET = 104,
        EISCONN = 106,
        ETIMEDOUT = 110,
        ECONNREFUSED = 111,
        EHOSTUNREACH = 113,
        EALREADY = 114,
        EINPROGRESS = 115,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloexec_follows_each_syscalls_flag() {
        use consts::*;
        assert!(Syscall::Socket.new_fd_cloexec(1 | SOCK_CLOEXEC));
        assert!(!Syscall::Socket.new_fd_cloexec(1));
        assert!(Syscall::Openat.new_fd_cloexec(O_CLOEXEC));
        assert!(Syscall::MemfdCreate.new_fd_cloexec(MFD_CLOEXEC));
        assert!(!Syscall::MemfdCreate.new_fd_cloexec(O_CLOEXEC));
        assert!(Syscall::Fcntl.new_fd_cloexec(F_DUPFD_CLOEXEC));
        assert!(!Syscall::Fcntl.new_fd_cloexec(F_DUPFD));
        assert!(!Syscall::Dup2.new_fd_cloexec(u64::MAX));
        assert!(Syscall::PidfdGetfd.new_fd_cloexec(0));
        assert!(Syscall::Recvmsg.new_fd_cloexec(MSG_CMSG_CLOEXEC));
        assert!(!Syscall::Recvmmsg.new_fd_cloexec(0));
    }

    #[test]
    fn numbering_round_trips() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_u16(s as u16), Some(s));
            assert_eq!(Syscall::from_nr_x86_64(s.nr_x86_64()), Some(s));
        }
    }

    #[test]
    fn hooks_per_syscall() {
        assert_eq!(Syscall::Close.phases(true), ["enter"]);
        assert_eq!(Syscall::Close.phases(false), ["enter"]);
        assert_eq!(Syscall::CloseRange.phases(true), ["enter", "exit"]);
        assert_eq!(Syscall::Socket.phases(true), ["exit"]);
        assert_eq!(Syscall::Socket.phases(false), ["enter", "exit"]);
        assert_eq!(Syscall::Ioctl.phases(true), ["exit"]);
        assert_eq!(Syscall::Ioctl.phases(false), ["enter"]);
        assert_eq!(Syscall::Fcntl.phases(false), ["enter", "exit"]);
        // fds received over SCM_RIGHTS: read back at exit.
        assert_eq!(Syscall::Recvmsg.phases(true), ["exit"]);
        assert_eq!(Syscall::Recvmmsg.phases(false), ["enter", "exit"]);
        // Only fd_install sees these.
        assert!(Syscall::IoUringEnter.phases(true).is_empty() && Syscall::Other.phases(false).is_empty());
    }

    #[test]
    fn the_table_is_consistent() {
        for s in Syscall::ALL {
            let (role, new_fd, entry, exit) = (s.role(), s.new_fd(), s.entry(), s.exit());
            // Whatever installs fds says what it installs; nothing else does.
            let installs =
                matches!(role, Role::Creates | Role::Receives | Role::Installs) || s == Syscall::Fcntl;
            assert_eq!(installs, new_fd != NewFd::None, "{s:?}");
            // Removals are reported at entry, by programs of their own.
            assert_eq!(role == Role::Removes, entry == Entry::Own, "{s:?}");
            // What only fd_install sees has no syscall tracepoint at all.
            assert_eq!(role == Role::Installs, (entry, exit) == (Entry::None, Exit::None), "{s:?}");
            // The per-arity entry programs go up to 6 arguments.
            assert!(s.arity() <= 6, "{s:?}");
            // The shared exit program makes one fd of the row's kind, and
            // reads at most a flags argument the syscall has.
            if exit == Exit::Created {
                assert!(role == Role::Creates, "{s:?}");
                let args = [
                    s.path_arg(),
                    s.src_arg(),
                    s.pair_arg(),
                    match s.flags() {
                        Flags::Arg(i) | Flags::FirstOfStruct(i) => Some(i),
                        Flags::None | Flags::Const(_) => None,
                    },
                ];
                assert!(args.iter().flatten().all(|&i| i < s.arity()), "{s:?}");
                if matches!(s.cloexec(), Flag(_)) {
                    assert!(s.flags() != Flags::None, "{s:?}: close-on-exec from flags it cannot read");
                }
            }
            // Names are those of the tracepoints (and program names).
            assert!(s.name().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
    }

    #[test]
    fn errno_names_come_from_one_table() {
        assert_eq!(errno_name(EMFILE), Some("EMFILE"));
        assert_eq!(errno_name(115), Some("EINPROGRESS"));
        assert_eq!(errno_name(9999), None);
    }
}
