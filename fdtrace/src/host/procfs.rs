//! `/proc/PID`: process status, names, the fds open now and what they
//! are. The parsers take text and are tested on it; the readers are thin.
use std::{fs, io, path::PathBuf};

use super::{net, SocketView};
use crate::{
    events::{FdKind, TcpState},
    ledger::{FdDesc, ProcFd},
};

/// The fields of `/proc/PID/status` fdtrace uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub tgid: u32,
    pub ppid: u32,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Peak resident set size, KiB.
    pub vm_hwm_kb: u64,
    /// The pid in the process's own (innermost) pid namespace, when that
    /// differs from `tgid` (a container's `NSpid:\t8663\t1` gives 1).
    pub ns_pid: Option<u32>,
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    let mut innermost = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Name" => s.name = value.to_string(),
            "Tgid" => s.tgid = value.parse().unwrap_or(0),
            "PPid" => s.ppid = value.parse().unwrap_or(0),
            "CapEff" => s.cap_eff = u64::from_str_radix(value, 16).unwrap_or(0),
            "VmHWM" => s.vm_hwm_kb = value.trim_end_matches("kB").trim().parse().unwrap_or(0),
            // One pid per namespace, outermost (/proc's) first.
            "NSpid" => innermost = value.split_whitespace().last().and_then(|v| v.parse::<u32>().ok()),
            _ => {}
        }
    }
    s.ns_pid = innermost.filter(|&n| n != s.tgid && s.tgid != 0);
    s
}

/// Processes (not fdtrace itself) whose name (`comm`) is `name`, compared
/// on the 15 bytes the kernel keeps.
pub fn pids_with_comm(name: &str) -> Vec<u32> {
    let want = &name.as_bytes()[..name.len().min(15)];
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return vec![] };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == want)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether `pid` has exited (a zombie waiting to be reaped, or gone).
pub fn is_zombie_or_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

pub fn status(pid: &str) -> io::Result<Status> {
    Ok(parse_status(&fs::read_to_string(format!("/proc/{pid}/status"))?))
}

/// The pid of process `pid` in its own pid namespace, when it runs in
/// another one than fdtrace's /proc (a container); `None` when it is the
/// same pid, or the process is gone.
pub fn ns_pid(pid: u32) -> Option<u32> {
    status(&pid.to_string()).ok()?.ns_pid
}

/// What a `/proc/PID/fd/N` link target says about the fd.
pub fn classify_link(target: &str) -> (FdKind, FdDesc) {
    let inode = |s: &str| s.trim_end_matches(']').rsplit('[').next().and_then(|n| n.parse().ok());
    let mut desc = FdDesc::default();
    let kind = if let Some(rest) = target.strip_prefix("socket:") {
        desc.inode = inode(rest);
        FdKind::Socket
    } else if let Some(rest) = target.strip_prefix("pipe:") {
        desc.inode = inode(rest);
        FdKind::Pipe
    } else if let Some(anon) = target.strip_prefix("anon_inode:") {
        match anon.trim_start_matches('[').trim_end_matches(']') {
            "eventfd" => FdKind::Eventfd,
            "eventpoll" => FdKind::Epoll,
            "timerfd" => FdKind::Timerfd,
            "signalfd" => FdKind::Signalfd,
            "inotify" => FdKind::Inotify,
            "fanotify" => FdKind::Fanotify,
            "pidfd" => FdKind::Pidfd,
            "userfaultfd" => FdKind::Userfaultfd,
            "perf_event" => FdKind::PerfEvent,
            "io_uring" => FdKind::IoUring,
            "secretmem" => FdKind::Memfd,
            _ => FdKind::Other,
        }
    } else if target.starts_with("/memfd:") {
        desc.path = Some(target.to_string());
        FdKind::Memfd
    } else if target.starts_with("pidfd:") {
        FdKind::Pidfd
    } else {
        desc.path = Some(target.to_string());
        FdKind::File
    };
    (kind, desc)
}

/// `flags:` of `/proc/PID/fdinfo/N` (octal) has O_CLOEXEC.
pub fn parse_fdinfo_cloexec(text: &str) -> bool {
    const O_CLOEXEC: u64 = 0o2000000;
    text.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|f| f & O_CLOEXEC != 0)
}

/// The fds of `pid` now, with what their links say, and sockets'
/// addresses filled in from the process's network namespace tables.
pub fn list_fds(pid: u32) -> io::Result<Vec<ProcFd>> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut fds = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // The fd can close between readdir and readlink.
        let Ok(target) = fs::read_link(entry.path()) else { continue };
        let (kind, desc) = classify_link(&target.to_string_lossy());
        let cloexec = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .map(|t| parse_fdinfo_cloexec(&t))
            .unwrap_or(false);
        fds.push(ProcFd { fd, kind, cloexec, desc });
    }
    if fds.iter().any(|f| f.kind == FdKind::Socket) {
        let sockets = net::sockets(pid);
        for f in &mut fds {
            if let Some(s) = f.desc.inode.and_then(|i| sockets.get(&i)) {
                describe_socket(&mut f.desc, s);
            }
        }
    }
    fds.sort_by_key(|f| f.fd);
    Ok(fds)
}

