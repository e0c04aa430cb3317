//! Joining what the kernel sends in pieces: a user stack whose stack-map
//! bucket was taken by another stack arrives inline, as a record of its own
//! just before the same thread's event (`fdtrace-common`'s
//! `EventKind::Stack`). The [`Assembler`] holds it until that event comes
//! and gives the event the stack's key in the [`StackTable`].
use std::{collections::HashMap, sync::Arc};

use aya::maps::{MapData, StackTraceMap};

use super::{Body, Event, RawStacks, Record, StackId};

/// Every stack events name: the kernel's stack map, and the stacks that
/// came inline (interned: equal frames, equal key).
#[derive(Default)]
pub struct StackTable {
    map: Option<StackTraceMap<MapData>>,
    inline: Vec<Arc<[u64]>>,
    inline_keys: HashMap<Arc<[u64]>, u32>,
}

impl StackTable {
    pub fn new(map: Option<StackTraceMap<MapData>>) -> StackTable {
        StackTable { map, ..StackTable::default() }
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
}

/// Joins inline stacks to their events.
#[derive(Default)]
pub struct Assembler {
    /// Inline stacks waiting for their event, by thread.
    pending: HashMap<u32, Vec<u64>>,
}

impl Assembler {
    /// The whole event a record completes, if it does (a stack alone
    /// waits for its event).
    pub fn push(&mut self, record: Record, stacks: &mut StackTable) -> Option<Event> {
        match record {
            Record::Stack { tid, frames } => {
                self.pending.insert(tid, frames);
                None
            }
            Record::Event { mut event, stack_follows } => {
                if stack_follows {
                    if let (Body::Open(open), Some(frames)) =
                        (&mut event.body, self.pending.remove(&event.tid))
                    {
                        open.stack.id = StackId::Inline(stacks.intern(frames));
                    }
                }
                Some(event)
            }
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
        assert!(a.push(Record::Stack { tid: 11, frames: vec![1, 2] }, &mut t).is_none());
        assert!(a.push(Record::Stack { tid: 12, frames: vec![7] }, &mut t).is_none());
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
        let (twelve, eleven) = (stack_of(&twelve.unwrap()), stack_of(&eleven.unwrap()));
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
            keys.push(stack_of(&e.unwrap()));
        }
        assert_eq!(keys[0], keys[1]);
        // An event whose inline stack never came keeps saying so.
        let e = a.push(
            Record::Event { event: open_event(11, StackId::InlineMissing), stack_follows: true },
            &mut t,
        );
        assert_eq!(stack_of(&e.unwrap()), StackId::InlineMissing);
        // Events with a stack-map id pass through untouched.
        let e = a.push(Record::Event { event: open_event(11, StackId::Id(4)), stack_follows: false }, &mut t);
        assert_eq!(stack_of(&e.unwrap()), StackId::Id(4));
    }
}
