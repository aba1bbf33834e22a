//! The dispatcher: knows every ready worker's capacity (`threads`) and in-flight
//! count, and hands a request to the least-loaded worker with room. When none has
//! room the request waits in a bounded FIFO (`backlog`) for at most `queue_timeout`;
//! a worker that frees a slot serves the oldest waiter first, so no worker idles
//! while requests wait.
//!
//! Room is `threads` plus `look_ahead`: a worker may be sent a few requests beyond
//! what its threads are running, so that it finds the next one in its socket buffer
//! instead of sleeping and being woken once per request (the cost that dominates a
//! small request; see benches/README.md). Those requests stay revocable until the
//! worker starts them (`crate::claims`), and the dispatcher takes them back when
//! that keeps them from waiting behind a slow one:
//! - a worker with a free thread and no request waiting in the FIFO takes over the
//!   oldest requests queued at the busiest worker;
//! - a worker that has finished nothing for `look_ahead_stall` is *stalled*: what it
//!   has not started goes back to the head of the FIFO, and it is sent nothing
//!   ahead until it finishes a request.
//!
//! Only requests whose body is in memory are sent ahead (a spooled upload would
//! block the worker's socket for everyone behind it).
//!
//! With several front threads (`crate::shards`), a request prefers a worker whose
//! connection lives on its own thread, among workers equally placed (a free thread
//! beats any look-ahead room), and a worker that frees a slot takes the oldest
//! waiter of its own thread. It takes another thread's waiter when its own have
//! none, or when that one has waited `CROSS_AFTER` longer, so no thread's requests
//! starve.
//!
//! A request may be *pinned* to one worker (a sticky route's cookie names it,
//! `proxy::sticky`): it runs there or nowhere, so it waits in that worker's own
//! FIFO, under the same backlog and queue timeout, for a free thread, and is never
//! sent ahead (it could only be revoked back to the same worker). While a worker
//! has pinned requests waiting it gets nothing ahead either, so look-ahead traffic
//! cannot keep its threads from ever coming free; a freed thread serves whichever
//! waited longest, pinned or not. A pin naming a worker that left the pool (or is
//! retiring) is no pin, and pinned waiters of a worker that leaves queue again
//! for any worker, in their place.
//!
//! Decisions (`pick`, `room`) are plain functions over counts, tested without
//! sockets; the connection to each worker lives in `conn`.

pub mod conn;
pub(crate) mod response_budget;
pub mod response_spool;

mod queues;
mod worker_id;

pub use conn::{WorkerConn, WorkerEvent};
pub use worker_id::WorkerId;

use crate::respond::Failure;
use queues::{age, Queues, Waiter};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A reserved slot on one worker. Dropping it without sending a request gives the
/// slot back; `WorkerConn::send_request` takes it over.
pub struct Lease {
    conn: Arc<WorkerConn>,
    armed: bool,
}

impl Lease {
    pub fn conn(&self) -> &Arc<WorkerConn> {
        &self.conn
    }

    /// The request was sent: its slot is released when the worker ends the stream.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.conn.dispatcher().release(&self.conn);
        }
    }
}

struct Slot {
    conn: Arc<WorkerConn>,
    in_flight: usize,
    /// When this worker last finished a request, or got work after being idle.
    progress: Instant,
    /// Requests that must run on this worker, waiting for a free thread.
    pinned: VecDeque<Waiter>,
}

impl Slot {
    /// Whether the worker has been running with nothing finished for `stall`.
    fn stalled(&self, now: Instant, stall: Duration) -> bool {
        self.in_flight >= self.conn.available_capacity()
            && now.saturating_duration_since(self.progress) > stall
    }

    /// Requests queued at the worker beyond what its threads can be running.
    fn queued_ahead(&self) -> usize {
        self.in_flight
            .saturating_sub(self.conn.available_capacity())
    }

    /// Revokes up to `max` requests the worker has not started (their request sides
    /// queue again) and stops counting them here.
    fn take_back(&mut self, max: usize) {
        self.in_flight -= self.conn.revoke_unstarted(max);
    }
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    waiters: Queues,
}

impl State {
    /// Requests waiting, pinned or not: what the backlog bounds.
    fn waiting(&self) -> usize {
        self.waiters.len + self.slots.iter().map(|s| s.pinned.len()).sum::<usize>()
    }

