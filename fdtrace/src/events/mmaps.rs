//! The executable mappings of the traced processes, as the kernel makes
//! them: a process that exits before fdtrace names its stacks (a command
//! that lives milliseconds; its `/proc/PID/maps` is empty once it is a
//! zombie) is named from what it had mapped.
//!
//! How `perf record -- CMD` knows them: a software dummy perf event per CPU
//! on each target (inherited by the threads and processes it starts from
//! then on) with `mmap`, `mmap2`, `comm` and `task` side-band records,
//! read from its ring buffer. Nothing is sampled; only the kernel's
//! mapping, exec, fork and exit records are written, and only for the
//! traced processes. Launch mode opens the events on the child before it
//! execs, so the new image's mappings (the binary, ld.so, every library)
//! are all recorded.
//!
//! kernel → per-CPU perf ring ([`MmapWatch::drain`]) → [`parse`] (one
//! record, one [`MapEvent`]) → the symbolizer's recorded mappings.
use std::{
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// What the kernel says about a traced process's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapEvent {
    /// An executable mapping of a file (or `//anon`, `[vdso]`...).
    Mmap { pid: u32, time_ns: u64, start: u64, len: u64, pgoff: u64, path: String },
    /// `pid` completed an exec: its earlier mappings are gone.
    Exec { pid: u32, time_ns: u64 },
    /// `parent` forked a new process `pid` (a copy of its mappings).
    Fork { pid: u32, parent: u32, time_ns: u64 },
    /// `pid`'s thread `tid` exited (the process, when `tid == pid`).
    Exit { pid: u32, tid: u32, time_ns: u64 },
    /// The ring was full: `count` records were dropped.
    Lost { count: u64 },
}

impl MapEvent {
    /// When it happened (CLOCK_MONOTONIC ns, the clock of the eBPF
    /// events); 0 for [`MapEvent::Lost`].
    pub fn time_ns(&self) -> u64 {
        match self {
            MapEvent::Mmap { time_ns, .. }
            | MapEvent::Exec { time_ns, .. }
            | MapEvent::Fork { time_ns, .. }
            | MapEvent::Exit { time_ns, .. } => *time_ns,
            MapEvent::Lost { .. } => 0,
        }
    }
}

/// Why the mappings cannot be watched. Tracing goes on without them: only
/// the stacks of processes that exit before fdtrace names them suffer.
#[derive(Debug, thiserror::Error)]
pub enum MmapsError {
    /// perf_event_open refused (EACCES/EPERM).
    #[error(
        "perf_event_open refused ({err}; kernel.perf_event_paranoid = {paranoid}): run fdtrace as root or \
         give it CAP_PERFMON (or lower kernel.perf_event_paranoid)"
    )]
    Refused { err: io::Error, paranoid: String },
    /// Any other failure of perf_event_open or of mapping its ring.
    #[error("{what}: {err} (a kernel without perf events, CONFIG_PERF_EVENTS, cannot record mappings)")]
    Failed { what: &'static str, err: io::Error },
    /// The ring buffer could not be mapped (locked memory).
    #[error("mapping the perf ring buffer: {0} (raise kernel.perf_event_mlock_kb, or run fdtrace as root)")]
    Mmap(io::Error),
}

/// The perf events on the targets and their per-CPU rings.
pub struct MmapWatch {
    rings: Vec<PerfRing>,
    /// Every event fd (the rings' own and those redirected into them).
    _events: Vec<OwnedFd>,
    /// Records read.
    pub records: u64,
    /// Records the kernel dropped for want of room.
    pub lost: u64,
    /// Records of a kind or layout not understood (a bug if ever non-zero).
    pub undecodable: u64,
    /// Reused across drains.
    batch: Vec<MapEvent>,
    scratch: Vec<u8>,
}

/// Pages of ring data per CPU (a power of two): 128 KiB. Mappings are few
/// (tens per exec), but the kernel writes a fork and an exit record per
/// thread whatever is asked (`perf_event_task_match`): this holds some
/// 2,000 threads' between two drains (10 ms apart, longer while a new
/// stack is symbolized).
const RING_PAGES: usize = 32;

impl MmapWatch {
    /// How many perf events watching `tasks` threads takes (one per task
    /// and online CPU).
    pub fn events_for(tasks: usize) -> usize {
        tasks * online_cpus().map_or(1, |c| c.len().max(1))
    }

