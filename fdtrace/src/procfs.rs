//! `/proc`: target resolution, the fds open at attach, sockets' addresses
//! and states. The parsers take text and are tested on it; the readers are
//! thin.
use std::{
    collections::HashMap,
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use fdtrace_common::syscall::consts::{AF_INET, AF_INET6, AF_UNIX};

pub use crate::events::TcpState;
use crate::{
    events::{Addr, FdKind, SockSpec},
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
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Name" => s.name = value.to_string(),
            "Tgid" => s.tgid = value.parse().unwrap_or(0),
            "PPid" => s.ppid = value.parse().unwrap_or(0),
            "CapEff" => s.cap_eff = u64::from_str_radix(value, 16).unwrap_or(0),
            "VmHWM" => s.vm_hwm_kb = value.trim_end_matches("kB").trim().parse().unwrap_or(0),
            _ => {}
        }
    }
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
        let sockets = sockets(pid);
        for f in &mut fds {
            if let Some(s) = f.desc.inode.and_then(|i| sockets.get(&i)) {
                f.desc.sock = s.spec;
                f.desc.local = s.local.clone();
                f.desc.remote = s.remote.clone();
                f.desc.listening = s.state == Some(TcpState::Listen);
            }
        }
    }
    fds.sort_by_key(|f| f.fd);
    Ok(fds)
}

/// One fd of `pid` described as `list_fds` would; `None` if it is closed.
pub fn describe_fd(pid: u32, fd: i32) -> Option<ProcFd> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let (kind, mut desc) = classify_link(&target.to_string_lossy());
    let cloexec = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map(|t| parse_fdinfo_cloexec(&t))
        .unwrap_or(false);
    if let Some(s) = desc.inode.and_then(|i| sockets(pid).remove(&i)) {
        desc.sock = s.spec;
        desc.local = s.local;
        desc.remote = s.remote;
        desc.listening = s.state == Some(TcpState::Listen);
    }
    Some(ProcFd { fd, kind, cloexec, desc })
}

/// The socket inodes of the given fds of `pid` (fds that are not sockets,
/// or closed meanwhile, are left out).
pub fn socket_inodes(pid: u32, fds: impl Iterator<Item = i32>) -> Vec<(i32, u64)> {
    fds.filter_map(|fd| {
        let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        let (kind, desc) = classify_link(&link.to_string_lossy());
        (kind == FdKind::Socket).then_some((fd, desc.inode?))
    })
    .collect()
}

/// Just the fd numbers of `pid` (cheap: one readdir).
pub fn fd_numbers(pid: u32) -> io::Result<Vec<i32>> {
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// One row of `/proc/net/{tcp,tcp6,udp,udp6,unix}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketRow {
    /// Family/type/protocol, from which table the row came from.
    pub spec: Option<SockSpec>,
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
    /// TCP state; `None` for UDP.
    pub state: Option<TcpState>,
    pub inode: u64,
}

/// Parses `/proc/net/tcp`-style tables (tcp, tcp6, udp, udp6).
pub fn parse_inet_table(text: &str, tcp: bool) -> Vec<SocketRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                return None;
            }
            let local = parse_hex_addr(cols[1])?;
            let remote = parse_hex_addr(cols[2])?;
            let state = u8::from_str_radix(cols[3], 16).ok()?;
            let inode = cols[9].parse().ok()?;
            let unspecified = remote.ip().is_unspecified() && remote.port() == 0;
            Some(SocketRow {
                spec: None,
                local: Some(Addr::Inet(local)),
                remote: (!unspecified).then_some(Addr::Inet(remote)),
                state: if tcp { TcpState::from_u8(state) } else { None },
                inode,
            })
        })
        .collect()
}

/// "0100007F:1F90" → 127.0.0.1:8080. IPv4 is one u32 and IPv6 four u32s,
/// each printed in host (little-endian) order; the port is big-endian hex.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses `/proc/net/unix`: (inode, socket type, path), the path "" when
/// unnamed and "@x" when abstract.
pub fn parse_unix_table(text: &str) -> Vec<(u64, u16, String)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let sock_type = u16::from_str_radix(cols.get(4)?, 16).ok()?;
            let inode = cols.get(6)?.parse().ok()?;
            Some((inode, sock_type, cols.get(7).map(|p| p.to_string()).unwrap_or_default()))
        })
        .collect()
}

