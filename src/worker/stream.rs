//! The plumbing between the worker's Rust threads and its Python threads, with no
//! Python in it: a request's body buffer (`Body`, filled by the reader thread and
//! drained by `wsgi.input`), the queue of request heads waiting for an idle Python
//! thread (`JobQueue`), the batching outbox the writer thread drains (`Outbox`), and
//! the connection state that ties them together and decides when the worker may exit
//! (`Conn`).

use crate::wire::{self, Frame, RequestHead};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section here leaves the state
/// consistent, and a panicking Python thread must not take the whole worker down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// What a `wsgi.input` read waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// `read(n)`: n bytes, or fewer at the end of the body.
    Bytes(usize),
    /// `read()`: the whole rest of the body.
    All,
    /// `readline(limit)`: up to and including the next `\n`, at most `limit` bytes.
    Line(usize),
}

/// The front cut the request (its client went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client went away (request aborted by the front)")]
pub struct Aborted;

#[derive(Default)]
struct BodyState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// Bytes the app may still take: the declared length minus what it took, so a
    /// read never goes past the body even if the front sent more.
    remaining: Option<u64>,
    ended: bool,
    aborted: bool,
}

impl BodyState {
    fn at_end(&self) -> bool {
        self.ended || self.remaining == Some(0)
    }

    /// How many bytes `want` can take now, or `None` to wait for more.
    fn ready(&self, want: Want) -> Option<usize> {
        let cap = |n: usize| match self.remaining {
            Some(r) => n.min(usize::try_from(r).unwrap_or(usize::MAX)),
            None => n,
        };
        let avail = cap(self.buffered);
        let end = self.at_end() || avail < self.buffered;
        match want {
            Want::Bytes(n) if avail >= n => Some(n),
            Want::Line(limit) => match self.newline_within(avail.min(limit)) {
                Some(n) => Some(n),
                None if avail >= limit => Some(limit),
                None => end.then_some(avail),
            },
            _ => end.then_some(avail),
        }
    }

    /// Length up to and including the first `\n` among the first `max` buffered bytes.
    fn newline_within(&self, max: usize) -> Option<usize> {
        let mut seen = 0;
        for chunk in &self.chunks {
            let look = &chunk[..chunk.len().min(max - seen)];
            if let Some(i) = memchr(look) {
                return Some(seen + i + 1);
            }
            seen += look.len();
            if seen >= max {
                return None;
            }
        }
        None
    }

    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(1);
        self.buffered -= n;
        if let Some(r) = self.remaining.as_mut() {
            *r -= n as u64;
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                out.extend(self.chunks.pop_front());
            } else {
                out.push(front.split_to(n));
                n = 0;
            }
        }
        out
    }
}

fn memchr(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// One request's body as it arrives: the reader thread pushes, `wsgi.input` takes.
pub struct Body {
    state: Mutex<BodyState>,
    changed: Condvar,
}

impl Body {
    pub fn new(content_length: Option<u64>) -> Self {
        Body {
            state: Mutex::new(BodyState {
                remaining: content_length,
                ..BodyState::default()
            }),
            changed: Condvar::new(),
        }
    }

    pub fn push(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        st.buffered += data.len();
        st.chunks.push_back(data);
        drop(st);
        self.changed.notify_all();
    }

    pub fn end(&self) {
        lock(&self.state).ended = true;
        self.changed.notify_all();
    }

    /// The front cut the stream: reads fail from now on and writes are dropped.
    pub fn abort(&self) {
        let mut st = lock(&self.state);
        st.aborted = true;
        st.chunks.clear();
        st.buffered = 0;
        drop(st);
        self.changed.notify_all();
    }

    pub fn is_aborted(&self) -> bool {
        lock(&self.state).aborted
    }

    /// Takes what `want` asks for if it is there; `Ok(None)` means the caller must
    /// wait (with the GIL released) in `take_blocking`.
    pub fn try_take(&self, want: Want) -> Result<Option<Vec<Bytes>>, Aborted> {
        let mut st = lock(&self.state);
        if st.aborted {
            return Err(Aborted);
        }
        Ok(st.ready(want).map(|n| st.take(n)))
    }

    pub fn take_blocking(&self, want: Want) -> Result<Vec<Bytes>, Aborted> {
        let mut st = lock(&self.state);
        loop {
            if st.aborted {
                return Err(Aborted);
            }
            if let Some(n) = st.ready(want) {
                return Ok(st.take(n));
            }
            st = wait(&self.changed, st);
        }
    }
}

/// A request handed to a Python thread.
pub struct Job {
    pub stream: u32,
    pub head: Box<RequestHead>,
    pub body: Arc<Body>,
}

/// Request heads waiting for an idle Python thread. Bounded in practice by the
/// master, which never has more than `threads` requests in flight on a worker.
#[derive(Default)]
pub struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl JobQueue {
    fn push(&self, job: Job) {
        lock(&self.jobs).push_back(job);
        self.ready.notify_one();
    }

    /// The next job if one is queued (no waiting, so the GIL need not be released).
    pub fn try_take(&self) -> Option<Job> {
        lock(&self.jobs).pop_front()
    }

    pub fn take_blocking(&self) -> Job {
        let mut jobs = lock(&self.jobs);
        loop {
            if let Some(job) = jobs.pop_front() {
                return job;
            }
            jobs = wait(&self.ready, jobs);
        }
    }
}

/// Above this many queued bytes, senders wait for the writer (back-pressure for big
/// bodies; a hello-world response never gets near it).
const HIGH_WATER: usize = 1 << 20;

struct OutState {
    buf: BytesMut,
    closed: bool,
}

/// Encoded frames waiting for the writer thread, which takes them all at once and
/// writes them with one syscall: many frames per write under load.
pub struct Outbox {
    state: Mutex<OutState>,
    wake_writer: Condvar,
    space: Condvar,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            state: Mutex::new(OutState {
                buf: BytesMut::with_capacity(64 * 1024),
                closed: false,
            }),
            wake_writer: Condvar::new(),
            space: Condvar::new(),
        }
    }
}

