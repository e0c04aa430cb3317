//! Holding the ledger against `/proc/PID/fd`, in two steps: [`Check::start`]
//! reads the fd numbers of every live process; a little later, once the
//! events of syscalls that were in flight during the scan are in (the
//! session goes on reading them meanwhile), [`Check::judge`] counts what
//! the ledger missed. fds touched by an event since just before the scan
//! are not judged.
use std::time::Duration;

use log::warn;

use crate::{
    host::{self, procfs, FdScan},
    ledger::Ledger,
};

/// How long after a `/proc` scan reconciliation waits for the events of
/// syscalls that were in flight during the scan.
pub const SETTLE: Duration = Duration::from_millis(50);

/// A reconciliation under way.
pub struct Check {
    scans: Vec<FdScan>,
    /// When to judge.
    pub due: tokio::time::Instant,
}

/// What a reconciliation found (and corrected in the ledger).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Missed {
    pub open: u64,
    pub close: u64,
}

impl Check {
    pub fn start(ledger: &Ledger) -> Check {
        let scans = host::scan_fds(ledger);
        // Nothing to wait for when no process could be scanned.
        let settle = if scans.is_empty() { Duration::ZERO } else { SETTLE };
        Check { scans, due: tokio::time::Instant::now() + settle }
    }

    /// Brings the ledger in line with the scans.
    pub fn judge(self, ledger: &mut Ledger) -> Missed {
        let settle = SETTLE.as_nanos() as u64;
        let mut missed = Missed::default();
        for FdScan { tgid, scan_ns, fds } in self.scans {
            let mut fx = vec![];
            let mut describer = procfs::Describer::new(tgid);
            let (open, close) = ledger.reconcile(
                tgid,
                scan_ns,
                &fds,
                scan_ns.saturating_sub(settle),
                |fd| describer.describe(fd),
                &mut fx,
            );
            if open + close > 0 {
                warn!("pid {tgid}: /proc disagrees with the events: {open} missed opens, {close} missed closes (corrected)");
            }
            missed.open += open;
            missed.close += close;
        }
        missed
    }
}
