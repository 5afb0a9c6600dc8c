//! The op slab and its two intrusive lists.
//!
//! Outstanding ops live in a slab of generation-tagged slots: an [`OpId`]
//! is `generation << 32 | index`, so a stale id never finds a newer op in
//! the same slot, and a slot whose generation would wrap is retired rather
//! than reused. The buffer and the in-flight list are FIFOs threaded
//! through the slots ([`Queue`] names which).

use alloc::vec::Vec;

use super::ConnId;
use crate::op::OpId;
use crate::time::Instant;

pub(super) const NIL: u32 = u32::MAX;

/// Where an outstanding op is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Buffered,
    InFlight(ConnId),
}

/// One of the two lists an outstanding op can be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Queue {
    /// Waiting for a connection.
    Buffer,
    /// Dispatched, waiting for its answer.
    InFlight,
}

#[derive(Debug)]
pub(super) struct Op<P> {
    pub(super) id: OpId,
    /// Submission order (ops re-queued go back in this order).
    pub(super) seq: u64,
    pub(super) payload: P,
    pub(super) retryable: bool,
    pub(super) max_attempts: u32,
    pub(super) deadline: Option<Instant>,
    /// Dispatches, wrong-server answers included.
    pub(super) attempts: u32,
    /// Dispatches that may have run (refusals — wrong server, pushback —
    /// excluded).
    pub(super) executions: u32,
    pub(super) place: Place,
    /// When it entered its current list (buffer wait / response timeouts).
    pub(super) since: Instant,
    /// How long each dispatch may wait for its answer (command timeout).
    pub(super) command_timeout: Option<core::time::Duration>,
    prev: u32,
    next: u32,
}

impl<P> Op<P> {
    /// While in flight with a command timeout: when it gives up on this
    /// dispatch (the instant its `command_waits` entry is live for).
    pub(super) fn command_due(&self) -> Option<Instant> {
        match self.place {
            Place::InFlight(_) => self.command_timeout.map(|t| self.since.saturating_add(t)),
            Place::Buffered => None,
        }
    }

    /// A new op, not retryable, allowed one attempt, neither allocated (its
    /// id is set by [`Ops::alloc`]) nor linked.
    pub(super) fn new(payload: P, deadline: Option<Instant>, now: Instant) -> Self {
        Op {
            id: OpId(0),
            seq: 0,
            payload,
            retryable: false,
            max_attempts: 1,
            deadline,
            attempts: 0,
            executions: 0,
            place: Place::Buffered,
            since: now,
            command_timeout: None,
            prev: NIL,
            next: NIL,
        }
    }
}

#[derive(Debug)]
struct Slot<P> {
    generation: u32,
    op: Option<Op<P>>,
}

/// An intrusive FIFO threaded through the slab.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The outstanding ops: the slab and the buffer and in-flight lists.
#[derive(Debug)]
pub(super) struct Ops<P> {
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    live: usize,
    /// Live ops that have a deadline.
    with_deadline: usize,
    buffer: List,
    inflight: List,
}

impl<P> Ops<P> {
    pub(super) fn new() -> Self {
        Ops {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            with_deadline: 0,
            buffer: List::EMPTY,
            inflight: List::EMPTY,
        }
    }

    /// Ops allocated and not yet released.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Live ops that have a deadline.
    pub(super) fn with_deadline(&self) -> usize {
        self.with_deadline
    }

    /// How many ops are on `queue`.
    pub(super) fn len(&self, queue: Queue) -> usize {
        self.list(queue).len
    }

    /// The index of the first op on `queue`, if any.
    pub(super) fn first(&self, queue: Queue) -> Option<u32> {
        let head = self.list(queue).head;
        (head != NIL).then_some(head)
    }

    /// The first op on `queue`, if any.
    pub(super) fn head(&self, queue: Queue) -> Option<&Op<P>> {
        self.first(queue).map(|idx| self.at(idx))
    }

    /// The live op at `idx`.
    pub(super) fn at(&self, idx: u32) -> &Op<P> {
        self.slots[idx as usize].op.as_ref().expect("live")
    }

    /// The live op at `idx`, mutably.
    pub(super) fn at_mut(&mut self, idx: u32) -> &mut Op<P> {
        self.slots[idx as usize].op.as_mut().expect("live")
    }