impl Outbox {
    fn enqueue(&self, st: &mut OutState, stream: u32, frame: &Frame) {
        let was_empty = st.buf.is_empty();
        wire::encode(stream, frame, &mut st.buf);
        // The writer only sleeps on an empty buffer, so only the first frame wakes it.
        if was_empty {
            self.wake_writer.notify_one();
        }
    }

    /// Queues `frame` unless the outbox is over its high-water mark (then returns
    /// false and the caller retries with `send`, after releasing the GIL).
    pub fn try_send(&self, stream: u32, frame: &Frame) -> bool {
        let mut st = lock(&self.state);
        if st.closed {
            return true; // nobody will read it: drop
        }
        if st.buf.len() >= HIGH_WATER {
            return false;
        }
        self.enqueue(&mut st, stream, frame);
        true
    }

    /// Queues as many of `frames` as fit under one lock, removing them from the
    /// vector; true when all went (the rest must go through `send`).
    pub fn try_send_all(&self, stream: u32, frames: &mut Vec<Frame>) -> bool {
        let mut st = lock(&self.state);
        if st.closed {
            frames.clear();
            return true;
        }
        let mut sent = 0;
        for f in frames.iter() {
            if st.buf.len() >= HIGH_WATER {
                break;
            }
            self.enqueue(&mut st, stream, f);
            sent += 1;
        }
        frames.drain(..sent);
        frames.is_empty()
    }

    pub fn send(&self, stream: u32, frame: &Frame) {
        let mut st = lock(&self.state);
        while st.buf.len() >= HIGH_WATER && !st.closed {
            st = wait(&self.space, st);
        }
        if !st.closed {
            self.enqueue(&mut st, stream, frame);
        }
    }

    /// Writer side: waits for at least one frame and swaps the whole queue into
    /// `batch` (which must be empty). False once closed and drained.
    pub fn next_batch(&self, batch: &mut BytesMut) -> bool {
        let mut st = lock(&self.state);
        while st.buf.is_empty() {
            if st.closed {
                return false;
            }
            st = wait(&self.wake_writer, st);
        }
        std::mem::swap(&mut st.buf, batch);
        drop(st);
        self.space.notify_all();
        true
    }

    /// No more frames: the writer flushes what is queued and stops.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.wake_writer.notify_all();
        self.space.notify_all();
    }
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
    /// A protocol or I/O error on the connection.
    Fatal(String),
}

#[derive(Default)]
struct ConnState {
    streams: HashMap<u32, Arc<Body>>,
    draining: bool,
    /// The reader has seen the end of the master's frames.
    input_done: bool,
    exit: Option<Exit>,
}

/// Per-connection state shared by the reader, writer, signal and Python threads.
#[derive(Default)]
pub struct Conn {
    pub queue: JobQueue,
    pub outbox: Outbox,
    state: Mutex<ConnState>,
    exit_cv: Condvar,
    /// The socket, to shut its reading side when a drain finds nothing in flight.
    socket: std::sync::OnceLock<std::os::unix::net::UnixStream>,
}

