//! Joining what the kernel sends in pieces: a user stack whose stack-map
//! bucket was taken by another stack arrives inline, as a record of its own
//! just before the same thread's event (`fdtrace-common`'s
//! `EventKind::Stack`). The [`Assembler`] holds it until that event comes
//! and gives the event the stack's key in the [`StackTable`].
use std::{collections::HashMap, sync::Arc};

use aya::maps::{MapData, StackTraceMap};

use fdtrace_common::PyStack;

use super::{Body, Event, PyStackId, RawStacks, Record, StackId};

/// The kernel's maps of stacks: the native stack map and the Python
/// stacks (`fdtrace-ebpf/src/python.rs`).
#[derive(Default)]
pub struct KernelStacks {
    pub native: Option<StackTraceMap<MapData>>,
    pub python: Option<aya::maps::HashMap<MapData, u64, PyStack>>,
}

/// Every stack events name: the kernel's stack maps, and the stacks that
/// came inline (interned: equal frames, equal key).
#[derive(Default)]
pub struct StackTable {
    map: Option<StackTraceMap<MapData>>,
    python: Option<aya::maps::HashMap<MapData, u64, PyStack>>,
    inline: Vec<Arc<[u64]>>,
    inline_keys: HashMap<Arc<[u64]>, u32>,
}

impl StackTable {
    pub fn new(maps: KernelStacks) -> StackTable {
        StackTable { map: maps.native, python: maps.python, ..StackTable::default() }
    }

    /// The key of an inline stack.
    pub fn intern(&mut self, frames: Vec<u64>) -> u32 {
        let frames: Arc<[u64]> = frames.into();
        if let Some(&key) = self.inline_keys.get(&frames) {
            return key;
        }
        self.inline.push(Arc::clone(&frames));
        let key = self.inline.len() as u32;
        self.inline_keys.insert(frames, key);
        key
    }
}

impl RawStacks for StackTable {
    fn frames(&self, id: StackId) -> Option<Arc<[u64]>> {
        match id {
            StackId::Id(id) => {
                let trace = self.map.as_ref()?.get(&id, 0).ok()?;
                Some(trace.frames().iter().map(|f| f.ip).collect())
            }
            StackId::Inline(key) => self.inline.get((key as usize).checked_sub(1)?).cloned(),
            StackId::InlineMissing | StackId::NotCaptured | StackId::Failed(_) => None,
        }
    }

    fn python(&self, id: PyStackId) -> Option<PyStack> {
        self.python.as_ref()?.get(&id.0.get(), 0).ok()
    }
}

/// Joins inline stacks to their events.
#[derive(Default)]
pub struct Assembler {
    /// Inline stacks waiting for their event, by thread.
    pending: HashMap<u32, Vec<u64>>,
}

impl Assembler {
    /// The whole events a record completes, if any (a stack alone waits
    /// for its event).
    pub fn push(&mut self, record: Record, stacks: &mut StackTable) -> Ready {
        match record {
            Record::Stack { tid, frames } => {
                self.pending.insert(tid, frames);
                Ready::Nothing
            }
            Record::Event { mut event, stack_follows } => {
                if stack_follows {
                    self.join(std::slice::from_mut(&mut event), stacks);
                }
                Ready::One(event)
            }
            Record::Events { mut events, stack_follows } => {
                if stack_follows {
                    self.join(&mut events, stacks);
                }
                Ready::Many(events)
            }
        }
    }

    /// Gives the events of one record the inline stack their thread sent.
    fn join(&mut self, events: &mut [Event], stacks: &mut StackTable) {
        let Some(tid) = events.first().map(|e| e.tid) else { return };
        let Some(frames) = self.pending.remove(&tid) else { return };
        let id = StackId::Inline(stacks.intern(frames));
        for event in events {
            if let Body::Open(open) = &mut event.body {
                open.stack.id = id;
            }
        }
    }
}

/// The whole events a record completed.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once, from the assembler to the caller: boxing every event would cost an allocation each"
)]
pub enum Ready {
    /// None yet (an inline stack waits for its event).
    Nothing,
    One(Event),
    /// One per fd a recvmsg received.
    Many(Vec<Event>),
}