/// One fd of `pid` described as `list_fds` would; `None` if it is closed.
pub fn describe_fd(pid: u32, fd: i32) -> Option<ProcFd> {
    Describer::new(pid).describe(fd)
}

/// Describes fds of one process, reading its socket tables once (at the
/// first socket) however many fds it describes: a table of 40,000 sockets
/// takes seconds to read.
pub struct Describer {
    pid: u32,
    sockets: Option<std::collections::HashMap<u64, SocketView>>,
}

impl Describer {
    pub fn new(pid: u32) -> Describer {
        Describer { pid, sockets: None }
    }

    pub fn describe(&mut self, fd: i32) -> Option<ProcFd> {
        let pid = self.pid;
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        let (kind, mut desc) = classify_link(&target.to_string_lossy());
        let cloexec = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .map(|t| parse_fdinfo_cloexec(&t))
            .unwrap_or(false);
        if let Some(inode) = desc.inode {
            let sockets = self.sockets.get_or_insert_with(|| net::sockets(pid));
            if let Some(s) = sockets.get(&inode) {
                describe_socket(&mut desc, s);
            }
        }
        Some(ProcFd { fd, kind, cloexec, desc })
    }
}

/// The path a file fd of `pid` refers to now (files and memfds; `None`
/// if it is closed or has none).
pub fn fd_path(pid: u32, fd: i32) -> Option<String> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    classify_link(&target.to_string_lossy()).1.path
}

/// What the ledger keeps of a socket found in `/proc`.
fn describe_socket(desc: &mut FdDesc, s: &SocketView) {
    desc.sock = s.spec;
    desc.set_local(s.local.clone());
    desc.set_remote(s.remote.clone());
    desc.listening = s.state == Some(TcpState::Listen);
}

/// The socket inode of fd `fd` of `pid`; `None` when it is not a socket,
/// or closed meanwhile.
pub fn socket_inode(pid: u32, fd: i32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let (kind, desc) = classify_link(&link.to_string_lossy());
    if kind == FdKind::Socket {
        desc.inode
    } else {
        None
    }
}

/// Just the fd numbers of `pid` (cheap: one readdir).
pub fn fd_numbers(pid: u32) -> io::Result<Vec<i32>> {
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// The threads of process `pid` (`/proc/PID/task`); empty when it is gone.
pub fn threads(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = parse_status("Name:\tcurl\nUmask:\t0022\nTgid:\t412\nPPid:\t1\nCapEff:\t000001ffffffffff\n");
        assert_eq!(
            s,
            Status {
                name: "curl".into(),
                tgid: 412,
                ppid: 1,
                cap_eff: 0x1ff_ffff_ffff,
                vm_hwm_kb: 0,
                ns_pid: None
            }
        );
    }

    #[test]
    fn ns_pid_is_the_innermost_when_it_differs() {
        // In a container: host pid, then the pid in each nested namespace.
        assert_eq!(parse_status("Tgid:\t8663\nNSpid:\t8663\t1\n").ns_pid, Some(1));
        assert_eq!(parse_status("Tgid:\t8663\nNSpid:\t8663\t40\t7\n").ns_pid, Some(7));
        // In /proc's own namespace (or a kernel without NSpid): none.
        assert_eq!(parse_status("Tgid:\t8663\nNSpid:\t8663\n").ns_pid, None);
        assert_eq!(parse_status("Tgid:\t8663\n").ns_pid, None);
        // Before Tgid, and garbage.
        assert_eq!(parse_status("NSpid:\t9\t2\nTgid:\t9\n").ns_pid, Some(2));
        assert_eq!(parse_status("Tgid:\t9\nNSpid:\t9\tx\n").ns_pid, None);
    }

    #[test]
    fn links_classify() {
        assert_eq!(classify_link("socket:[12345]").0, FdKind::Socket);
        assert_eq!(classify_link("socket:[12345]").1.inode, Some(12345));
        assert_eq!(classify_link("pipe:[77]").0, FdKind::Pipe);
        assert_eq!(classify_link("anon_inode:[eventfd]").0, FdKind::Eventfd);
        assert_eq!(classify_link("anon_inode:[eventpoll]").0, FdKind::Epoll);
        assert_eq!(classify_link("anon_inode:inotify").0, FdKind::Inotify);
        assert_eq!(classify_link("/memfd:buf (deleted)").0, FdKind::Memfd);
        let (k, d) = classify_link("/var/log/app.log");
        assert_eq!((k, d.path.as_deref()), (FdKind::File, Some("/var/log/app.log")));
    }

    #[test]
    fn fdinfo_cloexec() {
        assert!(parse_fdinfo_cloexec("pos:\t0\nflags:\t02000002\nmnt_id:\t15\n"));
        assert!(!parse_fdinfo_cloexec("pos:\t0\nflags:\t0100002\n"));
        assert!(!parse_fdinfo_cloexec("garbage"));
    }
}