    /// Forgets every waiter that gave up, pinned ones too.
    fn purge_gone(&mut self) {
        self.waiters.purge_gone();
        for slot in &mut self.slots {
            slot.pinned.retain(|w| !w.tx.is_closed());
        }
    }

    /// The slot a request pinned to `id` must wait for: a serving worker of that
    /// name, else none (the pin is void).
    fn pinned_slot(&self, id: Option<WorkerId>) -> Option<usize> {
        let id = id?;
        self.slots
            .iter()
            .position(|s| s.conn.id() == id && s.conn.available_capacity() > 0)
    }
}

/// How far requests may be sent ahead of a worker's threads.
#[derive(Debug, Clone, Copy)]
pub struct LookAhead {
    pub depth: usize,
    pub stall: Duration,
}

pub struct Dispatcher {
    state: Mutex<State>,
    backlog: usize,
    queue_timeout: Duration,
    look_ahead: LookAhead,
}

/// Outcome of trying to place a request at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Worker(usize),
    Wait,
    QueueFull,
}

/// One worker as `pick` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub in_flight: usize,
    /// What it may hold (`room`).
    pub room: usize,
    pub threads: usize,
    /// Its connection lives on the request's front thread.
    pub local: bool,
}

/// Chooses a worker with room: one with a free thread before one with only
/// look-ahead room, then a local one, then the least loaded; otherwise wait if the
/// queue has room.
pub fn pick(loads: impl Iterator<Item = Load>, waiting: usize, backlog: usize) -> Pick {
    let best = loads
        .enumerate()
        .filter(|(_, l)| l.in_flight < l.room)
        .min_by_key(|(_, l)| (l.in_flight >= l.threads, !l.local, l.in_flight))
        .map(|(i, _)| i);
    match best {
        Some(i) => Pick::Worker(i),
        None if waiting < backlog => Pick::Wait,
        None => Pick::QueueFull,
    }
}

/// How many requests a worker with `threads` free-or-busy threads may hold: its
/// threads, plus `look_ahead` for a request that may be sent ahead to a worker that
/// is not stalled. A retiring worker (`threads` 0) gets nothing.
pub fn room(threads: usize, look_ahead: usize, ahead: bool, stalled: bool) -> usize {
    if threads > 0 && ahead && !stalled {
        threads + look_ahead
    } else {
        threads
    }
}

/// Why the dispatcher found no worker for a request (503 for the client: the
/// server is out of capacity, not the client or a worker at fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the queue for a worker is full")]
    QueueFull,
    #[error("no worker was free within the queue timeout")]
    QueueTimeout,
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        match r {
            Refusal::QueueFull => Failure::QueueFull,
            Refusal::QueueTimeout => Failure::QueueTimeout,
        }
    }
}

