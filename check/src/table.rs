//! The checker's table of ops, indexed like the machine's slab.
//!
//! The machine's op ids are `generation << 32 | slot`, with slots reused
//! and generations growing (a slot whose generation would wrap is retired:
//! ids are never reused). Indexing by slot makes every lookup O(1) and
//! keeps memory proportional to the most ops the machine ever had
//! outstanding at once. The machine's slab grows one slot at a time and
//! the checker sees every submission, so a real id's slot is at most the
//! table's length; an id beyond that (a made-up one) goes to a small
//! ordered map instead, so wild ids cannot make the table grow.

use std::collections::BTreeMap;

use redial_core::OpId;

/// One slab slot: the op open in it (with its generation) and the newest
/// generation that finished in it.
#[derive(Clone, Debug)]
struct Slot<T> {
    open: Option<(u32, T)>,
    finished: Option<u32>,
}

/// Open ops by id, and which ids already finished.
#[derive(Clone, Debug)]
pub(crate) struct OpTable<T> {
    slots: Vec<Slot<T>>,
    /// Ids with a wild slot number: open ops, and finished ids.
    wild_open: BTreeMap<OpId, T>,
    wild_finished: BTreeMap<OpId, ()>,
    len: usize,
}

fn split(id: OpId) -> (usize, u32) {
    ((id.get() & 0xFFFF_FFFF) as usize, (id.get() >> 32) as u32)
}

impl<T> OpTable<T> {
    pub(crate) fn new() -> Self {
        OpTable {
            slots: Vec::new(),
            wild_open: BTreeMap::new(),
            wild_finished: BTreeMap::new(),
            len: 0,
        }
    }

    /// Open ops.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_wild(&self, slot: usize) -> bool {
        slot > self.slots.len()
    }

    // A wild id stays in the wild maps even once the table has grown
    // past its slot: every lookup falls back to them when they hold
    // anything (they are empty whenever a real machine is watched).

    pub(crate) fn get(&self, id: OpId) -> Option<&T> {
        let (slot, generation) = split(id);
        match self.slots.get(slot).and_then(|s| s.open.as_ref()) {
            Some((g, t)) if *g == generation => Some(t),
            _ if self.wild_open.is_empty() => None,
            _ => self.wild_open.get(&id),
        }
    }

    pub(crate) fn get_mut(&mut self, id: OpId) -> Option<&mut T> {
        let (slot, generation) = split(id);
        let in_slots = matches!(
            self.slots.get(slot).and_then(|s| s.open.as_ref()),
            Some((g, _)) if *g == generation
        );
        if in_slots {
            return self.slots[slot].open.as_mut().map(|(_, t)| t);
        }
        self.wild_open.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: OpId) -> bool {
        self.get(id).is_some()
    }

    /// Whether `id` already had its outcome (an id at or below the newest
    /// finished generation of its slot).
    pub(crate) fn is_finished(&self, id: OpId) -> bool {
        let (slot, generation) = split(id);
        self.slots
            .get(slot)
            .and_then(|s| s.finished)
            .is_some_and(|g| generation <= g)
            || (!self.wild_finished.is_empty() && self.wild_finished.contains_key(&id))
    }

    /// Opens `id`. Returns `false` (and keeps the table) when its slot
    /// already holds an open op.
    pub(crate) fn insert(&mut self, id: OpId, t: T) -> bool {
        let (slot, generation) = split(id);
        if self.is_wild(slot) || self.wild_open.contains_key(&id) {
            if self.wild_open.contains_key(&id) {
                return false;
            }
            self.wild_open.insert(id, t);
            self.len += 1;
            return true;
        }
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || Slot {
                open: None,
                finished: None,
            });
        }
        let s = &mut self.slots[slot];
        if s.open.is_some() {
            return false;
        }
        s.open = Some((generation, t));
        self.len += 1;
        true
    }

    /// Closes `id` (it finished) and hands back what was kept for it.
    pub(crate) fn remove(&mut self, id: OpId) -> Option<T> {
        let (slot, generation) = split(id);
        if let Some(s) = self.slots.get_mut(slot) {
            match s.open.take() {
                Some((g, t)) if g == generation => {
                    s.finished = Some(s.finished.map_or(g, |f| f.max(g)));
                    self.len -= 1;
                    return Some(t);
                }
                other => s.open = other,
            }
        }
        let t = self.wild_open.remove(&id)?;
        self.wild_finished.insert(id, ());
        self.len -= 1;
        Some(t)
    }

    /// The ids of every open op (slot order, then the wild ones).
    pub(crate) fn ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.open
                    .as_ref()
                    .map(|(g, _)| OpId::from_raw((u64::from(*g) << 32) | i as u64))
            })
            .chain(self.wild_open.keys().copied())
    }
}