/// The sockets of `pid`'s network namespace, by inode.
pub fn sockets(pid: u32) -> HashMap<u64, SocketRow> {
    let base = PathBuf::from(format!("/proc/{pid}/net"));
    let read = |name: &str| fs::read_to_string(base.join(name)).unwrap_or_default();
    let mut out = HashMap::new();
    let tables = [
        ("tcp", AF_INET, 1, 6),
        ("tcp6", AF_INET6, 1, 6),
        ("udp", AF_INET, 2, 17),
        ("udp6", AF_INET6, 2, 17),
    ];
    for (name, family, sock_type, protocol) in tables {
        for mut row in parse_inet_table(&read(name), protocol == 6) {
            row.spec = Some(SockSpec { family, sock_type, protocol });
            out.insert(row.inode, row);
        }
    }
    for (inode, sock_type, path) in parse_unix_table(&read("unix")) {
        let local = (!path.is_empty()).then_some(Addr::Unix(path));
        let spec = Some(SockSpec { family: AF_UNIX, sock_type, protocol: 0 });
        out.entry(inode).or_insert(SocketRow { spec, local, remote: None, state: None, inode });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded fuzz of the /proc parsers: mutated real lines and random
    /// text give values or nothing, never a panic.
    #[test]
    fn mutated_and_random_proc_text_never_panics() {
        let seeds = [
            "Name:\tcurl\nUmask:\t0022\nTgid:\t412\nPPid:\t1\nCapEff:\t000001ffffffffff\nVmHWM:\t  1024 kB\n",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 0100007F:D2B4 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 20 4 30 10 -1\n",
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D2B4 01 00000000:00000000 00:00000000 00000000  1000        0 654321 1\n",
            "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/app.sock\n",
            "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1234\n",
            "socket:[12345]",
            "anon_inode:[eventfd]",
            "/memfd:cache (deleted)",
            "pipe:[999]",
        ];
        let mut next = crate::fuzz::xorshift(0x2545_f491_4f6c_dd1d);
        let parse_all = |t: &str| {
            let _ = parse_status(t);
            let _ = classify_link(t);
            let _ = parse_fdinfo_cloexec(t);
            let _ = parse_inet_table(t, true);
            let _ = parse_inet_table(t, false);
            let _ = parse_unix_table(t);
        };
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF:[]() \t\n/-_.x";
        for _ in 0..30_000 {
            let mut b = seeds[next() as usize % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next() % 6 {
                let i = next() as usize % b.len();
                match next() % 3 {
                    0 => b[i] = ALPHABET[next() as usize % ALPHABET.len()],
                    1 => b.truncate(i),
                    _ => b.insert(i, ALPHABET[next() as usize % ALPHABET.len()]),
                }
                if b.is_empty() {
                    break;
                }
            }
            parse_all(&String::from_utf8_lossy(&b));
        }
        for _ in 0..10_000 {
            let len = next() as usize % 300;
            let b: Vec<u8> = (0..len).map(|_| ALPHABET[next() as usize % ALPHABET.len()]).collect();
            parse_all(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn status_fields() {
        let s = parse_status("Name:\tcurl\nUmask:\t0022\nTgid:\t412\nPPid:\t1\nCapEff:\t000001ffffffffff\n");
        assert_eq!(
            s,
            Status { name: "curl".into(), tgid: 412, ppid: 1, cap_eff: 0x1ff_ffff_ffff, vm_hwm_kb: 0 }
        );
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

    #[test]
    fn inet_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:26AD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:B1C8 0100007F:26AD 08 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let rows = parse_inet_table(tcp, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local, Some(Addr::Inet("127.0.0.1:9901".parse().unwrap())));
        assert_eq!((rows[0].remote.clone(), rows[0].state), (None, Some(TcpState::Listen)));
        assert_eq!(rows[1].remote, Some(Addr::Inet("127.0.0.1:9901".parse().unwrap())));
        assert_eq!((rows[1].state, rows[1].inode), (Some(TcpState::CloseWait), 4343));

        let tcp6 = "header\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1\n   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 0:0 0:0 0 0 0 100 1\n";
        let rows = parse_inet_table(tcp6, true);
        assert_eq!(rows[0].local, Some(Addr::Inet("[::1]:8080".parse().unwrap())));
        assert_eq!(rows[1].remote, Some(Addr::Inet("127.0.0.1:54321".parse().unwrap())));
    }

    #[test]
    fn malformed_tables_are_skipped_not_fatal() {
        for text in ["", "header only", "h\n  0: zz:zz 00:00 0A 0 0 0 0 0 x\n", "h\n 0: 0100007F 1\n"] {
            assert!(parse_inet_table(text, true).is_empty());
        }
        assert!(parse_unix_table("h\nshort line\n").is_empty());
    }

    #[test]
    fn unix_table() {
        let t = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 2001 /run/app.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 2002\n";
        assert_eq!(parse_unix_table(t), vec![(2001, 1, "/run/app.sock".into()), (2002, 1, String::new())]);
    }
}