impl Conn {
    /// Reader: a new request. Registered before it is queued, so `in flight` covers
    /// queued requests too.
    pub fn start_request(&self, stream: u32, head: Box<RequestHead>) -> Result<(), String> {
        let body = Arc::new(Body::new(head.content_length));
        let old = lock(&self.state).streams.insert(stream, body.clone());
        if let Some(old) = old {
            old.abort();
            return Err(format!("stream {stream} reused while still in flight"));
        }
        self.queue.push(Job { stream, head, body });
        Ok(())
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

    /// Gives the connection's socket for the drain's shutdown (see `check_drained`).
    pub fn set_socket(&self, sock: std::os::unix::net::UnixStream) {
        let _ = self.socket.set(sock);
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
        } else if let Some(sock) = self.socket.get() {
            let _ = sock.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Reader: no more frames. While draining that is the expected end; otherwise the
    /// master went away.
    pub fn input_ended(&self) {
        let draining = {
            let mut st = lock(&self.state);
            st.input_done = true;
            st.draining
        };
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
        super::log::wlog!("SIGTERM: draining, {in_flight} request(s) in flight");
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

    fn body(parts: &[&'static [u8]], ended: bool, len: Option<u64>) -> Body {
        let b = Body::new(len);
        for p in parts {
            b.push(Bytes::from_static(p));
        }
        if ended {
            b.end();
        }
        b
    }

    fn flat(v: Vec<Bytes>) -> Vec<u8> {
        v.concat()
    }

    #[test]
    fn read_n_waits_for_n_or_the_end() {
        let b = body(&[b"ab", b"cd"], false, None);
        assert_eq!(flat(b.try_take(Want::Bytes(3)).unwrap().unwrap()), b"abc");
        assert_eq!(b.try_take(Want::Bytes(3)).unwrap(), None);
        b.end();
        assert_eq!(flat(b.try_take(Want::Bytes(3)).unwrap().unwrap()), b"d");
        assert_eq!(flat(b.try_take(Want::Bytes(3)).unwrap().unwrap()), b"");
    }

    #[test]
    fn content_length_ends_the_body_without_request_end() {
        let b = body(&[b"hello", b"xx"], false, Some(5));
        assert_eq!(flat(b.try_take(Want::All).unwrap().unwrap()), b"hello");
        assert_eq!(flat(b.try_take(Want::All).unwrap().unwrap()), b"");
    }

    #[test]
    fn readline_spans_chunks_and_honours_limit() {
        let b = body(&[b"ab", b"c\nde", b"f\n", b"tail"], true, None);
        assert_eq!(
            flat(b.try_take(Want::Line(100)).unwrap().unwrap()),
            b"abc\n"
        );
        assert_eq!(flat(b.try_take(Want::Line(2)).unwrap().unwrap()), b"de");
        assert_eq!(flat(b.try_take(Want::Line(100)).unwrap().unwrap()), b"f\n");
        assert_eq!(flat(b.try_take(Want::Line(100)).unwrap().unwrap()), b"tail");
    }

    #[test]
    fn readline_waits_for_a_newline() {
        let b = body(&[b"abc"], false, None);
        assert_eq!(b.try_take(Want::Line(100)).unwrap(), None);
        b.push(Bytes::from_static(b"\n"));
        assert_eq!(
            flat(b.try_take(Want::Line(100)).unwrap().unwrap()),
            b"abc\n"
        );
    }

    #[test]
    fn abort_fails_reads() {
        let b = body(&[b"abc"], false, None);
        b.abort();
        assert_eq!(b.try_take(Want::All), Err(Aborted));
        assert!(b.is_aborted());
    }

    #[test]
    fn outbox_batches_frames_and_drains_after_close() {
        let o = Outbox::default();
        assert!(o.try_send(1, &Frame::ResponseEnd));
        assert!(o.try_send(2, &Frame::ResponseEnd));
        o.close();
        let mut batch = BytesMut::new();
        assert!(o.next_batch(&mut batch));
        assert_eq!(wire::decode(&mut batch).unwrap().unwrap().0, 1);
        assert_eq!(wire::decode(&mut batch).unwrap().unwrap().0, 2);
        assert!(!o.next_batch(&mut batch));
    }

    #[test]
    fn drain_waits_for_streams_in_flight() {
        let c = Conn::default();
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
        });
        c.start_request(7, head).unwrap();
        c.drain();
        assert!(lock(&c.state).exit.is_none());
        let job = c.queue.try_take().unwrap();
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