impl Dispatcher {
    /// The process's one dispatcher, which lives as long as the process: it is
    /// leaked so that a lease refers to it without a reference count (an `Arc`'s
    /// count would move between the front threads' cores on every request).
    pub fn new(backlog: usize, queue_timeout: Duration, look_ahead: LookAhead) -> &'static Self {
        Box::leak(Box::new(Dispatcher {
            state: Mutex::new(State::default()),
            backlog,
            queue_timeout,
            look_ahead,
        }))
    }

    /// Reserves a slot on a worker, waiting in the queue if all are busy. `ahead`:
    /// the request may be sent ahead of a worker's threads. `again`: it was revoked
    /// and is older than anything waiting, so it waits at the head of the queue.
    /// `prefer`: the worker it must run on while that one serves (a sticky cookie);
    /// see the module doc. The lease's `conn().id()` tells which worker it got.
    pub async fn acquire(
        &self,
        ahead: bool,
        again: bool,
        prefer: Option<WorkerId>,
    ) -> Result<Lease, Refusal> {
        let shard = crate::shards::current();
        let rx = {
            let mut st = self.state.lock().unwrap();
            let now = Instant::now();
            let pinned = st.pinned_slot(prefer);
            let mut picked = self.pick_for(&st, ahead, shard, now, pinned);
            if picked == Pick::QueueFull {
                // Waiters that gave up are dropped lazily; a full queue makes sure.
                st.purge_gone();
                picked = self.pick_for(&st, ahead, shard, now, pinned);
            }
            match picked {
                Pick::Worker(i) => return Ok(self.lease_on(&mut st.slots[i], now)),
                Pick::QueueFull if !again => return Err(Refusal::QueueFull),
                Pick::QueueFull | Pick::Wait => {
                    let (tx, rx) = oneshot::channel();
                    let since = (!again).then_some(now);
                    let waiter = Waiter {
                        tx,
                        ahead,
                        since,
                        shard,
                    };
                    match pinned {
                        Some(i) => waiter.join(&mut st.slots[i].pinned),
                        None => st.waiters.push(shard, waiter),
                    }
                    rx
                }
            }
        };
        match tokio::time::timeout(self.queue_timeout, rx).await {
            Ok(Ok(lease)) => Ok(lease),
            // Timed out: our sender stays in the queue but is closed; `hand_over` skips it.
            _ => Err(Refusal::QueueTimeout),
        }
    }

    /// `pick` over every worker, or over the one a pinned request must run on,
    /// which it never takes ahead of its threads.
    fn pick_for(
        &self,
        st: &State,
        ahead: bool,
        shard: usize,
        now: Instant,
        pinned: Option<usize>,
    ) -> Pick {
        let load = |s: &Slot, ahead| Load {
            in_flight: s.in_flight,
            room: self.room(s, ahead, now),
            threads: s.conn.available_capacity(),
            local: s.conn.shard() == shard,
        };
        match pinned {
            Some(i) => match pick(
                [load(&st.slots[i], false)].into_iter(),
                st.waiting(),
                self.backlog,
            ) {
                Pick::Worker(_) => Pick::Worker(i),
                other => other,
            },
            None => pick(
                st.slots.iter().map(|s| load(s, ahead)),
                st.waiting(),
                self.backlog,
            ),
        }
    }

    /// Room on `slot` for a request; none ahead while pinned requests wait there.
    fn room(&self, slot: &Slot, ahead: bool, now: Instant) -> usize {
        room(
            slot.conn.available_capacity(),
            self.look_ahead.depth,
            ahead && slot.pinned.is_empty(),
            slot.stalled(now, self.look_ahead.stall),
        )
    }

    /// Counts a request on `slot` and leases it.
    fn lease_on(&self, slot: &mut Slot, now: Instant) -> Lease {
        if slot.in_flight == 0 {
            slot.progress = now;
        }
        slot.in_flight += 1;
        Lease {
            conn: slot.conn.clone(),
            armed: true,
        }
    }

    /// A ready worker joins the pool and at once takes waiting requests.
    pub fn add(&self, conn: Arc<WorkerConn>) {
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        st.slots.push(Slot {
            conn,
            in_flight: 0,
            progress: now,
            pinned: VecDeque::new(),
        });
        let i = st.slots.len() - 1;
        self.hand_over(&mut st, i, now);
        self.rebalance(&mut st, now);
    }

    /// The worker leaves the pool (dead, or retiring): no new requests go to it,
    /// and those pinned to it wait for any worker instead.
    pub fn remove(&self, conn: &WorkerConn) {
        let mut st = self.state.lock().unwrap();
        let Some(i) = st
            .slots
            .iter()
            .position(|s| std::ptr::eq(Arc::as_ptr(&s.conn), conn))
        else {
            return;
        };
        let gone = st.slots.remove(i);
        if gone.pinned.is_empty() {
            return;
        }
        for waiter in gone.pinned {
            if !waiter.tx.is_closed() {
                st.waiters.requeue(waiter);
            }
        }
        let now = Instant::now();
        for i in 0..st.slots.len() {
            self.hand_over(&mut st, i, now);
        }
        self.rebalance(&mut st, now);
    }

    /// A request on `conn` finished (or its lease was dropped unused).
    pub fn release(&self, conn: &WorkerConn) {
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        if let Some(i) = st
            .slots
            .iter()
            .position(|s| std::ptr::eq(Arc::as_ptr(&s.conn), conn))
        {
            let slot = &mut st.slots[i];
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.progress = now;
            self.hand_over(&mut st, i, now);
            self.rebalance(&mut st, now);
        }
    }

    /// Gives room on worker `i` to the oldest live waiters, in order: the head
    /// of its own pinned FIFO or of the FIFO `next_for` chooses, whichever waited
    /// longer. A lease that reaches a waiter which gave up is dropped by the
    /// channel and so released; one refused at send time is disarmed here (the
    /// lock is held).
    fn hand_over(&self, st: &mut State, i: usize, now: Instant) {
        let shard = st.slots[i].conn.shard();
        loop {
            let pinned = &mut st.slots[i].pinned;
            while pinned.front().is_some_and(|w| w.tx.is_closed()) {
                pinned.pop_front();
            }
            let slots = &st.slots;
            let orphaned = |shard| {
                !slots
                    .iter()
                    .any(|s| s.conn.shard() == shard && s.conn.available_capacity() > 0)
            };
            let fifo = st.waiters.next_for(shard, orphaned);
            let from_pinned = match (st.slots[i].pinned.front(), fifo) {
                (None, None) => return,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(p), Some(f)) => age(p.since) <= age(st.waiters.front(f).since),
            };
            let ahead = match fifo {
                Some(f) if !from_pinned => st.waiters.front(f).ahead,
                _ => false,
            };
            if st.slots[i].in_flight >= self.room(&st.slots[i], ahead, now) {
                return;
            }
            let waiter = match fifo {
                Some(f) if !from_pinned => st.waiters.pop(f),
                _ => st.slots[i]
                    .pinned
                    .pop_front()
                    .expect("a pinned waiter was at the head"),
            };
            let lease = self.lease_on(&mut st.slots[i], now);
            if let Err(mut refused) = waiter.tx.send(lease) {
                refused.armed = false;
                st.slots[i].in_flight -= 1;
            }
        }
    }

    /// Takes back requests sent ahead where they would wait behind a slow one (see
    /// the module doc); their request sides queue again at the head of the FIFO.
    fn rebalance(&self, st: &mut State, now: Instant) {
        if self.look_ahead.depth == 0 {
            return;
        }
        for slot in st.slots.iter_mut() {
            if slot.queued_ahead() > 0 && slot.stalled(now, self.look_ahead.stall) {
                slot.take_back(slot.queued_ahead());
            }
        }
        // Called right after `hand_over`, which drops waiters that gave up from the
        // heads: a non-empty queue has a live request at a head.
        if st.waiters.len > 0 {
            return;
        }
        let idle: usize = st
            .slots
            .iter()
            .map(|s| s.conn.available_capacity().saturating_sub(s.in_flight))
            .sum();
        if idle == 0 {
            return;
        }
        if let Some(busiest) = st
            .slots
            .iter_mut()
            .filter(|s| s.queued_ahead() > 0)
            .max_by_key(|s| s.queued_ahead())
        {
            busiest.take_back(idle.min(busiest.queued_ahead()));
        }
    }

    /// Workers in the pool and requests waiting, for logs and readiness.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.slots.len(), st.waiting())
    }
}

