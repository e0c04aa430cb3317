//! The executable mappings the kernel recorded for each traced process
//! ([`MapEvent`]s), by image: an exec starts a new one, a fork copies the
//! parent's. A stack is named from the mappings its process had when the
//! stack was captured, so a process that has exited (or exec'd another
//! program) since is named all the same.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::Maps;
use crate::events::MapEvent;

/// How long a process's mappings are kept after it exits: its last
/// events are named well before (they are at most a drain behind).
const KEEP_EXITED_NS: u64 = 30_000_000_000;

#[derive(Default)]
pub struct Recorded {
    procs: HashMap<u32, Proc>,
    /// Processes that exited, oldest first, for forgetting them.
    exited: VecDeque<(u64, u32)>,
    /// The latest record time applied: an earlier one came late (another
    /// CPU's ring).
    latest_ns: u64,
}

#[derive(Default)]
struct Proc {
    /// Oldest first; at most two (the current image and the one before).
    images: Vec<Image>,
}

struct Image {
    since_ns: u64,
    /// A fork's copy of its parent: (parent, when).
    forked_from: Option<(u32, u64)>,
    maps: Vec<Mapping>,
}

#[derive(Clone)]
struct Mapping {
    time_ns: u64,
    start: u64,
    end: u64,
    pgoff: u64,
    path: Arc<str>,
}

