//! What the host says about the traced processes, beside the events: read
//! from `/proc` and the kernel's sock_diag interface.
//!
//! - [`procfs`]: process status and names (and a container's pid in its
//!   own namespace), the fds open now (the ledger's
//!   baseline at attach, and the fds reconciliation finds unseen);
//! - [`FdScan`]: the fd numbers of every live process at one moment, which
//!   reconciliation holds the ledger against;
//! - [`SocketView`]: one view of a socket (protocol, TCP state, addresses,
//!   idle time, queues), from sock_diag where the process shares fdtrace's
//!   network namespace and from `/proc/PID/net` otherwise.
mod net;
pub mod procfs;
mod sockdiag;

use std::collections::HashMap;

use crate::{
    clock::monotonic_ns,
    events::{Addr, FdKind, SockSpec, TcpState},
    ledger::Ledger,
};

/// A socket as the kernel shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketView {
    pub inode: u64,
    /// Family, type and protocol, where the source tells.
    pub spec: Option<SockSpec>,
    /// TCP state; `None` for other sockets.
    pub state: Option<TcpState>,
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
    /// Milliseconds since it last sent or received data, whichever is more
    /// recent (`tcp_info`; sock_diag only).
    pub idle_ms: Option<u32>,
    /// Bytes waiting to be read by the process, and to be acknowledged
    /// (sock_diag only).
    pub queues: Option<(u32, u32)>,
}

/// The sockets of the ledger's live processes, by (process, fd).
pub type Sockets = HashMap<(u32, i32), SocketView>;

/// Views of the sockets the ledger holds open in live processes: TCP from
/// sock_diag (one dump for all) when the process shares fdtrace's network
/// namespace, everything else from `/proc/PID/net` (read once per
/// namespace: followed children share their parent's).
///
/// Sockets' inodes are read from their `/proc` links once (19,000
/// readlinks take ~60 ms) and kept in the ledger.
pub fn sockets(ledger: &mut Ledger) -> Sockets {
    let mut views = HashMap::new();
    let mut diag: Option<HashMap<u64, SocketView>> = None;
    let mut tables: HashMap<Option<u64>, HashMap<u64, SocketView>> = HashMap::new();
    let empty = HashMap::new();
    let tgids: Vec<u32> = ledger.processes().map(|p| p.tgid).collect();
    for tgid in tgids {
        let (mut inodes, mut unknown) = (vec![], vec![]);
        for e in ledger.open_fds(tgid).filter(|e| e.kind == FdKind::Socket) {
            match e.desc.inode {
                Some(inode) => inodes.push((e.fd, inode)),
                None => unknown.push((e.fd, e.serial)),
            }
        }
        for (fd, serial) in unknown {
            if let Some(inode) = procfs::socket_inode(tgid, fd) {
                ledger.learn_inode(tgid, fd, serial, inode);
                inodes.push((fd, inode));
            }
        }
        if inodes.is_empty() {
            continue;
        }
        let tcp = if sockdiag::same_netns(tgid) {
            &*diag.get_or_insert_with(|| sockdiag::tcp_sockets().unwrap_or_default())
        } else {
            &empty
        };
        let netns = std::fs::metadata(format!("/proc/{tgid}/ns/net"))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        for (fd, inode) in inodes {
            let view = match tcp.get(&inode) {
                Some(v) => v.clone(),
                None => {
                    let table = tables.entry(netns).or_insert_with(|| net::sockets(tgid));
                    let Some(v) = table.get(&inode) else { continue };
                    v.clone()
                }
            };
            views.insert((tgid, fd), view);
        }
    }
    views
}

/// The fd numbers of one process at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdScan {
    pub tgid: u32,
    /// CLOCK_MONOTONIC ns, just before the directory was read.
    pub scan_ns: u64,
    pub fds: Vec<i32>,
}

/// The fd numbers of every live process of the ledger; `None` when some
/// process's `/proc/PID/fd` could not be read (it is exiting, or not ours
/// to read), which leaves that process unchecked.
pub fn scan_fds(ledger: &Ledger) -> Vec<FdScan> {
    ledger
        .processes()
        .filter_map(|p| {
            let scan_ns = monotonic_ns();
            procfs::fd_numbers(p.tgid).ok().map(|fds| FdScan { tgid: p.tgid, scan_ns, fds })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded fuzz of the /proc parsers: mutated real lines and random
    /// text give values or nothing, never a panic.
    #[test]
    fn mutated_and_random_proc_text_never_panics() {
        let seeds = [
            "Name:\tcurl\nUmask:\t0022\nTgid:\t412\nPPid:\t1\nCapEff:\t000001ffffffffff\nVmHWM:\t  1024 kB\nNSpid:\t412\t1\n",
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
            let _ = procfs::parse_status(t);
            let _ = procfs::classify_link(t);
            let _ = procfs::parse_fdinfo_cloexec(t);
            let _ = net::parse_inet_table(t, true);
            let _ = net::parse_inet_table(t, false);
            let _ = net::parse_unix_table(t);
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
}
