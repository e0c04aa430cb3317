//! Reading the ring buffer from tokio: wait until the kernel signals data,
//! then drain everything that is there.
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

use super::{decode, DecodeError, Event};

pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Records that did not decode (a bug if ever non-zero).
    pub decode_errors: u64,
    pub records: u64,
}

impl EventReader {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the ring buffer owns its fd, which stays open and the same
        // for as long as the RingBuf lives inside the AsyncFd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { ring, decode_errors: 0, records: 0 })
    }

    /// Waits for records, then hands each decoded one to `f`. Returns how
    /// many were read.
    pub async fn read(&mut self, f: impl FnMut(Event)) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let n = Self::drain_ring(guard.get_inner_mut(), &mut self.decode_errors, f);
        guard.clear_ready();
        self.records += n as u64;
        Ok(n)
    }

    /// Hands over whatever is in the ring now, without waiting.
    pub fn drain(&mut self, f: impl FnMut(Event)) -> usize {
        let n = Self::drain_ring(self.ring.get_mut(), &mut self.decode_errors, f);
        self.records += n as u64;
        n
    }

    fn drain_ring(ring: &mut RingBuf<MapData>, errors: &mut u64, mut f: impl FnMut(Event)) -> usize {
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            match decode(&item) {
                Ok(ev) => f(ev),
                Err(e) => {
                    *errors += 1;
                    log_decode_error(&e, *errors);
                }
            }
        }
        n
    }
}

fn log_decode_error(e: &DecodeError, count: u64) {
    // The first few are worth seeing; after that, the count is in the summary.
    if count <= 5 {
        log::warn!("undecodable event record: {e}");
    }
}