impl IntoIterator for Ready {
    type Item = Event;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Event>, std::vec::IntoIter<Event>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Ready::Nothing => None.into_iter().chain(Vec::new()),
            Ready::One(e) => Some(e).into_iter().chain(Vec::new()),
            Ready::Many(v) => None.into_iter().chain(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Comm, Open, Syscall};

    fn open_event(tid: u32, id: StackId) -> Event {
        let mut open = Open::test(Syscall::Socket, 3, 0);
        open.stack.id = id;
        Event { ts_ns: 1, tgid: 10, tid, comm: Comm::default(), body: Body::Open(open) }
    }

    /// The one event a record completed.
    fn only(r: Ready) -> Event {
        let mut all: Vec<Event> = r.into_iter().collect();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn stack_of(e: &Event) -> StackId {
        match &e.body {
            Body::Open(o) => o.stack.id,
            _ => panic!("not an open"),
        }
    }

    #[test]
    fn an_inline_stack_joins_the_same_threads_next_event() {
        let (mut a, mut t) = (Assembler::default(), StackTable::default());
        // Given inline stacks from threads 11 and 12, interleaved
        assert!(matches!(a.push(Record::Stack { tid: 11, frames: vec![1, 2] }, &mut t), Ready::Nothing));
        assert!(matches!(a.push(Record::Stack { tid: 12, frames: vec![7] }, &mut t), Ready::Nothing));
        // When their events arrive, 12's first
        let twelve = a.push(
            Record::Event { event: open_event(12, StackId::InlineMissing), stack_follows: true },
            &mut t,
        );
        let eleven = a.push(
            Record::Event { event: open_event(11, StackId::InlineMissing), stack_follows: true },
            &mut t,
        );
        // Then each has its own thread's frames
        let (twelve, eleven) = (stack_of(&only(twelve)), stack_of(&only(eleven)));
        assert_eq!(t.frames(twelve).as_deref(), Some(&[7][..]));
        assert_eq!(t.frames(eleven).as_deref(), Some(&[1, 2][..]));
    }

    #[test]
    fn equal_inline_stacks_share_a_key_and_a_lost_one_stays_missing() {
        let (mut a, mut t) = (Assembler::default(), StackTable::default());
        let mut keys = vec![];
        for _ in 0..2 {
            a.push(Record::Stack { tid: 11, frames: vec![1, 2] }, &mut t);
            let e = a.push(
                Record::Event { event: open_event(11, StackId::InlineMissing), stack_follows: true },
                &mut t,
            );
            keys.push(stack_of(&only(e)));
        }
        assert_eq!(keys[0], keys[1]);
        // An event whose inline stack never came keeps saying so.
        let e = a.push(
            Record::Event { event: open_event(11, StackId::InlineMissing), stack_follows: true },
            &mut t,
        );
        assert_eq!(stack_of(&only(e)), StackId::InlineMissing);
        // Events with a stack-map id pass through untouched.
        let e = a.push(Record::Event { event: open_event(11, StackId::Id(4)), stack_follows: false }, &mut t);
        assert_eq!(stack_of(&only(e)), StackId::Id(4));
    }

    #[test]
    fn fds_received_in_one_call_share_its_inline_stack() {
        let (mut a, mut t) = (Assembler::default(), StackTable::default());
        // Given an inline stack, then a record of three received fds
        a.push(Record::Stack { tid: 11, frames: vec![5, 6] }, &mut t);
        let events: Vec<Event> = (0..3).map(|_| open_event(11, StackId::InlineMissing)).collect();
        let got: Vec<Event> =
            a.push(Record::Events { events, stack_follows: true }, &mut t).into_iter().collect();
        // Then all three have its frames, in one key
        assert_eq!(got.len(), 3);
        let ids: Vec<StackId> = got.iter().map(stack_of).collect();
        assert!(
            ids.iter().all(|id| *id == ids[0] && t.frames(*id).as_deref() == Some(&[5, 6][..])),
            "{ids:?}"
        );
    }
}
