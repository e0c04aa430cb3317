//! The syscalls fdtrace hooks: fdtrace's own stable numbering (carried in
//! events), their x86_64 numbers (used by the kernel side to dispatch), and
//! what each needs hooked.

/// A syscall fdtrace traces. The value is fdtrace's own, stable across
/// architectures; [`Syscall::nr`] gives the architecture's number.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Syscall {
    // Sockets.
    Socket = 1,
    Socketpair = 2,
    Accept = 3,
    Accept4 = 4,
    Connect = 5,
    Bind = 6,
    Listen = 7,
    // Files.
    Open = 10,
    Openat = 11,
    Openat2 = 12,
    Creat = 13,
    OpenByHandleAt = 14,
    MemfdCreate = 15,
    MemfdSecret = 16,
    // Pipes.
    Pipe = 20,
    Pipe2 = 21,
    // Duplication and fd flags.
    Dup = 30,
    Dup2 = 31,
    Dup3 = 32,
    Fcntl = 33,
    Ioctl = 34,
    // Other fd-creating calls.
    Eventfd = 40,
    Eventfd2 = 41,
    EpollCreate = 42,
    EpollCreate1 = 43,
    TimerfdCreate = 44,
    Signalfd = 45,
    Signalfd4 = 46,
    InotifyInit = 47,
    InotifyInit1 = 48,
    FanotifyInit = 49,
    PidfdOpen = 50,
    PidfdGetfd = 51,
    Userfaultfd = 52,
    PerfEventOpen = 53,
    IoUringSetup = 54,
    // Removal.
    Close = 60,
    CloseRange = 61,
    // fds installed by paths only the function tiers see (fd_install).
    /// recvmsg/recvmmsg: fds received over SCM_RIGHTS.
    Recvmsg = 70,
    Recvmmsg = 71,
    /// io_uring_enter: an io_uring operation installed it.
    IoUringEnter = 72,
    /// Installed outside any syscall fdtrace knows.
    Other = 79,
}

/// What a syscall does to the fd table, which decides the hooks it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Installs fds: stash at entry, report at exit with a stack.
    Creates,
    /// Removes fds: reported at entry (exit not hooked).
    Removes,
    /// connect/bind/listen: stash at entry, report at exit.
    SocketInfo,
    /// fcntl/ioctl: only some commands matter; the entry filters them.
    Control,
    /// Not hooked itself: seen installing fds through `fd_install`.
    Installs,
}

impl Syscall {
    pub const ALL: [Syscall; 42] = [
        Syscall::Socket,
        Syscall::Socketpair,
        Syscall::Accept,
        Syscall::Accept4,
        Syscall::Connect,
        Syscall::Bind,
        Syscall::Listen,
        Syscall::Open,
        Syscall::Openat,
        Syscall::Openat2,
        Syscall::Creat,
        Syscall::OpenByHandleAt,
        Syscall::MemfdCreate,
        Syscall::MemfdSecret,
        Syscall::Pipe,
        Syscall::Pipe2,
        Syscall::Dup,
        Syscall::Dup2,
        Syscall::Dup3,
        Syscall::Fcntl,
        Syscall::Ioctl,
        Syscall::Eventfd,
        Syscall::Eventfd2,
        Syscall::EpollCreate,
        Syscall::EpollCreate1,
        Syscall::TimerfdCreate,
        Syscall::Signalfd,
        Syscall::Signalfd4,
        Syscall::InotifyInit,
        Syscall::InotifyInit1,
        Syscall::FanotifyInit,
        Syscall::PidfdOpen,
        Syscall::PidfdGetfd,
        Syscall::Userfaultfd,
        Syscall::PerfEventOpen,
        Syscall::IoUringSetup,
        Syscall::Close,
        Syscall::CloseRange,
        Syscall::Recvmsg,
        Syscall::Recvmmsg,
        Syscall::IoUringEnter,
        Syscall::Other,
    ];

