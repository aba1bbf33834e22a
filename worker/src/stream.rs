//! The state the worker's threads share, with no Python and no socket I/O in it: a
//! request's body buffer (`Body`, in `body`), the leader/follower schedule of the Python threads (`Sched`:
//! who reads the socket now, request heads read but not yet taken, idle threads),
//! and the connection state that decides when the worker may exit (`Conn`). The
//! socket I/O itself is in `server`.
//!
//! Why leader/follower: on a small VM every thread hand-off (a futex wake and a
//! context switch) costs more than the whole request. So there is no reader or
//! writer thread: an idle Python thread reads the socket itself (it is the
//! *leader*), and the thread that produced a response writes it. With one Python
//! thread a request costs one `read` and one `write` and no wake-up at all.

pub use crate::body::{Aborted, Body, Want};
use crate::claims::Claims;
use crate::wire::RequestHead;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks a mutex, ignoring poisoning: every critical section here leaves the state
/// consistent, and a panicking Python thread must not take the whole worker down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// A request handed to a Python thread.
pub struct Job {
    pub stream: u32,
    pub head: Box<RequestHead>,
    pub body: Arc<Body>,
    /// The socket an upgrade request carries (`RequestHead::upgrade`); dropping the
    /// job unrun closes it.
    pub socket: Option<OwnedFd>,
}

/// How long a thread waiting for body bytes sleeps before checking whether the
/// socket lost its reader (only matters with `--threads` > 1).
const BODY_POLL: Duration = Duration::from_millis(5);

/// The leader/follower schedule of the Python threads. At most one thread reads the
/// socket at a time (`leader`). Idle threads wait on `followers` for a job or for
/// the leadership; a thread blocked in `wsgi.input` waits on its `Body` and is
/// listed in `waiting`, so a departing leader can hand it the socket.
#[derive(Default)]
struct Sched {
    leader: bool,
    jobs: VecDeque<Job>,
    /// Threads waiting on `followers`.
    idle: usize,
    /// Wake-ups given to `followers` and not yet consumed (so a spurious wake-up
    /// cannot be mistaken for one, and we never wake more threads than needed).
    wakes: usize,
    waiting: Vec<Arc<Body>>,
    /// The master's frames ended (or the socket failed): nobody reads any more.
    input_done: bool,
}

/// What a leader reads for.
pub enum Until<'a> {
    /// A request head to run (an idle thread).
    Job,
    /// This body can answer `Want` (a thread in `wsgi.input`).
    Body(&'a Body, Want),
    /// Whatever is already in the socket, without blocking (a streaming response
    /// looking for an Abort).
    Drained,
}

/// Why the worker stops; `worker::main` maps it to an exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The master closed the connection (or died): nobody to answer to.
    MasterGone,
    /// SIGTERM and nothing left in flight.
    Drained,
    /// SIGINT / SIGQUIT: stop at once.
    Quick,
    /// A protocol error on the connection, or a thread that panicked.
    Fatal(Fatal),
}

/// What ends a worker in error while it serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("bad frame from the master: {0}")]
    BadFrame(#[from] crate::wire::WireError),
    #[error("unexpected {0} frame from the master")]
    UnexpectedFrame(&'static str),
    #[error("stream {0} reused while still in flight")]
    StreamReused(u32),
    #[error("the upgrade request on stream {0} came without its socket")]
    NoSocket(u32),
    #[error("file descriptors from the master were cut (MSG_CTRUNC)")]
    FdsTruncated,
    #[error("a Python thread panicked")]
    ThreadPanicked,
}

#[derive(Default)]
struct ConnState {
    streams: HashMap<u32, Arc<Body>>,
    draining: bool,
    /// The reader has seen the end of the master's frames.
    input_done: bool,
    exit: Option<Exit>,
}

const READ_BUF: usize = 256 * 1024;

/// What the leader reads into; kept in `Conn` so the next leader goes on where the
/// last one stopped (a frame may be split across two reads).
pub struct ReadBuf {
    pub(crate) buf: BytesMut,
    pub(crate) tmp: Vec<u8>,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            buf: BytesMut::with_capacity(READ_BUF),
            tmp: vec![0; READ_BUF],
        }
    }
}

