//! One fd table's open fds, by number.
//!
//! The kernel hands out the lowest free number, so a table's numbers are
//! dense small integers: they index a flat vector of boxed entries, where
//! a free slot costs 8 bytes. A B-tree of 264-byte entries cost about 485
//! bytes per fd (its nodes are half full after ascending inserts); this
//! costs about 280. Numbers from [`FLAT_LIMIT`] on (a `dup2` to a high
//! number, a process allowed more than 65,536 fds) go to a B-tree, so that
//! one such fd does not size the vector.
use std::{collections::BTreeMap, ops::RangeInclusive};

use super::FdEntry;

/// Numbers below this are slots of the flat vector (at most 512 KiB of
/// slots per table).
const FLAT_LIMIT: i32 = 1 << 16;

#[derive(Clone, Debug, Default)]
pub struct FdMap {
    flat: Vec<Option<Box<FdEntry>>>,
    high: BTreeMap<i32, FdEntry>,
}

fn slot(fd: i32) -> Option<usize> {
    (0..FLAT_LIMIT).contains(&fd).then_some(fd as usize)
}

impl FdMap {
    pub fn get(&self, fd: &i32) -> Option<&FdEntry> {
        match slot(*fd) {
            Some(i) => self.flat.get(i)?.as_deref(),
            None => self.high.get(fd),
        }
    }

    pub fn get_mut(&mut self, fd: &i32) -> Option<&mut FdEntry> {
        match slot(*fd) {
            Some(i) => self.flat.get_mut(i)?.as_deref_mut(),
            None => self.high.get_mut(fd),
        }
    }

    pub fn contains_key(&self, fd: &i32) -> bool {
        self.get(fd).is_some()
    }

    /// Puts `entry` under `fd`; returns what was there.
    pub fn insert(&mut self, fd: i32, entry: FdEntry) -> Option<FdEntry> {
        match slot(fd) {
            Some(i) => {
                if i >= self.flat.len() {
                    self.flat.resize_with(i + 1, || None);
                }
                self.flat[i].replace(Box::new(entry)).map(|b| *b)
            }
            None => self.high.insert(fd, entry),
        }
    }

    pub fn remove(&mut self, fd: &i32) -> Option<FdEntry> {
        match slot(*fd) {
            Some(i) => self.flat.get_mut(i)?.take().map(|b| *b),
            None => self.high.remove(fd),
        }
    }

    /// The entries, by number.
    pub fn values(&self) -> impl Iterator<Item = &FdEntry> {
        let (neg, pos) = self.split_high();
        neg.chain(self.flat.iter().filter_map(|e| e.as_deref())).chain(pos)
    }

    /// The numbers held, ascending.
    pub fn keys(&self) -> impl Iterator<Item = i32> + '_ {
        self.values().map(|e| e.fd)
    }

    /// The entries with numbers in `range`, by number.
    pub fn range(&self, range: RangeInclusive<i32>) -> impl Iterator<Item = &FdEntry> {
        let flat = self.flat_span(&range);
        let (neg, pos): (Vec<_>, Vec<_>) = self.high.range(range).map(|(_, e)| e).partition(|e| e.fd < 0);
        neg.into_iter().chain(self.flat[flat].iter().filter_map(|e| e.as_deref())).chain(pos)
    }

    /// [`FdMap::range`], to change the entries in place.
    pub fn range_mut(&mut self, range: RangeInclusive<i32>) -> impl Iterator<Item = &mut FdEntry> {
        let flat = self.flat_span(&range);
        let (neg, pos): (Vec<_>, Vec<_>) = self.high.range_mut(range).map(|(_, e)| e).partition(|e| e.fd < 0);
        neg.into_iter().chain(self.flat[flat].iter_mut().filter_map(|e| e.as_deref_mut())).chain(pos)
    }

    /// The slots of the flat vector that `range` covers.
    fn flat_span(&self, range: &RangeInclusive<i32>) -> std::ops::Range<usize> {
        let len = self.flat.len() as i64;
        let start = i64::from(*range.start()).clamp(0, len);
        let end = (i64::from(*range.end()) + 1).clamp(start, len);
        start as usize..end as usize
    }

    /// The B-tree's negative numbers (never handed out by a kernel, but a
    /// key all the same) and its high ones.
    fn split_high(&self) -> (impl Iterator<Item = &FdEntry>, impl Iterator<Item = &FdEntry>) {
        (self.high.range(..0).map(|(_, e)| e), self.high.range(FLAT_LIMIT..).map(|(_, e)| e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{FdDesc, Origin};

    fn entry(fd: i32) -> FdEntry {
        FdEntry {
            serial: fd as u64,
            fd,
            kind: crate::events::FdKind::Socket,
            cloexec: false,
            opened_ns: 0,
            origin: Origin::PreExisting,
            tid: 0,
            stack: None,
            desc: FdDesc::default(),
            adopted: false,
        }
    }

    #[test]
    fn numbers_anywhere_keep_their_order() {
        let mut m = FdMap::default();
        let fds = [5, 0, FLAT_LIMIT + 7, 3, -4, i32::MAX, FLAT_LIMIT - 1, FLAT_LIMIT];
        for fd in fds {
            assert_eq!(m.insert(fd, entry(fd)), None);
        }
        let mut sorted = fds.to_vec();
        sorted.sort_unstable();
        assert_eq!(m.keys().collect::<Vec<_>>(), sorted);
        assert_eq!(m.flat.len(), FLAT_LIMIT as usize, "the flat part ends at the limit");
        let mut e = entry(3);
        e.serial = 99;
        assert_eq!(m.insert(3, e).map(|old| old.serial), Some(3), "a replace returns the old entry");
        assert_eq!(m.get(&3).map(|e| e.serial), Some(99));
        assert_eq!(m.remove(&i32::MAX).map(|e| e.fd), Some(i32::MAX));
        assert_eq!(m.remove(&4), None);
        assert!(!m.contains_key(&i32::MAX) && m.contains_key(&-4) && m.contains_key(&0));
        let span = |m: &FdMap, lo, hi| m.range(lo..=hi).map(|e| e.fd).collect::<Vec<_>>();
        assert_eq!(span(&m, 1, FLAT_LIMIT), [3, 5, FLAT_LIMIT - 1, FLAT_LIMIT]);
        assert_eq!(span(&m, i32::MIN, 0), [-4, 0]);
        assert_eq!(span(&m, FLAT_LIMIT + 1, i32::MAX), [FLAT_LIMIT + 7]);
        assert_eq!(span(&m, 6, 6), Vec::<i32>::new());
        for e in m.range_mut(0..=FLAT_LIMIT + 7) {
            e.cloexec = true;
        }
        let marked: Vec<i32> = m.values().filter(|e| e.cloexec).map(|e| e.fd).collect();
        assert_eq!(marked, [0, 3, 5, FLAT_LIMIT - 1, FLAT_LIMIT, FLAT_LIMIT + 7]);
    }

    #[test]
    fn a_slot_costs_a_pointer_and_an_entry_stays_small() {
        assert_eq!(size_of::<Option<Box<FdEntry>>>(), 8);
        // 264 bytes before the socket addresses and the Go origin were
        // boxed: the ledger holds one per open fd.
        assert!(size_of::<FdEntry>() <= 160, "FdEntry is {} bytes", size_of::<FdEntry>());
    }
}
