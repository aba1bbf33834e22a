//! Requests pinned to a worker (`acquire`'s `prefer`), on a real dispatcher with
//! real worker connections (a socketpair whose far end says Ready, as a worker
//! does): they wait for their worker though another is free, keep look-ahead
//! traffic off it while they wait, count against the backlog, and go to any
//! worker once theirs is gone or retiring.

use super::*;
use crate::claims::Claims;
use crate::wire::{self, Frame, Ready};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

struct Pool {
    dispatcher: &'static Dispatcher,
    shards: crate::shards::Shards,
    dir: tempfile::TempDir,
    /// The workers' ends, kept open: a closed one would end its connection.
    ends: Vec<UnixStream>,
}

impl Pool {
    fn new(backlog: usize) -> Self {
        let look_ahead = LookAhead {
            depth: 2,
            stall: Duration::from_secs(3600),
        };
        let (shards, _threads) = crate::shards::Shards::start(1).unwrap();
        Pool {
            dispatcher: Dispatcher::new(backlog, Duration::from_secs(30), look_ahead),
            shards,
            dir: tempfile::tempdir().unwrap(),
            ends: Vec::new(),
        }
    }

    /// A ready worker with `threads` threads, in the pool.
    async fn worker(&mut self, threads: usize) -> Arc<WorkerConn> {
        let (front, mut end) = UnixStream::pair().unwrap();
        let pid = 1000 + self.ends.len() as u32;
        let ready = Ready {
            protocol: ferricorn_wire::PROTOCOL,
            pid,
            interpreter: Default::default(),
        };
        let mut buf = BytesMut::new();
        wire::encode(0, &Frame::Ready(Box::new(ready)), &mut buf);
        end.write_all(&buf).await.unwrap();
        self.ends.push(end);
        let claims = Claims::create(&self.dir.path().join(pid.to_string())).unwrap();
        let (events, _) = mpsc::unbounded_channel();
        let host = self.shards.host_worker();
        let conn = WorkerConn::handshake(
            host,
            front,
            claims,
            capacity(threads),
            0,
            self.dispatcher,
            events,
        )
        .await
        .unwrap();
        self.dispatcher.add(conn.clone());
        conn
    }

    async fn lease(&self, ahead: bool, prefer: Option<&WorkerConn>) -> Lease {
        let prefer = prefer.map(|c| c.id());
        self.dispatcher.acquire(ahead, false, prefer).await.unwrap()
    }

    /// A request that waits: its acquire runs until it is queued.
    async fn waiting(&self, ahead: bool, prefer: Option<&WorkerConn>) -> JoinHandle<Lease> {
        let before = self.dispatcher.counts().1;
        let dispatcher = self.dispatcher;
        let prefer = prefer.map(|c| c.id());
        let task =
            tokio::spawn(async move { dispatcher.acquire(ahead, false, prefer).await.unwrap() });
        for _ in 0..1000 {
            if self.dispatcher.counts().1 > before {
                return task;
            }
            tokio::task::yield_now().await;
        }
        panic!("the request never queued");
    }
}

fn capacity(threads: usize) -> conn::Capacity {
    conn::Capacity {
        slots: threads,
        interface: crate::config::Interface::Wsgi,
    }
}

fn on(lease: &Lease) -> WorkerId {
    lease.conn().id()
}

#[tokio::test]
async fn a_pinned_request_waits_for_its_worker_though_another_is_free() {
    let mut pool = Pool::new(10);
    let a = pool.worker(1).await;
    let b = pool.worker(1).await;
    let busy_a = pool.lease(true, Some(&a)).await;
    assert_eq!(on(&busy_a), a.id());
    let pinned = pool.waiting(true, Some(&a)).await;
    // B is free, and takes an unpinned request.
    let busy_b = pool.lease(true, None).await;
    assert_eq!(on(&busy_b), b.id());
    // A has a pinned waiter: nothing goes ahead of its threads there, so requests
    // sent ahead go to B only (look-ahead depth 2), then wait.
    let ahead: Vec<Lease> = vec![pool.lease(true, None).await, pool.lease(true, None).await];
    assert!(ahead.iter().all(|l| on(l) == b.id()));
    let unpinned = pool.waiting(true, None).await;
    assert_eq!(pool.dispatcher.counts().1, 2);
    // A's thread comes free: the pinned request, the older one, gets it; then,
    // with no pinned request waiting, the other may go ahead there.
    drop(busy_a);
    assert_eq!(on(&pinned.await.unwrap()), a.id());
    assert_eq!(on(&unpinned.await.unwrap()), a.id());
    drop((busy_b, ahead));
}

#[tokio::test]
async fn a_pinned_request_runs_at_once_on_its_free_worker_and_never_ahead() {
    let mut pool = Pool::new(10);
    let a = pool.worker(2).await;
    let _b = pool.worker(2).await;
    // Unpinned, the least loaded would alternate; pinned, all go to A.
    let first = pool.lease(true, Some(&a)).await;
    let second = pool.lease(true, Some(&a)).await;
    assert_eq!((on(&first), on(&second)), (a.id(), a.id()));
    // Both threads busy: a third waits though A has look-ahead room.
    let third = pool.waiting(true, Some(&a)).await;
    drop(first);
    assert_eq!(on(&third.await.unwrap()), a.id());
    drop(second);
}

#[tokio::test]
async fn a_pin_to_a_worker_that_left_or_retires_is_no_pin() {
    let mut pool = Pool::new(10);
    let a = pool.worker(1).await;
    let b = pool.worker(1).await;
    a.retire();
    assert_eq!(on(&pool.lease(false, Some(&a)).await), b.id());
    pool.dispatcher.remove(&a);
    assert_eq!(on(&pool.lease(false, Some(&a)).await), b.id());
    // A forged name is no pin either.
    let forged = WorkerId::random();
    let lease = pool
        .dispatcher
        .acquire(false, false, Some(forged))
        .await
        .unwrap();
    assert_eq!(on(&lease), b.id());
}

#[tokio::test]
async fn pinned_waiters_of_a_worker_that_leaves_wait_for_any_worker() {
    let mut pool = Pool::new(10);
    let a = pool.worker(1).await;
    let b = pool.worker(1).await;
    let busy_a = pool.lease(false, Some(&a)).await;
    let busy_b = pool.lease(false, Some(&b)).await;
    let pinned = pool.waiting(false, Some(&a)).await;
    let later = pool.waiting(false, None).await;
    pool.dispatcher.remove(&a);
    assert_eq!(pool.dispatcher.counts(), (1, 2), "still waiting, for B now");
    drop(busy_b);
    let got = pinned.await.unwrap();
    assert_eq!(on(&got), b.id(), "in its place: before the later one");
    assert!(!later.is_finished());
    drop((got, busy_a));
    assert_eq!(on(&later.await.unwrap()), b.id());
}

#[tokio::test]
async fn pinned_waiters_count_against_the_backlog() {
    let mut pool = Pool::new(1);
    let a = pool.worker(1).await;
    let _busy = pool.lease(false, Some(&a)).await;
    let _pinned = pool.waiting(false, Some(&a)).await;
    let refused = pool.dispatcher.acquire(false, false, Some(a.id())).await;
    assert_eq!(refused.err(), Some(Refusal::QueueFull));
    let refused = pool.dispatcher.acquire(true, false, None).await;
    assert_eq!(refused.err(), Some(Refusal::QueueFull));
}