impl Recorded {
    /// Whether anything is recorded for `pid`.
    #[cfg(test)]
    pub fn knows(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn apply(&mut self, ev: &MapEvent) {
        let late = ev.time_ns() < self.latest_ns;
        self.latest_ns = self.latest_ns.max(ev.time_ns());
        match ev {
            MapEvent::Mmap { pid, time_ns, start, len, pgoff, path } => {
                // Files only: `//anon` (JIT), `[vdso]` name nothing we can read.
                if !path.starts_with('/') || path.starts_with("//") {
                    return;
                }
                let m = Mapping {
                    time_ns: *time_ns,
                    start: *start,
                    end: start.saturating_add(*len),
                    pgoff: *pgoff,
                    path: path.as_str().into(),
                };
                if late {
                    // A child forked after this mapping was made has it too.
                    for child in self.procs.values_mut() {
                        if let Some(img) = child.images.last_mut() {
                            if matches!(img.forked_from, Some((p, at)) if p == *pid && at > *time_ns) {
                                img.maps.push(m.clone());
                            }
                        }
                    }
                }
                self.image_at(*pid, *time_ns).maps.push(m);
            }
            MapEvent::Exec { pid, time_ns } => {
                let p = self.procs.entry(*pid).or_default();
                p.images.push(Image { since_ns: *time_ns, forked_from: None, maps: Vec::new() });
                p.images.sort_by_key(|i| i.since_ns);
                if p.images.len() > 2 {
                    p.images.remove(0);
                }
            }
            MapEvent::Fork { pid, parent, time_ns } => {
                let maps =
                    self.maps_of(*parent, *time_ns).into_iter().filter(|m| m.time_ns <= *time_ns).collect();
                let image = Image { since_ns: *time_ns, forked_from: Some((*parent, *time_ns)), maps };
                self.procs.insert(*pid, Proc { images: vec![image] });
            }
            MapEvent::Exit { pid, tid, time_ns } if pid == tid => {
                self.exited.push_back((*time_ns, *pid));
                while let Some(&(at, gone)) = self.exited.front() {
                    if at.saturating_add(KEEP_EXITED_NS) > self.latest_ns {
                        break;
                    }
                    self.exited.pop_front();
                    self.procs.remove(&gone);
                }
            }
            MapEvent::Exit { .. } | MapEvent::Lost { .. } => {}
        }
    }

    /// The mappings of a live process read from `/proc` (at attach: what
    /// it mapped before the records start).
    pub fn seed(&mut self, pid: u32, maps: &Maps, time_ns: u64) {
        let p = self.procs.entry(pid).or_default();
        if p.images.is_empty() {
            p.images.push(Image { since_ns: 0, forked_from: None, maps: Vec::new() });
        }
        if let Some(img) = p.images.last_mut() {
            img.maps.extend(maps.0.iter().map(|(start, end, pgoff, path)| Mapping {
                time_ns,
                start: *start,
                end: *end,
                pgoff: *pgoff,
                path: path.as_str().into(),
            }));
        }
    }

    /// Whether `pid` exec'd after `at_ns` (a stack from before is of the
    /// old image, which `/proc` no longer shows).
    pub fn exec_after(&self, pid: u32, at_ns: u64) -> bool {
        self.procs
            .get(&pid)
            .is_some_and(|p| p.images.iter().any(|i| i.forked_from.is_none() && i.since_ns > at_ns))
    }

    /// The mappings `pid` had at `at_ns`, the latest first (a mapping made
    /// over an older one replaces it); those recorded after `at_ns` come
    /// last, for an address nothing earlier covers.
    pub fn maps_at(&self, pid: u32, at_ns: u64) -> Option<Maps> {
        let mut maps = self.maps_of(pid, at_ns);
        if maps.is_empty() {
            return None;
        }
        maps.sort_by_key(|m| (m.time_ns > at_ns, std::cmp::Reverse(m.time_ns)));
        Some(Maps(maps.into_iter().map(|m| (m.start, m.end, m.pgoff, m.path.to_string())).collect()))
    }

    fn maps_of(&self, pid: u32, at_ns: u64) -> Vec<Mapping> {
        let Some(p) = self.procs.get(&pid) else { return Vec::new() };
        let image = p.images.iter().rev().find(|i| i.since_ns <= at_ns).or(p.images.first());
        image.map(|i| i.maps.clone()).unwrap_or_default()
    }

    /// The image of `pid` current at `at_ns`, made if there is none.
    fn image_at(&mut self, pid: u32, at_ns: u64) -> &mut Image {
        let p = self.procs.entry(pid).or_default();
        if p.images.is_empty() {
            p.images.push(Image { since_ns: 0, forked_from: None, maps: Vec::new() });
        }
        let i = p.images.iter().rposition(|i| i.since_ns <= at_ns).unwrap_or(0);
        &mut p.images[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mmap(pid: u32, time_ns: u64, start: u64, path: &str) -> MapEvent {
        MapEvent::Mmap { pid, time_ns, start, len: 0x1000, pgoff: 0x2000, path: path.into() }
    }

    fn file_at(r: &Recorded, pid: u32, at: u64, addr: u64) -> Option<(String, u64)> {
        let maps = r.maps_at(pid, at)?;
        maps.file_offset(addr).map(|(p, off)| (p.to_string(), off))
    }

    #[test]
    fn an_exec_starts_a_new_image_and_old_stacks_keep_the_old_one() {
        let mut r = Recorded::default();
        r.apply(&MapEvent::Exec { pid: 5, time_ns: 10 });
        r.apply(&mmap(5, 11, 0x1000, "/bin/old"));
        r.apply(&MapEvent::Exec { pid: 5, time_ns: 20 });
        r.apply(&mmap(5, 21, 0x1000, "/bin/new"));
        r.apply(&mmap(5, 22, 0x9000, "//anon"));
        assert_eq!(file_at(&r, 5, 15, 0x1010), Some(("/bin/old".into(), 0x2010)));
        assert_eq!(file_at(&r, 5, 25, 0x1010), Some(("/bin/new".into(), 0x2010)));
        assert_eq!(file_at(&r, 5, 25, 0x9000), None, "anonymous memory names no file");
        assert!(r.exec_after(5, 15) && !r.exec_after(5, 25));
    }

    #[test]
    fn a_later_mapping_over_an_address_replaces_the_earlier() {
        let mut r = Recorded::default();
        r.apply(&mmap(5, 1, 0x1000, "/lib/a.so"));
        r.apply(&mmap(5, 3, 0x1000, "/lib/b.so"));
        assert_eq!(file_at(&r, 5, 2, 0x1000).map(|f| f.0), Some("/lib/a.so".into()));
        assert_eq!(file_at(&r, 5, 4, 0x1000).map(|f| f.0), Some("/lib/b.so".into()));
    }

    #[test]
    fn a_fork_has_its_parents_mappings_even_when_one_comes_late() {
        let mut r = Recorded::default();
        r.apply(&mmap(5, 1, 0x1000, "/bin/app"));
        r.apply(&MapEvent::Fork { pid: 6, parent: 5, time_ns: 10 });
        // From another CPU's ring, read after the fork.
        r.apply(&mmap(5, 5, 0x4000, "/lib/libc.so.6"));
        r.apply(&mmap(5, 12, 0x8000, "/lib/after-fork.so"));
        assert_eq!(file_at(&r, 6, 11, 0x1000).map(|f| f.0), Some("/bin/app".into()));
        assert_eq!(file_at(&r, 6, 11, 0x4000).map(|f| f.0), Some("/lib/libc.so.6".into()));
        assert_eq!(file_at(&r, 6, 11, 0x8000), None, "the parent mapped it after the fork");
        assert!(!r.exec_after(6, 0), "a fork is no exec");
    }

    #[test]
    fn exited_processes_are_forgotten_after_a_while() {
        let mut r = Recorded::default();
        r.apply(&mmap(5, 1, 0x1000, "/bin/app"));
        r.apply(&MapEvent::Exit { pid: 5, tid: 6, time_ns: 2 });
        r.apply(&MapEvent::Exit { pid: 5, tid: 5, time_ns: 3 });
        assert!(r.knows(5), "kept for the events still to come");
        r.apply(&mmap(7, 3 + KEEP_EXITED_NS, 0x1000, "/bin/other"));
        r.apply(&MapEvent::Exit { pid: 7, tid: 7, time_ns: 4 + KEEP_EXITED_NS });
        assert!(!r.knows(5) && r.knows(7));
    }
}
