//! The events of a session, whole: records from the [`Ring`], decoded,
//! with inline stacks joined to their events; and the [`StackTable`] that
//! turns the stacks they name into frames.
use std::io;

use aya::maps::{MapData, RingBuf, StackTraceMap};

use super::{
    assemble::{Assembler, StackTable},
    decode::{decode, DecodeError},
    ring::Ring,
    Event,
};

pub struct Source {
    ring: Ring,
    assembler: Assembler,
    stacks: StackTable,
    /// Records that did not decode (a bug if ever non-zero).
    pub decode_errors: u64,
}

impl Source {
    /// Reads `ring`; `stacks` is the kernel's stack map, if stacks are
    /// captured.
    pub fn new(ring: RingBuf<MapData>, stacks: Option<StackTraceMap<MapData>>) -> io::Result<Source> {
        Ok(Source {
            ring: Ring::new(ring)?,
            assembler: Assembler::default(),
            stacks: StackTable::new(stacks),
            decode_errors: 0,
        })
    }

    /// Records received so far (events and inline stacks).
    pub fn records(&self) -> u64 {
        self.ring.records
    }

    /// Waits for records, then hands each whole event to `f`, with the
    /// table its stacks resolve in. Returns how many records were read.
    pub async fn read(&mut self, mut f: impl FnMut(Event, &StackTable)) -> io::Result<usize> {
        let Source { ring, assembler, stacks, decode_errors } = self;
        ring.read(|bytes| deliver(bytes, assembler, stacks, decode_errors, &mut f)).await
    }

    /// Hands over whatever is in the ring now, without waiting.
    pub fn drain(&mut self, mut f: impl FnMut(Event, &StackTable)) -> usize {
        let Source { ring, assembler, stacks, decode_errors } = self;
        ring.drain(|bytes| deliver(bytes, assembler, stacks, decode_errors, &mut f))
    }
}

fn deliver(
    bytes: &[u8],
    assembler: &mut Assembler,
    stacks: &mut StackTable,
    errors: &mut u64,
    f: &mut impl FnMut(Event, &StackTable),
) {
    match decode(bytes) {
        Ok(record) => {
            for event in assembler.push(record, stacks) {
                f(event, stacks);
            }
        }
        Err(e) => {
            *errors += 1;
            log_decode_error(&e, *errors);
        }
    }
}

fn log_decode_error(e: &DecodeError, count: u64) {
    // The first few are worth seeing; after that, the count is in the summary.
    if count <= 5 {
        log::warn!("undecodable event record: {e}");
    }
}