/// Reads and routes frames as leader until `until` holds (false) or the input
/// ended (true). It is `server::lead`, handed in by whoever makes the `Conn`: the
/// scheduling here does not depend on how frames are read.
pub type Leader = fn(&Conn, Until<'_>) -> bool;

/// Per-connection state shared by the signal and Python threads.
pub struct Conn {
    sched: Mutex<Sched>,
    followers: Condvar,
    state: Mutex<ConnState>,
    exit_cv: Condvar,
    /// The master's socket: read by the leader, written by any thread under
    /// `write_lock`, and shut for reading when a drain finds nothing in flight.
    pub(crate) socket: UnixStream,
    pub(crate) write_lock: Mutex<()>,
    /// Bytes read but not yet decoded; only the leader touches it (so the lock is
    /// never contended), and it survives changes of leader.
    pub(crate) read_buf: Mutex<ReadBuf>,
    leader: Leader,
    /// Set once a write failed: later writes are dropped.
    pub(crate) write_failed: AtomicBool,
    /// Shared with the front, which may take back a request not started yet; `None`
    /// when the front sends nothing ahead (every request read is run).
    claims: Option<Claims>,
    /// Sockets the master passed (SCM_RIGHTS), in the order they came, each waiting
    /// for its upgrade head: the leader pushes them as it reads, before the bytes
    /// they rode on are decoded.
    passed: Mutex<VecDeque<OwnedFd>>,
}

impl Conn {
    pub fn new(socket: UnixStream, claims: Option<Claims>, leader: Leader) -> Self {
        Conn {
            leader,
            sched: Mutex::default(),
            followers: Condvar::new(),
            state: Mutex::default(),
            exit_cv: Condvar::new(),
            socket,
            write_lock: Mutex::new(()),
            read_buf: Mutex::default(),
            write_failed: AtomicBool::new(false),
            claims,
            passed: Mutex::default(),
        }
    }

    /// Leader: sockets that came with the bytes just read.
    pub(crate) fn push_passed(&self, fds: impl IntoIterator<Item = OwnedFd>) {
        lock(&self.passed).extend(fds);
    }

    /// Closes the passed sockets no head took (the worker is exiting).
    pub fn close_passed(&self) {
        lock(&self.passed).clear();
    }

    /// Leader: a new request. Registered before it is queued, so `in flight` covers
    /// queued requests too. An upgrade head takes the next passed socket: with none queued the frames and
    /// the fds are out of step, and nothing after can be trusted.
    pub fn start_request(&self, stream: u32, head: Box<RequestHead>) -> Result<(), Fatal> {
        let socket = match head.upgrade {
            true => Some(
                lock(&self.passed)
                    .pop_front()
                    .ok_or(Fatal::NoSocket(stream))?,
            ),
            false => None,
        };
        let body = Arc::new(Body::new(head.content_length));
        let old = lock(&self.state).streams.insert(stream, body.clone());
        if let Some(old) = old {
            old.abort();
            return Err(Fatal::StreamReused(stream));
        }
        let mut s = lock(&self.sched);
        s.jobs.push_back(Job {
            stream,
            head,
            body,
            socket,
        });
        self.wake_followers(&mut s);
        Ok(())
    }

    /// Wakes as many idle threads as there are queued jobs, plus one for a vacant
    /// leadership; with no idle thread for the vacancy, nudges a thread waiting
    /// for body bytes. Called after every change of `jobs` or `leader`.
    fn wake_followers(&self, s: &mut Sched) {
        let vacant = !s.leader && !s.input_done;
        let need = s.jobs.len() + usize::from(vacant);
        while s.wakes < need.min(s.idle) {
            s.wakes += 1;
            self.followers.notify_one();
        }
        if vacant && s.idle < need {
            if let Some(body) = s.waiting.first() {
                body.nudge();
            }
        }
    }

    /// Takes the leadership if nobody holds it (and there is still input).
    fn try_lead(&self, s: &mut Sched) -> bool {
        if s.leader || s.input_done {
            return false;
        }
        s.leader = true;
        true
    }

    /// Reads as leader until `until` holds, then gives the leadership away.
    fn lead(&self, until: Until<'_>) {
        let done = (self.leader)(self, until);
        let mut s = lock(&self.sched);
        s.leader = false;
        if done {
            s.input_done = true;
        }
        self.wake_followers(&mut s);
    }

    /// A queued job, without waiting (the caller holds the GIL).
    pub fn try_job(&self) -> Option<Job> {
        let mut s = lock(&self.sched);
        let job = self.pop_job(&mut s);
        if job.is_some() {
            self.wake_followers(&mut s);
        }
        job
    }

    /// The first queued job that is ours to run: a job the front revoked (it was sent
    /// ahead and has gone to another worker) is dropped without a word.
    fn pop_job(&self, s: &mut Sched) -> Option<Job> {
        while let Some(job) = s.jobs.pop_front() {
            if self.claims.as_ref().is_none_or(|c| c.claim(job.stream)) {
                return Some(job);
            }
            self.forget(job.stream, &job.body);
            self.check_drained();
        }
        None
    }

    /// The next request for this thread: a queued one, else this thread reads the
    /// socket until a head arrives if nobody else does, else it waits. Blocks: call
    /// it with the GIL released. After the input ended it never returns (the worker
    /// is exiting).
    pub fn next_job(&self) -> Job {
        let mut s = lock(&self.sched);
        loop {
            if let Some(job) = self.pop_job(&mut s) {
                self.wake_followers(&mut s);
                return job;
            }
            if self.try_lead(&mut s) {
                drop(s);
                self.lead(Until::Job);
                s = lock(&self.sched);
                continue;
            }
            s.idle += 1;
            while s.wakes == 0 {
                s = wait(&self.followers, s);
            }
            s.wakes -= 1;
            s.idle -= 1;
        }
    }

    /// `wsgi.input` with nothing buffered: read the socket ourselves if nobody does
    /// (routing other streams' frames as we go), else wait for the leader to route
    /// our bytes, or to hand us the socket. Blocks: call it with the GIL released.
    pub fn take_blocking(&self, body: &Arc<Body>, want: Want) -> Result<Vec<Bytes>, Aborted> {
        loop {
            if let Some(got) = body.try_take(want).transpose() {
                return got;
            }
            let mut s = lock(&self.sched);
            if self.try_lead(&mut s) {
                drop(s);
                self.lead(Until::Body(body, want));
                continue;
            }
            if s.input_done {
                // The end of the input aborted every incomplete body.
                return body.try_take(want)?.ok_or(Aborted);
            }
            s.waiting.push(body.clone());
            drop(s);
            body.wait_change(want, BODY_POLL);
            lock(&self.sched).waiting.retain(|b| !Arc::ptr_eq(b, body));
        }
    }

    /// A streaming response between two chunks: if nobody reads the socket, route
    /// what is already there (an Abort for this stream, typically) without waiting.
    pub fn poll_input(&self) {
        if self.try_lead(&mut lock(&self.sched)) {
            self.lead(Until::Drained);
        }
    }

    /// The body of a stream in flight; frames for a finished stream are ignored (the
    /// app may answer before the front has sent the whole body).
    pub fn body(&self, stream: u32) -> Option<Arc<Body>> {
        lock(&self.state).streams.get(&stream).cloned()
    }

    /// Python thread: the response is decided; forget the stream *before* its last
    /// frame goes out, so the front may reuse the id as soon as it sees that frame.
    pub fn forget(&self, stream: u32, body: &Arc<Body>) {
        let mut st = lock(&self.state);
        if st
            .streams
            .get(&stream)
            .is_some_and(|b| Arc::ptr_eq(b, body))
        {
            st.streams.remove(&stream);
        }
    }

    /// After the last frame of a stream was queued, on SIGTERM, and at the end of the
    /// input: when draining with nothing in flight, shut the socket's reading side.
    /// Frames the master wrote before that (a request may be sitting unread in the
    /// socket when SIGTERM arrives) are still read and served; later writes fail on
    /// the master's side. Once the reader has seen the end and nothing is in flight,
    /// the worker exits.
    pub fn check_drained(&self) {
        let mut st = lock(&self.state);
        if !st.draining || !st.streams.is_empty() {
            return;
        }
        if st.input_done {
            Self::set_exit(&mut st, Exit::Drained);
            self.exit_cv.notify_all();
        } else {
            let _ = self.socket.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Leader: no more frames. While draining that is the expected end; otherwise the
    /// master went away. Bodies still incomplete will never complete: abort them, so
    /// their readers fail instead of waiting forever.
    pub fn input_ended(&self) {
        let (draining, bodies) = {
            let mut st = lock(&self.state);
            st.input_done = true;
            (
                st.draining,
                st.streams.values().cloned().collect::<Vec<_>>(),
            )
        };
        for body in bodies {
            body.abort_if_incomplete();
        }
        if draining {
            self.check_drained();
        } else {
            self.exit(Exit::MasterGone);
        }
    }

    /// SIGTERM: finish what is in flight, then exit.
    pub fn drain(&self) {
        let in_flight = {
            let mut st = lock(&self.state);
            st.draining = true;
            st.streams.len()
        };
        crate::log::wlog!("SIGTERM: draining, {in_flight} request(s) in flight");
        self.check_drained();
    }

    pub fn exit(&self, why: Exit) {
        Self::set_exit(&mut lock(&self.state), why);
        self.exit_cv.notify_all();
    }

    fn set_exit(st: &mut ConnState, why: Exit) {
        st.exit.get_or_insert(why);
    }

    pub fn wait_exit(&self) -> Exit {
        let mut st = lock(&self.state);
        loop {
            if let Some(why) = st.exit.clone() {
                return why;
            }
            st = wait(&self.exit_cv, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use std::os::fd::AsRawFd;

    fn upgrade_head() -> Box<RequestHead> {
        Box::new(RequestHead {
            method: Bytes::from_static(b"GET"),
            path: Bytes::from_static(b"/ws"),
            query: Bytes::new(),
            version: 11,
            scheme: wire::Scheme::Http,
            remote_addr: Bytes::new(),
            remote_port: 0,
            server_name: Bytes::new(),
            server_port: 0,
            request_id: Bytes::new(),
            content_length: Some(0),
            headers: vec![],
            upgrade: true,
        })
    }

    #[test]
    fn each_upgrade_head_takes_the_next_passed_socket_and_none_is_fatal() {
        let (sock, _master) = UnixStream::pair().unwrap();
        let c = Conn::new(sock, None, |_, _| true);
        let (a, _) = UnixStream::pair().unwrap();
        let (b, _) = UnixStream::pair().unwrap();
        let ids = [a.as_raw_fd(), b.as_raw_fd()];
        c.push_passed([OwnedFd::from(a), OwnedFd::from(b)]);
        c.start_request(1, upgrade_head()).unwrap();
        c.start_request(2, upgrade_head()).unwrap();
        let got: Vec<_> = (0..2)
            .map(|_| c.try_job().unwrap().socket.unwrap())
            .collect();
        assert_eq!([got[0].as_raw_fd(), got[1].as_raw_fd()], ids);
        assert_eq!(c.start_request(3, upgrade_head()), Err(Fatal::NoSocket(3)));
    }

    #[test]
    fn drain_waits_for_streams_in_flight() {
        let (sock, _master) = UnixStream::pair().unwrap();
        let c = Conn::new(sock, None, |_, _| true);
        let head = Box::new(RequestHead {
            method: Bytes::from_static(b"GET"),
            path: Bytes::from_static(b"/"),
            query: Bytes::new(),
            version: 11,
            scheme: wire::Scheme::Http,
            remote_addr: Bytes::new(),
            remote_port: 0,
            server_name: Bytes::new(),
            server_port: 0,
            request_id: Bytes::new(),
            content_length: None,
            headers: vec![],
            upgrade: false,
        });
        c.start_request(7, head).unwrap();
        c.drain();
        assert!(lock(&c.state).exit.is_none());
        let job = c.try_job().unwrap();
        c.forget(7, &job.body);
        c.check_drained();
        assert!(
            lock(&c.state).exit.is_none(),
            "the input is not finished yet"
        );
        c.input_ended();
        assert_eq!(c.wait_exit(), Exit::Drained);
    }
}