    pub(super) fn alloc(&mut self, mut op: Op<P>) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 outstanding ops")
            }
        };
        let slot = &mut self.slots[idx as usize];
        // Never wraps: a slot at the last generation is retired (release).
        slot.generation += 1;
        op.id = OpId(u64::from(slot.generation) << 32 | u64::from(idx));
        if op.deadline.is_some() {
            self.with_deadline += 1;
        }
        slot.op = Some(op);
        self.live += 1;
        idx
    }

    pub(super) fn release(&mut self, idx: u32) -> Op<P> {
        let o = self.slots[idx as usize]
            .op
            .take()
            .expect("release of a live op");
        // Ids are never reused: a slot whose generation would wrap (2^32
        // ops through it) is retired, costing one slot per 2^32 ops.
        if self.slots[idx as usize].generation < u32::MAX {
            self.free.push(idx);
        }
        self.live -= 1;
        if o.deadline.is_some() {
            self.with_deadline -= 1;
        }
        o
    }

    pub(super) fn index(&self, id: OpId) -> Option<u32> {
        self.get(id).map(|_| (id.0 & 0xFFFF_FFFF) as u32)
    }

    /// The live op `id`, if it is still outstanding.
    pub(super) fn get(&self, id: OpId) -> Option<&Op<P>> {
        let idx = (id.0 & 0xFFFF_FFFF) as usize;
        let generation = (id.0 >> 32) as u32;
        self.slots
            .get(idx)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.op.as_ref())
            .filter(|o| o.id == id)
    }

    fn list(&self, queue: Queue) -> &List {
        match queue {
            Queue::Buffer => &self.buffer,
            Queue::InFlight => &self.inflight,
        }
    }

    fn list_mut(&mut self, queue: Queue) -> &mut List {
        match queue {
            Queue::Buffer => &mut self.buffer,
            Queue::InFlight => &mut self.inflight,
        }
    }

    /// Appends an unlinked op to `queue`; on the buffer, it is marked
    /// buffered since `now`.
    pub(super) fn link_back(&mut self, idx: u32, queue: Queue, now: Instant) {
        let tail = self.list_mut(queue).tail;
        {
            let o = self.at_mut(idx);
            o.prev = tail;
            o.next = NIL;
            if queue == Queue::Buffer {
                o.place = Place::Buffered;
                o.since = now;
            }
        }
        if tail != NIL {
            self.at_mut(tail).next = idx;
        }
        let list = self.list_mut(queue);
        if list.head == NIL {
            list.head = idx;
        }
        list.tail = idx;
        list.len += 1;
    }

    /// Puts an unlinked op into the buffer in submission order (ops
    /// re-queued after a refusal or a loss go back ahead of later ones),
    /// marked buffered since `now`. The walk starts at `hint` (the op last
    /// put back this way, when still buffered and earlier), so putting back
    /// a run of ops in order costs O(1) each.
    pub(super) fn link_in_order(&mut self, idx: u32, hint: Option<OpId>, now: Instant) {
        let seq = self.at(idx).seq;
        let start = hint
            .and_then(|h| self.index(h))
            .filter(|&h| self.at(h).place == Place::Buffered && self.at(h).seq < seq);
        // `after`: the last buffered op that comes before this one.
        let mut after = match start {
            Some(h) => h,
            None => match self.first(Queue::Buffer) {
                Some(head) if self.at(head).seq < seq => head,
                _ => NIL,
            },
        };
        if after != NIL {
            loop {
                let next = self.at(after).next;
                if next == NIL || self.at(next).seq > seq {
                    break;
                }
                after = next;
            }
        }
        let next = if after == NIL {
            self.buffer.head
        } else {
            self.at(after).next
        };
        {
            let o = self.at_mut(idx);
            o.prev = after;
            o.next = next;
            o.place = Place::Buffered;
            o.since = now;
        }
        if after == NIL {
            self.buffer.head = idx;
        } else {
            self.at_mut(after).next = idx;
        }
        if next == NIL {
            self.buffer.tail = idx;
        } else {
            self.at_mut(next).prev = idx;
        }
        self.buffer.len += 1;
    }

    /// Removes an op from whichever list holds it.
    pub(super) fn unlink(&mut self, idx: u32) {
        let (prev, next, queue) = {
            let o = self.at_mut(idx);
            let queue = if o.place == Place::Buffered {
                Queue::Buffer
            } else {
                Queue::InFlight
            };
            let r = (o.prev, o.next, queue);
            o.prev = NIL;
            o.next = NIL;
            r
        };
        if prev != NIL {
            self.at_mut(prev).next = next;
        }
        if next != NIL {
            self.at_mut(next).prev = prev;
        }
        let list = self.list_mut(queue);
        if list.head == idx {
            list.head = next;
        }
        if list.tail == idx {
            list.tail = prev;
        }
        list.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Instant, Machine, OpOptions};

    #[test]
    fn op_ids_are_never_reused_even_after_2_pow_32_ops_through_a_slot() {
        let mut m: Machine<u32> = Machine::new(Config::mongodb_legacy(), 1, Instant::ZERO);
        let first = m.submit(Instant::ZERO, 1, OpOptions::new());
        m.cancel(Instant::ZERO, first);
        // Fast-forward slot 0 to its last generation.
        m.ops.slots[0].generation = u32::MAX - 1;
        let last = m.submit(Instant::ZERO, 2, OpOptions::new());
        assert_eq!(last.get(), u64::from(u32::MAX) << 32);
        m.cancel(Instant::ZERO, last);
        // Slot 0 is retired: the next op gets a fresh slot, not generation 0.
        let next = m.submit(Instant::ZERO, 3, OpOptions::new());
        assert_eq!(next.get(), 1 << 32 | 1);
        assert!(m.payload(last).is_none() && m.payload(next) == Some(&3));
    }
}
