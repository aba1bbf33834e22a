//! Front threads ("shards"). The front runs one single-threaded tokio runtime per
//! thread, `front_threads` of them. Each accepted client connection is handed to
//! the shard with the fewest open connections, and each shard hosts the
//! connections of its share of the workers (the fewest first). A request and the
//! worker connection it goes to are then usually on one thread, so the hot path has
//! no cross-thread wake-up: with one multi-threaded runtime, measured, those
//! wake-ups cost more than the second core gave (benches/README.md, "Front
//! threads"). The dispatcher prefers a worker hosted by the request's own shard.
//!
//! Connections are placed by count rather than left to the kernel (every shard
//! accepting on a shared socket, or `SO_REUSEPORT`): a burst of connections taken
//! by one thread would leave the other thread's workers reachable only across
//! threads.
//!
//! Shard 0 is the master's main runtime, which also runs signals, the supervisor,
//! the accept loops and the admin listener; shards 1.. are threads named `front-N`
//! (as `top -H` shows them).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The shard the calling thread runs (0 outside the front threads).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

struct Shard {
    handle: Handle,
    /// Worker connections this shard hosts.
    workers: Arc<AtomicUsize>,
    /// Client connections this shard serves.
    clients: Arc<AtomicUsize>,
}

impl Shard {
    fn new(handle: Handle) -> Self {
        Shard {
            handle,
            workers: Arc::default(),
            clients: Arc::default(),
        }
    }
}

struct Thread {
    stop: oneshot::Sender<()>,
    join: std::thread::JoinHandle<()>,
}

/// The shards, to place connections on; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    shards: Arc<[Shard]>,
}

/// Owns the front threads; `stop` ends them.
pub struct FrontThreads {
    threads: Vec<Thread>,
}

impl Shards {
    /// Starts `count - 1` front threads beside the calling runtime (shard 0).
    pub fn start(count: usize) -> std::io::Result<(Self, FrontThreads)> {
        let mut shards = vec![Shard::new(Handle::current())];
        let mut threads = Vec::new();
        for index in 1..count.max(1) {
            let (thread, handle) = spawn_thread(index)?;
            threads.push(thread);
            shards.push(Shard::new(handle));
        }
        Ok((
            Shards {
                shards: shards.into(),
            },
            FrontThreads { threads },
        ))
    }

    /// The shard that should host the next worker connection: the one hosting the
    /// fewest. The returned `Host` counts the connection until dropped.
    pub fn host_worker(&self) -> Host {
        self.least(|s| &s.workers)
    }

    /// The shard that should serve the next client connection: the one serving
    /// the fewest.
    pub fn host_client(&self) -> Host {
        self.least(|s| &s.clients)
    }

    fn least(&self, count: impl Fn(&Shard) -> &Arc<AtomicUsize>) -> Host {
        let (index, shard) = self
            .shards
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| count(s).load(Ordering::Relaxed))
            .expect("there is always shard 0");
        let count = count(shard).clone();
        count.fetch_add(1, Ordering::Relaxed);
        Host {
            index,
            handle: shard.handle.clone(),
            count,
        }
    }
}

impl FrontThreads {
    /// Stops the front threads (after the connections drained); their remaining
    /// tasks are dropped.
    pub fn stop(self) {
        for t in self.threads {
            let _ = t.stop.send(());
            let _ = t.join.join();
        }
    }
}

/// One shard's place for a connection, counted while it lives.
pub struct Host {
    index: usize,
    handle: Handle,
    count: Arc<AtomicUsize>,
}

impl Host {
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs `f(self)` on this shard: what `f` spawns and the sockets it registers
    /// belong to this shard.
    pub fn spawn<F, Fut>(self, f: F) -> tokio::task::JoinHandle<Fut::Output>
    where
        F: FnOnce(Host) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let handle = self.handle.clone();
        handle.spawn(f(self))
    }

    /// `spawn`, waiting for the result.
    pub async fn run<F, Fut>(self, f: F) -> std::io::Result<Fut::Output>
    where
        F: FnOnce(Host) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.spawn(f)
            .await
            .map_err(|e| std::io::Error::other(format!("front thread stopped: {e}")))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_thread(index: usize) -> std::io::Result<(Thread, Handle)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = std::thread::Builder::new()
        .name(format!("front-{index}"))
        .spawn(move || {
            CURRENT.with(|c| c.set(index));
            // A dropped sender (the master failed) stops the thread too.
            let _ = runtime.block_on(stopped);
        })?;
    Ok((Thread { stop, join }, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_thread_with_the_fewest_and_run_there() {
        let (shards, threads) = Shards::start(3).unwrap();
        let a = shards.host_client();
        let b = shards.host_client();
        let c = shards.host_client();
        assert_eq!([a.index(), b.index(), c.index()], [0, 1, 2]);
        drop(b);
        let d = shards.host_client();
        assert_eq!(d.index(), 1, "the thread whose connection ended");
        // Worker connections are counted apart from client connections.
        assert_eq!(shards.host_worker().index(), 0);

        let ran_on = d.run(|host| async move { (host.index(), current()) });
        assert_eq!(ran_on.await.unwrap(), (1, 1));
        assert_eq!(current(), 0, "the calling runtime is shard 0");
        drop((a, c));
        threads.stop();
    }
}
