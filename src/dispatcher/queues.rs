//! The requests waiting for a worker: one FIFO per front thread (`Queues`), each
//! waiter holding the channel its lease will come through. Which FIFO a worker
//! serves next is decided here (`next_for`: its own thread's first, unless another
//! thread's head waited `CROSS_AFTER` longer); how much room a worker has, in
//! `dispatcher`. A worker's pinned requests wait in its own FIFO, made of the same
//! waiters (`Waiter::join`).

use super::Lease;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(super) struct Waiter {
    pub(super) tx: oneshot::Sender<Lease>,
    /// May be sent ahead (see `dispatcher`).
    pub(super) ahead: bool,
    /// When it started to wait; a revoked request counts as older than any.
    pub(super) since: Option<Instant>,
    /// The front thread it came from.
    pub(super) shard: usize,
}

impl Waiter {
    /// Joins `fifo` in age order: a revoked request first, the others at the back
    /// (`since` grows with every push, all under the dispatcher's lock).
    pub(super) fn join(self, fifo: &mut VecDeque<Waiter>) {
        match self.since {
            None => fifo.push_front(self),
            Some(_) => fifo.push_back(self),
        }
    }
}

/// How much longer another front thread's oldest waiter must have waited than a
/// worker's own thread's before the worker serves it first.
pub(super) const CROSS_AFTER: Duration = Duration::from_millis(2);

/// Requests waiting for a worker: one FIFO per front thread.
#[derive(Default)]
pub(super) struct Queues {
    fifos: Vec<VecDeque<Waiter>>,
    pub(super) len: usize,
}

impl Queues {
    pub(super) fn push(&mut self, shard: usize, waiter: Waiter) {
        if self.fifos.len() <= shard {
            self.fifos.resize_with(shard + 1, VecDeque::new);
        }
        waiter.join(&mut self.fifos[shard]);
        self.len += 1;
    }

    /// A pinned waiter whose worker left: into its front thread's FIFO at the place
    /// its age gives it.
    pub(super) fn requeue(&mut self, waiter: Waiter) {
        let shard = waiter.shard;
        if self.fifos.len() <= shard {
            self.fifos.resize_with(shard + 1, VecDeque::new);
        }
        let fifo = &mut self.fifos[shard];
        let at = fifo.partition_point(|w| age(w.since) <= age(waiter.since));
        fifo.insert(at, waiter);
        self.len += 1;
    }

    /// The FIFO a worker on `shard` serves next: see the module doc. `orphaned`
    /// tells a front thread that no serving worker lives on, whose waiters anyone
    /// serves at once. Waiters that gave up are dropped from the heads first.
    pub(super) fn next_for(
        &mut self,
        shard: usize,
        orphaned: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        for fifo in &mut self.fifos {
            while fifo.front().is_some_and(|w| w.tx.is_closed()) {
                fifo.pop_front();
                self.len -= 1;
            }
        }
        let heads = || {
            self.fifos
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.front().map(|w| (i, w.since)))
        };
        let oldest = heads().min_by_key(|(_, since)| *since)?;
        let Some(own) = heads()
            .filter(|&(i, _)| i == shard || orphaned(i))
            .min_by_key(|(_, since)| *since)
        else {
            return Some(oldest.0);
        };
        let waited_much_longer = match (oldest.1, own.1) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(other), Some(own)) => other + CROSS_AFTER < own,
        };
        Some(if waited_much_longer { oldest.0 } else { own.0 })
    }

    /// Forgets every waiter that gave up (a reset stream, a closed client, a
    /// timeout): only live ones count against the backlog.
    pub(super) fn purge_gone(&mut self) {
        for fifo in &mut self.fifos {
            fifo.retain(|w| !w.tx.is_closed());
        }
        self.len = self.fifos.iter().map(VecDeque::len).sum();
    }

    pub(super) fn front(&self, fifo: usize) -> &Waiter {
        self.fifos[fifo]
            .front()
            .expect("next_for chose a non-empty FIFO")
    }

    pub(super) fn pop(&mut self, fifo: usize) -> Waiter {
        self.len -= 1;
        self.fifos[fifo]
            .pop_front()
            .expect("next_for chose a non-empty FIFO")
    }
}

/// A waiter's place in age order: a revoked request (`None`) before any other.
pub(super) fn age(since: Option<Instant>) -> (bool, Option<Instant>) {
    (since.is_some(), since)
}