#[cfg(test)]
mod sticky_tests;

#[cfg(test)]
mod tests {
    use super::queues::CROSS_AFTER;
    use super::*;

    fn loads(list: &[(usize, usize, bool)]) -> impl Iterator<Item = Load> + '_ {
        list.iter().map(|&(in_flight, room, local)| Load {
            in_flight,
            room,
            threads: 1,
            local,
        })
    }

    #[test]
    fn least_loaded_with_room_wins() {
        let all_local = |l: &[(usize, usize)]| -> Vec<(usize, usize, bool)> {
            l.iter().map(|&(i, r)| (i, r, true)).collect()
        };
        let three = all_local(&[(1, 2), (0, 2), (2, 2)]);
        assert_eq!(pick(loads(&three), 0, 10), Pick::Worker(1));
        let two = all_local(&[(2, 2), (1, 2)]);
        assert_eq!(pick(loads(&two), 0, 10), Pick::Worker(1));
    }

    #[test]
    fn a_free_thread_wins_then_a_worker_on_the_requests_own_front_thread() {
        // Both only have look-ahead room: the local one, though more loaded.
        let l = [(1, 17, false), (3, 17, true)];
        assert_eq!(pick(loads(&l), 0, 10), Pick::Worker(1));
        // A free thread elsewhere beats look-ahead room here.
        let l = [(0, 17, false), (1, 17, true)];
        assert_eq!(pick(loads(&l), 0, 10), Pick::Worker(0));
        // Both free: the local one.
        let l = [(0, 17, false), (0, 17, true)];
        assert_eq!(pick(loads(&l), 0, 10), Pick::Worker(1));
    }

    fn waiter(since: Option<Instant>) -> (Waiter, oneshot::Receiver<Lease>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            tx,
            ahead: true,
            since,
            shard: 0,
        };
        (w, rx)
    }

    #[test]
    fn a_worker_serves_its_own_threads_waiters_unless_another_waited_much_longer() {
        let t0 = Instant::now();
        let never = |_| false;
        let mut q = Queues::default();
        let (w, _rx0) = waiter(Some(t0));
        q.push(0, w);
        let (w, _rx1) = waiter(Some(t0 + CROSS_AFTER / 2));
        q.push(1, w);
        assert_eq!(q.next_for(1, never), Some(1), "own, though younger");
        assert_eq!(q.next_for(0, never), Some(0));
        assert_eq!(q.next_for(2, never), Some(0), "none of its own: the oldest");

        let mut q = Queues::default();
        let (w, _rx0) = waiter(Some(t0));
        q.push(0, w);
        let (w, _rx1) = waiter(Some(t0 + CROSS_AFTER * 2));
        q.push(1, w);
        assert_eq!(q.next_for(1, never), Some(0), "the other waited too long");
        assert_eq!(q.next_for(1, |s| s == 0), Some(0));

        let mut q = Queues::default();
        let (w, _rx0) = waiter(Some(t0));
        q.push(0, w);
        let (w, _rx1) = waiter(Some(t0 + CROSS_AFTER / 2));
        q.push(1, w);
        assert_eq!(q.next_for(1, never), Some(1));
        let orphan = |s| s == 0;
        assert_eq!(q.next_for(1, orphan), Some(0), "no worker serves thread 0");
        let (w, _rx2) = waiter(None);
        q.push(0, w);
        assert_eq!(q.next_for(1, never), Some(0), "a revoked request first");
    }

    #[test]
    fn waiters_that_gave_up_leave_the_queue_when_they_reach_its_head() {
        let mut q = Queues::default();
        let (w, rx) = waiter(Some(Instant::now()));
        q.push(0, w);
        let (w, _rx) = waiter(Some(Instant::now()));
        q.push(0, w);
        assert_eq!(q.len, 2);
        drop(rx);
        assert_eq!(q.next_for(0, |_| false), Some(0));
        assert_eq!(q.len, 1);
        q.pop(0);
        assert_eq!(q.next_for(0, |_| false), None);
        assert_eq!(q.len, 0);
    }

    #[test]
    fn waiters_that_gave_up_anywhere_in_the_queue_are_purged() {
        let mut q = Queues::default();
        let (w, _live) = waiter(Some(Instant::now()));
        q.push(0, w);
        let mut gone = Vec::new();
        for shard in [0, 1, 1] {
            let (w, rx) = waiter(Some(Instant::now()));
            q.push(shard, w);
            gone.push(rx);
        }
        drop(gone);
        assert_eq!(q.len, 4);
        q.purge_gone();
        assert_eq!(q.len, 1);
        assert_eq!(q.next_for(1, |_| false), Some(0));
    }

    #[test]
    fn look_ahead_adds_room_unless_stalled_retiring_or_not_allowed() {
        assert_eq!(room(1, 16, true, false), 17);
        assert_eq!(room(1, 16, true, true), 1, "stalled");
        assert_eq!(room(1, 16, false, false), 1, "body not in memory");
        assert_eq!(room(0, 16, true, false), 0, "retiring");
        assert_eq!(room(4, 0, true, false), 4, "look-ahead off");
    }

    #[test]
    fn full_workers_queue_until_backlog() {
        let full = [(1, 1, true), (1, 1, false)];
        assert_eq!(pick(loads(&full), 3, 4), Pick::Wait);
        assert_eq!(pick(loads(&full[..1]), 4, 4), Pick::QueueFull);
        assert_eq!(pick(std::iter::empty(), 0, 4), Pick::Wait);
    }
}