    /// Opens the events on `tasks` (threads; each one's future threads
    /// and children inherit them), one per online CPU and task, with one
    /// ring per CPU.
    pub fn open(tasks: &[u32]) -> Result<MmapWatch, MmapsError> {
        let cpus =
            online_cpus().map_err(|err| MmapsError::Failed { what: "reading the online CPUs", err })?;
        let mut rings = Vec::with_capacity(cpus.len());
        let mut events = Vec::with_capacity(cpus.len() * tasks.len());
        for &cpu in &cpus {
            let mut ring: Option<i32> = None;
            for &tid in tasks {
                let fd = match perf_event_open(tid, cpu) {
                    Ok(fd) => fd,
                    // A thread that exited since it was listed.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                    Err(err) if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                        let paranoid = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
                        return Err(MmapsError::Refused { err, paranoid });
                    }
                    Err(err) => return Err(MmapsError::Failed { what: "perf_event_open", err }),
                };
                match ring {
                    None => {
                        rings.push(PerfRing::map(&fd).map_err(MmapsError::Mmap)?);
                        ring = Some(fd.as_raw_fd());
                    }
                    Some(out) => {
                        // SAFETY: both are perf event fds we own, on the
                        // same CPU; the ioctl only reads the fd argument.
                        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_OUTPUT, out) };
                        if rc != 0 {
                            let err = io::Error::last_os_error();
                            return Err(MmapsError::Failed {
                                what: "redirecting a perf event's output",
                                err,
                            });
                        }
                    }
                }
                events.push(fd);
            }
        }
        Ok(MmapWatch {
            rings,
            _events: events,
            records: 0,
            lost: 0,
            undecodable: 0,
            batch: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Hands over every record in the rings now, in time order. Cheap when
    /// there is nothing: one load per CPU.
    pub fn drain(&mut self, mut f: impl FnMut(&MapEvent)) -> usize {
        self.batch.clear();
        for ring in &mut self.rings {
            ring.take(&mut self.scratch, |rec| match parse(rec) {
                Ok(Some(ev)) => self.batch.push(ev),
                Ok(None) => {}
                Err(()) => self.undecodable += 1,
            });
        }
        // Each CPU's records are in order; across CPUs (a task that moved)
        // the times say.
        self.batch.sort_by_key(MapEvent::time_ns);
        self.records += self.batch.len() as u64;
        for ev in &self.batch {
            if let MapEvent::Lost { count } = ev {
                self.lost += count;
            }
            f(ev);
        }
        self.batch.len()
    }
}

// `include/uapi/linux/perf_event.h`.
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_DUMMY: u64 = 9;
const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// `_IO('$', 5)`.
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
const PERF_ATTR_SIZE_VER5: u32 = 112;
const ATTR_INHERIT: u64 = 1 << 1;
const ATTR_MMAP: u64 = 1 << 8;
const ATTR_COMM: u64 = 1 << 9;
const ATTR_TASK: u64 = 1 << 13;
const ATTR_WATERMARK: u64 = 1 << 14;
const ATTR_SAMPLE_ID_ALL: u64 = 1 << 18;
const ATTR_MMAP2: u64 = 1 << 23;
const ATTR_COMM_EXEC: u64 = 1 << 24;
const ATTR_USE_CLOCKID: u64 = 1 << 25;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_COMM: u32 = 3;
const PERF_RECORD_EXIT: u32 = 4;
const PERF_RECORD_FORK: u32 = 7;
const PERF_RECORD_MMAP2: u32 = 10;
const PERF_RECORD_MISC_COMM_EXEC: u16 = 1 << 13;
/// `data_head` in `struct perf_event_mmap_page`, then `data_tail`,
/// `data_offset`, `data_size`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER5` (Linux 4.1+).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_watermark: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const _: () = assert!(size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER5 as usize);

fn perf_event_open(tid: u32, cpu: u32) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: PERF_ATTR_SIZE_VER5,
        config: PERF_COUNT_SW_DUMMY,
        sample_type: PERF_SAMPLE_TID | PERF_SAMPLE_TIME,
        // Enabled from the start. `mmap` turns on the records of
        // executable mappings, `mmap2` makes them MMAP2 records; `comm` with
        // `comm_exec` marks an exec; `task` gives forks and exits.
        flags: ATTR_INHERIT
            | ATTR_MMAP
            | ATTR_MMAP2
            | ATTR_COMM
            | ATTR_COMM_EXEC
            | ATTR_TASK
            | ATTR_SAMPLE_ID_ALL
            | ATTR_USE_CLOCKID
            | ATTR_WATERMARK,
        // Nobody polls the ring (the session drains it on a tick): wake
        // as rarely as the kernel allows.
        wakeup_watermark: (RING_PAGES * page_size() / 2) as u32,
        // The clock of bpf_ktime_get_ns, so records order with events.
        clockid: libc::CLOCK_MONOTONIC,
        ..PerfEventAttr::default()
    };
    // SAFETY: attr is a valid perf_event_attr of the size it says, alive
    // for the call; the kernel returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as libc::pid_t,
            cpu as libc::c_int,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `/sys/devices/system/cpu/online`: `0-3,5`.
