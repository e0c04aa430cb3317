//! The kernel side's debug log (aya-log): rare conditions the programs log
//! (registers that fail the user-segment check, the in-flight table full,
//! a received-fd walk cut short), forwarded to fdtrace's log with `-v` or
//! `FDTRACE_LOG=debug`, and compiled out by the verifier otherwise.
use aya::Ebpf;
use log::warn;

/// aya-log-ebpf's ring buffer of log records (its `AYA_LOGS`).
pub(super) const EBPF_LOGS_MAP: &str = "AYA_LOGS";

/// The kernel side's log level (aya-log's `AYA_LOG_LEVEL`, whose values
/// are `log::LevelFilter`'s): what fdtrace's own log filter lets through
/// when debug logging is on (`-v`, `FDTRACE_LOG=debug`), else 0. At 0 the
/// level is a frozen constant that switches every log statement off, and
/// the verifier removes them as dead code: they cost nothing.
pub(super) fn ebpf_log_level() -> u8 {
    match log::max_level() {
        level if level >= log::LevelFilter::Debug => level as u8,
        _ => 0,
    }
}

/// Forwards the kernel side's aya-log records to fdtrace's log (stderr),
/// from a thread of its own, until dropped.
pub(super) struct EbpfLogs {
    /// An eventfd: written to stop the thread.
    stop: std::os::fd::OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EbpfLogs {
    /// Starts forwarding; `None` (with a warning) if the object has no log
    /// ring or the thread cannot start: tracing goes on without them.
    pub(super) fn start(ebpf: &mut Ebpf) -> Option<EbpfLogs> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(l) => l,
            Err(e) => {
                warn!("the kernel side's debug logs are not shown: {e}");
                return None;
            }
        };
        // SAFETY: no pointers; the result is checked.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if stop < 0 {
            warn!("the kernel side's debug logs are not shown: eventfd: {}", std::io::Error::last_os_error());
            return None;
        }
        // SAFETY: a new fd that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let thread = std::thread::Builder::new().name("ebpf-logs".into()).spawn(move || loop {
            let mut fds = [
                libc::pollfd { fd: logger.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: stop_fd, events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: two valid pollfds; the eventfd outlives the thread
            // (Drop joins it before closing the fd).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            logger.flush();
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
            if fds[1].revents != 0 {
                break;
            }
        });
        match thread {
            Ok(t) => Some(EbpfLogs { stop, thread: Some(t) }),
            Err(e) => {
                warn!("the kernel side's debug logs are not shown: {e}");
                None
            }
        }
    }
}

impl Drop for EbpfLogs {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a local to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&raw const one).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
