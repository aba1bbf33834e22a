//! The clients a rate limit remembers: one value per key, at most `capacity` of
//! them, the least recently seen client making room for a newcomer (nginx's
//! `limit_req` zone drops its oldest entries the same way). Constant work per
//! lookup: a hash map finds a client's slot, and the slots are linked in order of
//! use, so the least recent one is at hand without a sweep. The slots and the map
//! grow on demand up to `capacity` and never shrink, so a table's memory is bounded
//! and a full one allocates nothing more.

use std::collections::HashMap;
use std::hash::Hash;

/// The end of the list of slots.
const NIL: u32 = u32::MAX;

pub(crate) struct Clients<K, V> {
    /// Where each key's slot is.
    index: HashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    /// The most recently seen slot, and the least.
    newest: u32,
    oldest: u32,
    capacity: usize,
}

struct Slot<K, V> {
    key: K,
    value: V,
    /// Toward the newest and toward the oldest.
    newer: u32,
    older: u32,
}

impl<K: Hash + Eq + Copy, V> Clients<K, V> {
    /// A table for at most `capacity` clients (at least one; below `u32::MAX`).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity >= 1 && capacity < NIL as usize);
        Clients {
            index: HashMap::new(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// `key`'s value, now the most recently seen; a newcomer gets `fresh()`, in the
    /// place of the least recently seen client when the table is full.
    pub(crate) fn get_or_insert_with(&mut self, key: K, fresh: impl FnOnce() -> V) -> &mut V {
        let at = match self.index.get(&key) {
            Some(&at) => {
                self.unlink(at);
                at
            }
            None if self.slots.len() < self.capacity => {
                let at = self.slots.len() as u32;
                self.slots.push(Slot {
                    key,
                    value: fresh(),
                    newer: NIL,
                    older: NIL,
                });
                self.index.insert(key, at);
                at
            }
            None => {
                let at = self.oldest;
                self.unlink(at);
                let slot = &mut self.slots[at as usize];
                self.index.remove(&slot.key);
                slot.key = key;
                slot.value = fresh();
                self.index.insert(key, at);
                at
            }
        };
        self.push_newest(at);
        &mut self.slots[at as usize].value
    }

    /// Takes slot `at` out of the order of use.
    fn unlink(&mut self, at: u32) {
        let (newer, older) = {
            let s = &self.slots[at as usize];
            (s.newer, s.older)
        };
        match newer {
            NIL => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
    }

    /// Puts slot `at` (unlinked) first in the order of use.
    fn push_newest(&mut self, at: u32) {
        let previous = self.newest;
        {
            let s = &mut self.slots[at as usize];
            s.newer = NIL;
            s.older = previous;
        }
        match previous {
            NIL => self.oldest = at,
            p => self.slots[p as usize].newer = at,
        }
        self.newest = at;
    }

    /// The keys from the most recently seen to the least (for tests).
    #[cfg(test)]
    fn keys_newest_first(&self) -> Vec<K> {
        let mut out = Vec::with_capacity(self.slots.len());
        let mut at = self.newest;
        while at != NIL {
            out.push(self.slots[at as usize].key);
            at = self.slots[at as usize].older;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_client_makes_room() {
        let mut t: Clients<u32, &str> = Clients::new(3);
        *t.get_or_insert_with(1, || "a") = "a";
        t.get_or_insert_with(2, || "b");
        t.get_or_insert_with(3, || "c");
        assert_eq!(t.keys_newest_first(), [3, 2, 1]);
        // Seen again: first in line, its value kept.
        assert_eq!(*t.get_or_insert_with(1, || "new"), "a");
        assert_eq!(t.keys_newest_first(), [1, 3, 2]);
        // Full: 2, the least recently seen, goes.
        assert_eq!(*t.get_or_insert_with(4, || "d"), "d");
        assert_eq!(t.keys_newest_first(), [4, 1, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(*t.get_or_insert_with(2, || "b again"), "b again");
        assert_eq!(t.keys_newest_first(), [2, 4, 1]);
        // The middle one, the newest one, the only one.
        t.get_or_insert_with(4, || "x");
        t.get_or_insert_with(4, || "x");
        assert_eq!(t.keys_newest_first(), [4, 2, 1]);
        let mut one: Clients<u32, u32> = Clients::new(1);
        one.get_or_insert_with(1, || 1);
        assert_eq!(*one.get_or_insert_with(2, || 2), 2);
        assert_eq!(one.keys_newest_first(), [2]);
        assert_eq!(one.index.len(), 1);
    }

    #[test]
    fn the_index_and_the_order_agree_through_many_evictions() {
        let mut t: Clients<u32, u32> = Clients::new(100);
        for i in 0..10_000u32 {
            // A few regulars seen often, among a stream of newcomers.
            let key = if i % 3 == 0 { i % 7 } else { 1000 + i };
            assert_eq!(*t.get_or_insert_with(key, || key), key);
            assert!(t.len() <= 100);
        }
        let order = t.keys_newest_first();
        assert_eq!(order.len(), 100);
        assert_eq!(t.index.len(), 100);
        for (&k, &at) in &t.index {
            assert_eq!(t.slots[at as usize].key, k);
        }
        // The regulars were seen within the last 100 lookups: still there.
        for k in 0..7 {
            assert!(t.index.contains_key(&k), "{k}");
        }
    }
}