fn online_cpus() -> io::Result<Vec<u32>> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| io::Error::other(format!("unreadable CPU list {text:?}")))
}

fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// One CPU's ring: a control page, then `data_size` bytes of records the
/// kernel writes at `data_head` and we free up to `data_tail`.
struct PerfRing {
    base: NonNull<u8>,
    len: usize,
    data_offset: usize,
    data_size: usize,
    /// Whether `base` is our mmap of a perf event (else memory a test
    /// lends).
    mapped: bool,
}

// SAFETY: the mapping is owned by the PerfRing alone (no other reference
// to it escapes); moving it to another thread moves that ownership.
unsafe impl Send for PerfRing {}

impl PerfRing {
    fn map(fd: &OwnedFd) -> io::Result<PerfRing> {
        let page = page_size();
        let len = (1 + RING_PAGES) * page;
        // SAFETY: a new shared mapping of a perf event fd; the kernel
        // checks the size (1 + 2^n pages). Writable: we publish data_tail.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        let mut ring = PerfRing { base, len, data_offset: page, data_size: RING_PAGES * page, mapped: true };
        // Linux 4.1+ says where the data is; older kernels leave 0 and put
        // it right after the control page.
        let (off, size) = (
            ring.control(DATA_OFFSET).load(Ordering::Relaxed),
            ring.control(DATA_SIZE).load(Ordering::Relaxed),
        );
        if size != 0 && (off as usize).saturating_add(size as usize) <= len && size.is_power_of_two() {
            ring.data_offset = off as usize;
            ring.data_size = size as usize;
        }
        Ok(ring)
    }

