//! Reading the ring buffer on a thread of its own, so that the kernel's
//! ring never waits for the pipeline.
//!
//! The pipeline stops now and then for much longer than the ring lasts at
//! full rate: the first stack of a binary loads its DWARF (159 ms for the
//! bench's `fdstress`, and seconds for a large C++ service), a `/proc` scan
//! of 100,000 fds, a report. A burst of opens meanwhile fills the 4 MiB
//! ring and the kernel drops what follows (3,000 events in one of four
//! bench runs with 100,000 fds over 6 followed processes). The reader
//! thread copies records out as they come into batches that the session
//! takes in order; at most [`QUEUED_MAX`] bytes wait, and past that the
//! reader leaves them in the ring, where the kernel counts what it has no
//! room for.
//!
//! [`Ring::drain`] keeps its meaning: every record the kernel had
//! committed when it was called is handed over before it returns (the
//! reader drains the ring on request, then says so).
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread,
};

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

/// At most this many bytes of records wait for the session.
pub const QUEUED_MAX: usize = 32 << 20;

/// A batch is handed over once it holds this many bytes (or the ring is
/// empty).
const BATCH_BYTES: usize = 256 << 10;

/// How long the reader sleeps when the kernel does not wake it: the
/// kernel wakes it only once 256 KiB wait (see `attach`).
const POLL_MS: i32 = 10;

/// Records in the order the ring held them: record `i` is
/// `bytes[ends[i - 1]..ends[i]]`.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

enum Msg {
    Batch(Batch),
    /// Everything up to flush request `n` was sent.
    Flushed(u64),
}

pub struct Ring {
    msgs: mpsc::Receiver<Msg>,
    /// Written by the reader after each message: the session's wakeup.
    ready: AsyncFd<OwnedFd>,
    flushes: mpsc::Sender<u64>,
    /// Wakes the reader (a flush request, or the end).
    wake: Arc<OwnedFd>,
    shared: Arc<Shared>,
    reader: Option<thread::JoinHandle<()>>,
    flushed: u64,
    /// Records taken so far.
    pub records: u64,
}

struct Shared {
    queued: AtomicUsize,
    stop: AtomicBool,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is ours on success.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn clear(fd: RawFd) {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd.
    unsafe { libc::read(fd, (&mut n as *mut u64).cast(), 8) };
}

impl Ring {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        let (msg_tx, msgs) = mpsc::channel();
        let (flushes, flush_rx) = mpsc::channel();
        let ready = eventfd()?;
        let wake = Arc::new(eventfd()?);
        let shared = Arc::new(Shared { queued: AtomicUsize::new(0), stop: AtomicBool::new(false) });
        let reader = Reader {
            ring,
            msgs: msg_tx,
            flushes: flush_rx,
            ready: ready.as_raw_fd(),
            wake: Arc::clone(&wake),
            shared: Arc::clone(&shared),
        };
        let reader = thread::Builder::new().name("fdtrace-ring".into()).spawn(move || reader.run())?;
        // SAFETY: the eventfd is owned by the AsyncFd, which keeps it open
        // and the same for as long as it lives.
        let ready = unsafe { AsyncFd::register_with_interest(ready, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { msgs, ready, flushes, wake, shared, reader: Some(reader), flushed: 0, records: 0 })
    }

    /// Waits for records, then hands each to `f`. Returns how many.
    pub async fn read(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        loop {
            let n = self.take_ready(&mut f);
            if n > 0 {
                return Ok(n);
            }
            let mut guard = self.ready.readable().await?;
            clear(self.ready.get_ref().as_raw_fd());
            guard.clear_ready();
        }
    }

    /// Hands over every record the kernel had committed by now, without
    /// waiting for the kernel to wake anyone.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        self.flushed += 1;
        let want = self.flushed;
        if self.flushes.send(want).is_err() {
            return self.take_ready(&mut f);
        }
        signal(self.wake.as_raw_fd());
        let mut n = 0;
        while let Ok(msg) = self.msgs.recv() {
            match msg {
                Msg::Batch(b) => n += self.hand(b, &mut f),
                Msg::Flushed(k) if k == want => break,
                Msg::Flushed(_) => {}
            }
        }
        n
    }

    /// The batches the reader has sent so far.
    fn take_ready(&mut self, f: &mut impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Ok(msg) = self.msgs.try_recv() {
            if let Msg::Batch(b) = msg {
                n += self.hand(b, f);
            }
        }
        n
    }

    fn hand(&mut self, b: Batch, f: &mut impl FnMut(&[u8])) -> usize {
        let mut start = 0;
        for &end in &b.ends {
            f(&b.bytes[start..end as usize]);
            start = end as usize;
        }
        self.shared.queued.fetch_sub(b.bytes.len(), Ordering::Relaxed);
        self.records += b.ends.len() as u64;
        b.ends.len()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        signal(self.wake.as_raw_fd());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

struct Reader {
    ring: RingBuf<MapData>,
    msgs: mpsc::Sender<Msg>,
    flushes: mpsc::Receiver<u64>,
    ready: RawFd,
    wake: Arc<OwnedFd>,
    shared: Arc<Shared>,
}

impl Reader {
    fn run(mut self) {
        let Ok(ep) = self.epoll() else { return };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.copy(false).is_err() {
                return;
            }
            while let Ok(n) = self.flushes.try_recv() {
                // Asked: all of it, whatever waits already.
                if self.copy(true).is_err() || self.msgs.send(Msg::Flushed(n)).is_err() {
                    return;
                }
                signal(self.ready);
            }
            // SAFETY: waits on a live epoll fd, into a live array of 2.
            unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 2, POLL_MS) };
            clear(self.wake.as_raw_fd());
        }
    }

    /// The ring edge-triggered (the kernel wakes it when 256 KiB wait, not
    /// at every record: polling for any data would spin at the record
    /// rate), and the wake-up eventfd.
    fn epoll(&self) -> io::Result<OwnedFd> {
        // SAFETY: plain syscall; the fd is ours on success.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd nobody else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        for (fd, flags) in [
            (self.ring.as_raw_fd(), (libc::EPOLLIN | libc::EPOLLET) as u32),
            (self.wake.as_raw_fd(), libc::EPOLLIN as u32),
        ] {
            let mut ev = libc::epoll_event { events: flags, u64: fd as u64 };
            // SAFETY: adds a live fd to a live epoll fd.
            if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ep)
    }

    /// Copies what the ring holds into batches for the session: at most
    /// until [`QUEUED_MAX`] bytes wait, unless `all`.
    fn copy(&mut self, all: bool) -> Result<(), mpsc::SendError<Msg>> {
        let mut batch = Batch::default();
        loop {
            if !all && self.shared.queued.load(Ordering::Relaxed) + batch.bytes.len() >= QUEUED_MAX {
                break;
            }
            let Some(item) = self.ring.next() else { break };
            batch.bytes.extend_from_slice(&item);
            batch.ends.push(batch.bytes.len() as u32);
            drop(item);
            if batch.bytes.len() >= BATCH_BYTES {
                self.send(std::mem::take(&mut batch))?;
            }
        }
        if !batch.ends.is_empty() {
            self.send(batch)?;
        }
        Ok(())
    }

    fn send(&self, b: Batch) -> Result<(), mpsc::SendError<Msg>> {
        self.shared.queued.fetch_add(b.bytes.len(), Ordering::Relaxed);
        self.msgs.send(Msg::Batch(b))?;
        signal(self.ready);
        Ok(())
    }
}