    /// The syscall's name, as in `syscalls:sys_enter_<name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Syscall::Socket => "socket",
            Syscall::Socketpair => "socketpair",
            Syscall::Accept => "accept",
            Syscall::Accept4 => "accept4",
            Syscall::Connect => "connect",
            Syscall::Bind => "bind",
            Syscall::Listen => "listen",
            Syscall::Open => "open",
            Syscall::Openat => "openat",
            Syscall::Openat2 => "openat2",
            Syscall::Creat => "creat",
            Syscall::OpenByHandleAt => "open_by_handle_at",
            Syscall::MemfdCreate => "memfd_create",
            Syscall::MemfdSecret => "memfd_secret",
            Syscall::Pipe => "pipe",
            Syscall::Pipe2 => "pipe2",
            Syscall::Dup => "dup",
            Syscall::Dup2 => "dup2",
            Syscall::Dup3 => "dup3",
            Syscall::Fcntl => "fcntl",
            Syscall::Ioctl => "ioctl",
            Syscall::Eventfd => "eventfd",
            Syscall::Eventfd2 => "eventfd2",
            Syscall::EpollCreate => "epoll_create",
            Syscall::EpollCreate1 => "epoll_create1",
            Syscall::TimerfdCreate => "timerfd_create",
            Syscall::Signalfd => "signalfd",
            Syscall::Signalfd4 => "signalfd4",
            Syscall::InotifyInit => "inotify_init",
            Syscall::InotifyInit1 => "inotify_init1",
            Syscall::FanotifyInit => "fanotify_init",
            Syscall::PidfdOpen => "pidfd_open",
            Syscall::PidfdGetfd => "pidfd_getfd",
            Syscall::Userfaultfd => "userfaultfd",
            Syscall::PerfEventOpen => "perf_event_open",
            Syscall::IoUringSetup => "io_uring_setup",
            Syscall::Close => "close",
            Syscall::CloseRange => "close_range",
            Syscall::Recvmsg => "recvmsg",
            Syscall::Recvmmsg => "recvmmsg",
            Syscall::IoUringEnter => "io_uring_enter",
            Syscall::Other => "other",
        }
    }

    pub const fn role(self) -> Role {
        match self {
            Syscall::Close | Syscall::CloseRange => Role::Removes,
            Syscall::Connect | Syscall::Bind | Syscall::Listen => Role::SocketInfo,
            Syscall::Fcntl | Syscall::Ioctl => Role::Control,
            Syscall::Recvmsg | Syscall::Recvmmsg | Syscall::IoUringEnter | Syscall::Other => Role::Installs,
            Syscall::Socket
            | Syscall::Socketpair
            | Syscall::Accept
            | Syscall::Accept4
            | Syscall::Open
            | Syscall::Openat
            | Syscall::Openat2
            | Syscall::Creat
            | Syscall::OpenByHandleAt
            | Syscall::MemfdCreate
            | Syscall::MemfdSecret
            | Syscall::Pipe
            | Syscall::Pipe2
            | Syscall::Dup
            | Syscall::Dup2
            | Syscall::Dup3
            | Syscall::Eventfd
            | Syscall::Eventfd2
            | Syscall::EpollCreate
            | Syscall::EpollCreate1
            | Syscall::TimerfdCreate
            | Syscall::Signalfd
            | Syscall::Signalfd4
            | Syscall::InotifyInit
            | Syscall::InotifyInit1
            | Syscall::FanotifyInit
            | Syscall::PidfdOpen
            | Syscall::PidfdGetfd
            | Syscall::Userfaultfd
            | Syscall::PerfEventOpen
            | Syscall::IoUringSetup => Role::Creates,
        }
    }

    /// The x86_64 syscall number.
    pub const fn nr(self) -> u32 {
        match self {
            Syscall::Socket => 41,
            Syscall::Socketpair => 53,
            Syscall::Accept => 43,
            Syscall::Accept4 => 288,
            Syscall::Connect => 42,
            Syscall::Bind => 49,
            Syscall::Listen => 50,
            Syscall::Open => 2,
            Syscall::Openat => 257,
            Syscall::Openat2 => 437,
            Syscall::Creat => 85,
            Syscall::OpenByHandleAt => 304,
            Syscall::MemfdCreate => 319,
            Syscall::MemfdSecret => 447,
            Syscall::Pipe => 22,
            Syscall::Pipe2 => 293,
            Syscall::Dup => 32,
            Syscall::Dup2 => 33,
            Syscall::Dup3 => 292,
            Syscall::Fcntl => 72,
            Syscall::Ioctl => 16,
            Syscall::Eventfd => 284,
            Syscall::Eventfd2 => 290,
            Syscall::EpollCreate => 213,
            Syscall::EpollCreate1 => 291,
            Syscall::TimerfdCreate => 283,
            Syscall::Signalfd => 282,
            Syscall::Signalfd4 => 289,
            Syscall::InotifyInit => 253,
            Syscall::InotifyInit1 => 294,
            Syscall::FanotifyInit => 300,
            Syscall::PidfdOpen => 434,
            Syscall::PidfdGetfd => 438,
            Syscall::Userfaultfd => 323,
            Syscall::PerfEventOpen => 298,
            Syscall::IoUringSetup => 425,
            Syscall::Close => 3,
            Syscall::CloseRange => 436,
            Syscall::Recvmsg => 47,
            Syscall::Recvmmsg => 299,
            Syscall::IoUringEnter => 426,
            Syscall::Other => u32::MAX,
        }
    }

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

    pub const fn from_nr(nr: u32) -> Option<Syscall> {
        let mut i = 0;
        while i < Syscall::ALL.len() {
            if Syscall::ALL[i].nr() == nr {
                return Some(Syscall::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

impl Syscall {
    /// Whether the fd this syscall installs has close-on-exec set, given
    /// the raw flags argument carried in the event (`FdOpen::flags`; for
    /// fcntl, the command).
    pub const fn new_fd_cloexec(self, flags: u64) -> bool {
        use consts::*;
        match self {
            // The flag lives in the type argument for sockets, in flags
            // otherwise; all of these use the value of O_CLOEXEC.
            Syscall::Socket
            | Syscall::Socketpair
            | Syscall::Accept4
            | Syscall::Open
            | Syscall::Openat
            | Syscall::Openat2
            | Syscall::OpenByHandleAt
            | Syscall::Pipe2
            | Syscall::Dup3
            | Syscall::Eventfd2
            | Syscall::EpollCreate1
            | Syscall::TimerfdCreate
            | Syscall::Signalfd4
            | Syscall::InotifyInit1
            | Syscall::Userfaultfd
            | Syscall::MemfdSecret => flags & O_CLOEXEC != 0,
            Syscall::MemfdCreate => flags & MFD_CLOEXEC != 0,
            Syscall::FanotifyInit => flags & FAN_CLOEXEC != 0,
            Syscall::PerfEventOpen => flags & PERF_FLAG_FD_CLOEXEC != 0,
            Syscall::Fcntl => flags == F_DUPFD_CLOEXEC,
            // Always close-on-exec.
            Syscall::PidfdOpen | Syscall::PidfdGetfd | Syscall::IoUringSetup => true,
            // Never: dup2 clears the flag on the new fd, the others take no
            // flags.
            Syscall::Accept
            | Syscall::Creat
            | Syscall::Pipe
            | Syscall::Dup
            | Syscall::Dup2
            | Syscall::Eventfd
            | Syscall::EpollCreate
            | Syscall::Signalfd
            | Syscall::InotifyInit => false,
            // Received fds: MSG_CMSG_CLOEXEC is in recvmsg's flags (arg 2);
            // the fd table's bit is read instead.
            Syscall::Recvmsg | Syscall::Recvmmsg | Syscall::IoUringEnter | Syscall::Other => false,
            // These install nothing.
            Syscall::Connect
            | Syscall::Bind
            | Syscall::Listen
            | Syscall::Ioctl
            | Syscall::Close
            | Syscall::CloseRange => false,
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

    pub const EAGAIN: i64 = 11;
    pub const EINPROGRESS: i64 = 115;
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
    }

    #[test]
    fn numbering_round_trips() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_u16(s as u16), Some(s));
            assert_eq!(Syscall::from_nr(s.nr()), Some(s));
        }
    }
}