    /// A u64 of the control page.
    fn control(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the control page's 8-aligned u64
        // fields, inside the mapping (which lives as long as `self`); the
        // kernel updates data_head concurrently, hence atomics.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Hands each whole record between tail and head to `f` (copied out
    /// of the ring, joined when it wraps past the ring's end), then frees
    /// them.
    fn take(&mut self, scratch: &mut Vec<u8>, mut f: impl FnMut(&[u8])) {
        // Acquire: the records before data_head are written (the kernel's
        // smp_wmb before it publishes head).
        let head = self.control(DATA_HEAD).load(Ordering::Acquire);
        let mut tail = self.control(DATA_TAIL).load(Ordering::Relaxed);
        let mask = self.data_size as u64 - 1;
        while tail < head {
            let at = (tail & mask) as usize;
            // A header is 8 bytes at an 8-aligned offset: never split.
            let mut header = [0u8; 8];
            self.copy_out(at, &mut header);
            let size = usize::from(u16::from_ne_bytes([header[6], header[7]]));
            if size < 8 || size as u64 > head - tail {
                // Not a record (the kernel never writes one): skip to head,
                // which keeps the ring usable.
                tail = head;
                break;
            }
            scratch.clear();
            scratch.resize(size, 0);
            let first = size.min(self.data_size - at);
            self.copy_out(at, &mut scratch[..first]);
            self.copy_out(0, &mut scratch[first..]);
            f(scratch);
            tail += size as u64;
        }
        // Release: our reads of the records are done before the kernel may
        // overwrite them.
        self.control(DATA_TAIL).store(tail, Ordering::Release);
    }

    /// Copies `out.len()` bytes of the data area from `at`.
    fn copy_out(&self, at: usize, out: &mut [u8]) {
        if out.is_empty() || at + out.len() > self.data_size {
            return;
        }
        // SAFETY: [at, at + len) lies inside the data area, which lies
        // inside the mapping (checked in `map`); between tail and head the
        // kernel does not write (we have not freed it), and `out` is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(self.data_offset + at),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: our own mapping, of this length; nothing borrows it
            // past `self`.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        }
    }
}

/// One perf record (header included) as a [`MapEvent`]: `Ok(None)` for
/// records fdtrace does not use (a thread's creation, a thread renaming
/// itself, throttling), `Err(())` for one it cannot read. The records carry
/// a `sample_id` trailer (`sample_id_all` with TID|TIME): pid, tid, time.
fn parse(rec: &[u8]) -> Result<Option<MapEvent>, ()> {
    fields(rec).ok_or(())
}

/// [`parse`], `None` when a field is out of bounds.
fn fields(rec: &[u8]) -> Option<Option<MapEvent>> {
    let u32_at = |off: usize| Some(u32::from_ne_bytes(rec.get(off..off + 4)?.try_into().ok()?));
    let u64_at = |off: usize| Some(u64::from_ne_bytes(rec.get(off..off + 8)?.try_into().ok()?));
    let kind = u32_at(0)?;
    let misc = u16::from_ne_bytes(rec.get(4..6)?.try_into().ok()?);
    let size = usize::from(u16::from_ne_bytes(rec.get(6..8)?.try_into().ok()?));
    if !matches!(
        kind,
        PERF_RECORD_MMAP2 | PERF_RECORD_COMM | PERF_RECORD_FORK | PERF_RECORD_EXIT | PERF_RECORD_LOST
    ) {
        return Some(None);
    }
    if size != rec.len() || size < 8 + 16 {
        return None;
    }
    // The trailer: pid, tid (TID), time (TIME).
    let time_ns = u64_at(size - 8)?;
    Some(match kind {
        PERF_RECORD_MMAP2 => {
            // pid, tid, addr, len, pgoff, maj, min, ino, ino_generation,
            // prot, flags, filename (NUL-padded to 8), trailer.
            let name = rec.get(72..size - 16)?;
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            Some(MapEvent::Mmap {
                pid: u32_at(8)?,
                time_ns,
                start: u64_at(16)?,
                len: u64_at(24)?,
                pgoff: u64_at(32)?,
                path: String::from_utf8_lossy(name).into_owned(),
            })
        }
        PERF_RECORD_COMM if misc & PERF_RECORD_MISC_COMM_EXEC != 0 => {
            Some(MapEvent::Exec { pid: u32_at(8)?, time_ns })
        }
        PERF_RECORD_COMM => None,
        PERF_RECORD_FORK | PERF_RECORD_EXIT => {
            // pid, ppid, tid, ptid, time, trailer.
            let (pid, ppid, tid) = (u32_at(8)?, u32_at(12)?, u32_at(16)?);
            let time_ns = u64_at(24)?;
            match kind {
                // A new thread is no new address space.
                PERF_RECORD_FORK if pid != ppid => Some(MapEvent::Fork { pid, parent: ppid, time_ns }),
                PERF_RECORD_FORK => None,
                _ => Some(MapEvent::Exit { pid, tid, time_ns }),
            }
        }
        _ => Some(MapEvent::Lost { count: u64_at(16)? }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel writes it: header, body, trailer.
    fn record(kind: u32, misc: u16, body: &[u8], pid: u32, time: u64) -> Vec<u8> {
        let size = 8 + body.len() + 16;
        let mut r = Vec::with_capacity(size);
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&misc.to_ne_bytes());
        r.extend_from_slice(&(size as u16).to_ne_bytes());
        r.extend_from_slice(body);
        r.extend_from_slice(&pid.to_ne_bytes());
        r.extend_from_slice(&pid.to_ne_bytes());
        r.extend_from_slice(&time.to_ne_bytes());
        r
    }

    fn words(ws: &[u64]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn mmap2_records_name_the_file_and_its_offset() {
        // pid 42 tid 43, addr, len, pgoff, maj/min, ino, ino_gen,
        // prot/flags, "/usr/lib/libc.so.6" padded to 24 bytes.
        let mut body = words(&[42 | (43 << 32), 0x7f00_0000_1000, 0x2000, 0x28000, 8 | (1 << 32), 99, 0, 5]);
        body.extend_from_slice(b"/usr/lib/libc.so.6\0\0\0\0\0\0");
        let rec = record(PERF_RECORD_MMAP2, 2, &body, 42, 1_000);
        assert_eq!(
            parse(&rec),
            Ok(Some(MapEvent::Mmap {
                pid: 42,
                time_ns: 1_000,
                start: 0x7f00_0000_1000,
                len: 0x2000,
                pgoff: 0x28000,
                path: "/usr/lib/libc.so.6".into()
            }))
        );
        // Cut short: not a record.
        assert_eq!(parse(&rec[..rec.len() - 8]), Err(()));
        // A kind not asked for is no error.
        assert_eq!(parse(&record(5, 0, &[0; 16], 1, 1)), Ok(None));
    }

    #[test]
    fn an_exec_is_a_comm_record_marked_exec() {
        let body = [words(&[7 | (7 << 32)]), b"sh\0\0\0\0\0\0".to_vec()].concat();
        assert_eq!(
            parse(&record(PERF_RECORD_COMM, PERF_RECORD_MISC_COMM_EXEC, &body, 7, 5)),
            Ok(Some(MapEvent::Exec { pid: 7, time_ns: 5 }))
        );
        // A thread renaming itself (prctl) is no exec.
        assert_eq!(parse(&record(PERF_RECORD_COMM, 0, &body, 7, 5)), Ok(None));
    }

    #[test]
    fn forks_of_processes_and_exits() {
        // pid, ppid, tid, ptid, time.
        let fork = words(&[20 | (10 << 32), 20 | (10 << 32), 77]);
        assert_eq!(
            parse(&record(PERF_RECORD_FORK, 0, &fork, 10, 77)),
            Ok(Some(MapEvent::Fork { pid: 20, parent: 10, time_ns: 77 }))
        );
        let thread = words(&[10 | (10 << 32), 11 | (10 << 32), 78]);
        assert_eq!(parse(&record(PERF_RECORD_FORK, 0, &thread, 10, 78)), Ok(None), "a thread");
        let exit = words(&[10 | (10 << 32), 11 | (10 << 32), 79]);
        assert_eq!(
            parse(&record(PERF_RECORD_EXIT, 0, &exit, 10, 79)),
            Ok(Some(MapEvent::Exit { pid: 10, tid: 11, time_ns: 79 }))
        );
        let lost = words(&[1, 12]);
        assert_eq!(parse(&record(PERF_RECORD_LOST, 0, &lost, 0, 0)), Ok(Some(MapEvent::Lost { count: 12 })));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn records_across_the_ring_end_are_whole() {
        // A ring of 64 bytes after a control page, over memory of ours:
        // two records, the second wrapping past the end.
        let page = page_size();
        let mut mem = vec![0u64; (page + 64) / 8];
        let base = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        let mut ring = PerfRing { base, len: page + 64, data_offset: page, data_size: 64, mapped: false };
        let a = record(PERF_RECORD_COMM, PERF_RECORD_MISC_COMM_EXEC, &words(&[1 | (1 << 32)]), 1, 1);
        let b = record(PERF_RECORD_COMM, PERF_RECORD_MISC_COMM_EXEC, &words(&[2 | (2 << 32)]), 2, 2);
        // Start at offset 16, as if 16 bytes had been read before: a
        // (32 bytes) fills 16..48, b 48..64 and 0..16.
        let bytes = [a.clone(), b.clone()].concat();
        {
            // SAFETY: the data area is the last 64 bytes of `mem`.
            let data = unsafe { std::slice::from_raw_parts_mut(base.as_ptr().add(page), 64) };
            for (i, byte) in bytes.iter().enumerate() {
                data[(16 + i) % 64] = *byte;
            }
        }
        ring.control(DATA_TAIL).store(16, Ordering::Relaxed);
        ring.control(DATA_HEAD).store(16 + bytes.len() as u64, Ordering::Relaxed);
        let mut got = Vec::new();
        ring.take(&mut Vec::new(), |r| got.push(parse(r)));
        assert_eq!(got, vec![parse(&a), parse(&b)]);
        assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
        assert_eq!(ring.control(DATA_TAIL).load(Ordering::Relaxed), 16 + bytes.len() as u64);
        drop(ring);
        drop(mem);
    }
}
