//! Pairing mode, fdtrace's half: the kernel keeps the fds it saw opened in
//! a map (`fdtrace-ebpf`'s `keep`), pairs their closes itself and counts
//! the pairs per place. [`KernelFds`] takes the fds still open out of that
//! map (a batched lookup-and-delete: each fd becomes fdtrace's, and its
//! close will come through the ring), reads the pair counts, and sets the
//! per-process flags that stop pairing while fdtrace catches up
//! (`target::HELD`) or for good (`target::NO_PAIRING`).
//!
//! aya has no batched map operations; these are the `bpf(2)` commands
//! themselves (`BPF_MAP_LOOKUP_AND_DELETE_BATCH` and `BPF_MAP_LOOKUP_BATCH`,
//! Linux 5.6+ for hash maps).
use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use fdtrace_common::{target, FdKey, Kept, SiteKey};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const BPF_EXIST: u64 = 2;

/// Entries asked for per batch call; a hash bucket holding more makes the
/// kernel answer ENOSPC, and the call is retried with twice as many.
const BATCH: usize = 1024;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `union bpf_attr`'s element member (lookup, update, delete).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a `bpf_attr` member of its size, whose pointers
    // the callers point at buffers of the sizes they give.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Every entry of a hash map, in batches (deleted as they are read, with
/// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`).
fn batch<K: Copy + Default, V: Copy + Default>(map: &OwnedFd, cmd: libc::c_long) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut cap = BATCH;
    let (mut keys, mut values) = (vec![K::default(); cap], vec![V::default(); cap]);
    let (mut token, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &mut token as *mut u64 as u64 },
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: cap as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let r = bpf(cmd, &mut attr);
        let got = (attr.count as usize).min(cap);
        out.extend(keys[..got].iter().copied().zip(values[..got].iter().copied()));
        match r {
            Ok(()) => {}
            // Done: the last entries came with it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            // One bucket holds more than fits: again, with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                cap *= 2;
                keys.resize(cap, K::default());
                values.resize(cap, V::default());
                continue;
            }
            Err(e) => return Err(e),
        }
        token = next;
        first = false;
    }
}

/// The kernel's kept fds and pair counts, and its per-process flags.
pub struct KernelFds {
    open_fds: OwnedFd,
    pairs: OwnedFd,
    targets: OwnedFd,
    /// Each place's pair count when last read.
    counted: HashMap<SiteKey, u64>,
    /// fds taken so far.
    pub taken: u64,
}

impl KernelFds {
    /// The maps `OPEN_FDS`, `PAIRS` and `TARGETS`.
    pub fn new(open_fds: OwnedFd, pairs: OwnedFd, targets: OwnedFd) -> KernelFds {
        KernelFds { open_fds, pairs, targets, counted: HashMap::new(), taken: 0 }
    }

    /// Takes every fd the kernel keeps: from now on fdtrace owns them.
    pub fn take(&mut self) -> io::Result<Vec<(FdKey, Kept)>> {
        let fds = batch::<FdKey, Kept>(&self.open_fds, BPF_MAP_LOOKUP_AND_DELETE_BATCH)?;
        self.taken += fds.len() as u64;
        Ok(fds)
    }

    /// The pairs counted per place since the last call.
    pub fn new_pairs(&mut self) -> io::Result<Vec<(SiteKey, u64)>> {
        let now = batch::<SiteKey, u64>(&self.pairs, BPF_MAP_LOOKUP_BATCH)?;
        let mut out = Vec::new();
        for (site, n) in now {
            let before = self.counted.insert(site, n).unwrap_or(0);
            if n > before {
                out.push((site, n - before));
            }
        }
        Ok(out)
    }

    /// Forgets the places of a process that exited (after
    /// [`KernelFds::new_pairs`] read their last counts), making room for
    /// others.
    pub fn forget(&mut self, tgid: u32) {
        let gone: Vec<SiteKey> = self.counted.keys().filter(|s| s.tgid == tgid).copied().collect();
        for mut site in gone {
            self.counted.remove(&site);
            let mut attr = ElemAttr {
                map_fd: self.pairs.as_raw_fd() as u32,
                key: &mut site as *mut SiteKey as u64,
                ..ElemAttr::default()
            };
            let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
        }
    }

    /// Sets or clears `target` flags of a traced process (a process that
    /// is gone is left alone). The kernel sets flags by single-byte stores;
    /// one made between this read and write is lost, which the callers
    /// allow for (see `Source`).
    pub fn set_flags(&self, tgid: u32, set: u32, clear: u32) -> io::Result<()> {
        let mut key = tgid;
        let mut flags = 0u32;
        let mut attr = ElemAttr {
            map_fd: self.targets.as_raw_fd() as u32,
            key: &mut key as *mut u32 as u64,
            value: &mut flags as *mut u32 as u64,
            ..ElemAttr::default()
        };
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            r => r?,
        }
        let mut new = (flags | set) & !clear;
        if new == flags {
            return Ok(());
        }
        let mut attr = ElemAttr {
            map_fd: self.targets.as_raw_fd() as u32,
            key: &mut key as *mut u32 as u64,
            value: &mut new as *mut u32 as u64,
            flags: BPF_EXIST,
            ..ElemAttr::default()
        };
        match bpf(BPF_MAP_UPDATE_ELEM, &mut attr) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Stops pairing for `tgid` until [`KernelFds::resume`].
    pub fn hold(&self, tgid: u32) -> io::Result<()> {
        self.set_flags(tgid, target::HELD, 0)
    }

    /// Lets the kernel pair `tgid`'s fds again (unless it shares its
    /// table: `no_pairing`).
    pub fn resume(&self, tgid: u32, no_pairing: bool) -> io::Result<()> {
        let set = if no_pairing { target::NO_PAIRING } else { 0 };
        self.set_flags(tgid, set, target::HELD)
    }
}
