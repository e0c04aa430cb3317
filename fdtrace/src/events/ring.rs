//! Reading the ring buffer from tokio: wait until the kernel signals data,
//! then take everything that is there.
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

pub struct Ring {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Records taken so far.
    pub records: u64,
}

impl Ring {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the ring buffer owns its fd, which stays open and the same
        // for as long as the RingBuf lives inside the AsyncFd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { ring, records: 0 })
    }

    /// Waits for records, then hands each to `f`. Returns how many.
    pub async fn read(&mut self, f: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let n = take_all(guard.get_inner_mut(), f);
        guard.clear_ready();
        self.records += n as u64;
        Ok(n)
    }

    /// Hands over whatever is in the ring now, without waiting.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        let n = take_all(self.ring.get_mut(), f);
        self.records += n as u64;
        n
    }
}

fn take_all(ring: &mut RingBuf<MapData>, mut f: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        f(&item);
    }
    n
}
