//! The dispatcher: knows every ready worker's capacity (`threads`) and in-flight
//! count, and hands a request to the least-loaded worker with room. When none has
//! room the request waits in a bounded FIFO (`backlog`) for at most `queue_timeout`;
//! a worker that frees a slot serves the oldest waiter first, so no worker idles
//! while requests wait.
//!
//! Decisions (`pick`) are plain functions over counts, tested without sockets; the
//! connection to each worker lives in `conn`.

pub mod conn;
pub mod response_spool;

pub use conn::{WorkerConn, WorkerEvent};

use crate::respond::Failure;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// A reserved slot on one worker. Dropping it without sending a request gives the
/// slot back; `WorkerConn::send_request` takes it over.
pub struct Lease {
    conn: Arc<WorkerConn>,
    dispatcher: Arc<Dispatcher>,
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
            self.dispatcher.release(&self.conn);
        }
    }
}

struct Slot {
    conn: Arc<WorkerConn>,
    in_flight: usize,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    waiters: VecDeque<oneshot::Sender<Lease>>,
}

pub struct Dispatcher {
    state: Mutex<State>,
    backlog: usize,
    queue_timeout: Duration,
}

/// Outcome of trying to place a request at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Worker(usize),
    Wait,
    QueueFull,
}

/// Chooses the least-loaded worker with room; otherwise wait if the queue has room.
pub fn pick(loads: impl Iterator<Item = (usize, usize)>, waiting: usize, backlog: usize) -> Pick {
    let best = loads
        .enumerate()
        .filter(|(_, (in_flight, capacity))| in_flight < capacity)
        .min_by_key(|(_, (in_flight, _))| *in_flight)
        .map(|(i, _)| i);
    match best {
        Some(i) => Pick::Worker(i),
        None if waiting < backlog => Pick::Wait,
        None => Pick::QueueFull,
    }
}

impl Dispatcher {
    pub fn new(backlog: usize, queue_timeout: Duration) -> Arc<Self> {
        Arc::new(Dispatcher {
            state: Mutex::new(State::default()),
            backlog,
            queue_timeout,
        })
    }

    /// Reserves a slot on a worker, waiting in the queue if all are busy.
    pub async fn acquire(self: &Arc<Self>) -> Result<Lease, Failure> {
        let rx = {
            let mut st = self.state.lock().unwrap();
            let loads = st
                .slots
                .iter()
                .map(|s| (s.in_flight, s.conn.available_capacity()));
            match pick(loads, st.waiters.len(), self.backlog) {
                Pick::Worker(i) => {
                    let slot = &mut st.slots[i];
                    slot.in_flight += 1;
                    return Ok(self.lease(slot.conn.clone()));
                }
                Pick::QueueFull => return Err(Failure::Overloaded),
                Pick::Wait => {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.push_back(tx);
                    rx
                }
            }
        };
        match tokio::time::timeout(self.queue_timeout, rx).await {
            Ok(Ok(lease)) => Ok(lease),
            // Timed out: our sender stays in the queue but is closed; `hand_over` skips it.
            _ => Err(Failure::Overloaded),
        }
    }

    fn lease(self: &Arc<Self>, conn: Arc<WorkerConn>) -> Lease {
        Lease {
            conn,
            dispatcher: self.clone(),
            armed: true,
        }
    }

    /// A ready worker joins the pool and at once takes waiting requests.
    pub fn add(self: &Arc<Self>, conn: Arc<WorkerConn>) {
        let mut st = self.state.lock().unwrap();
        st.slots.push(Slot { conn, in_flight: 0 });
        let i = st.slots.len() - 1;
        self.hand_over(&mut st, i);
    }

    /// The worker leaves the pool (dead, or retiring): no new requests go to it.
    pub fn remove(&self, conn: &WorkerConn) {
        let mut st = self.state.lock().unwrap();
        st.slots
            .retain(|s| !std::ptr::eq(Arc::as_ptr(&s.conn), conn));
    }

    /// A request on `conn` finished (or its lease was dropped unused).
    pub fn release(self: &Arc<Self>, conn: &WorkerConn) {
        let mut st = self.state.lock().unwrap();
        if let Some(i) = st
            .slots
            .iter()
            .position(|s| std::ptr::eq(Arc::as_ptr(&s.conn), conn))
        {
            st.slots[i].in_flight = st.slots[i].in_flight.saturating_sub(1);
            self.hand_over(&mut st, i);
        }
    }

    /// Gives free slots of worker `i` to the oldest live waiters.
    /// A lease that reaches a waiter which gave up is dropped by the channel and so
    /// released; one refused at send time is disarmed here (the lock is held).
    fn hand_over(self: &Arc<Self>, st: &mut State, i: usize) {
        while st.slots[i].in_flight < st.slots[i].conn.available_capacity() {
            let Some(waiter) = st.waiters.pop_front() else {
                return;
            };
            match waiter.send(self.lease(st.slots[i].conn.clone())) {
                Ok(()) => st.slots[i].in_flight += 1,
                Err(mut refused) => refused.armed = false,
            }
        }
    }

    /// Workers in the pool and requests waiting, for logs and readiness.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.slots.len(), st.waiters.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_with_room_wins() {
        assert_eq!(
            pick([(1, 2), (0, 2), (2, 2)].into_iter(), 0, 10),
            Pick::Worker(1)
        );
        assert_eq!(pick([(2, 2), (1, 2)].into_iter(), 0, 10), Pick::Worker(1));
    }

    #[test]
    fn full_workers_queue_until_backlog() {
        assert_eq!(pick([(1, 1), (1, 1)].into_iter(), 3, 4), Pick::Wait);
        assert_eq!(pick([(1, 1)].into_iter(), 4, 4), Pick::QueueFull);
        assert_eq!(pick(std::iter::empty(), 0, 4), Pick::Wait);
    }
}
