//! `/proc/PID/net/{tcp,tcp6,udp,udp6,unix}`: the sockets of a process's
//! network namespace, with addresses and (TCP) states; no idle times
//! (those come from sock_diag, see [`super::sockdiag`]).
use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use fdtrace_common::syscall::consts::{AF_INET, AF_INET6, AF_UNIX};

use super::SocketView;
use crate::events::{Addr, SockSpec, TcpState};

/// Parses `/proc/net/tcp`-style tables (tcp, tcp6, udp, udp6).
pub fn parse_inet_table(text: &str, tcp: bool) -> Vec<SocketView> {
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
            Some(SocketView {
                inode,
                spec: None,
                state: if tcp { TcpState::from_u8(state) } else { None },
                local: Some(Addr::Inet(local)),
                remote: (!unspecified).then_some(Addr::Inet(remote)),
                idle_ms: None,
                queues: None,
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
pub fn sockets(pid: u32) -> HashMap<u64, SocketView> {
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
        out.entry(inode).or_insert(SocketView {
            inode,
            spec,
            state: None,
            local,
            remote: None,
            idle_ms: None,
            queues: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
