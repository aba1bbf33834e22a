//! One request's body as it arrives: the leader pushes the bytes the master sends
//! (`Body::push`, `end`, `abort`), `wsgi.input` takes them (`try_take`, or
//! `stream::Conn::take_blocking` when it must wait). `Want` is what a read asks for.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Threads blocked in `wait_change`: only then does a push need a wake-up.
    waiters: usize,
    /// Set when the socket has no reader: the waiter should become the leader.
    nudged: bool,
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

/// One request's body as it arrives: the leader pushes, `wsgi.input` takes.
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

    /// Wakes a waiting reader, if there is one (a notify is a syscall even with
    /// nobody waiting, and the common case has nobody waiting).
    fn notify(&self, st: MutexGuard<'_, BodyState>) {
        let waiting = st.waiters > 0;
        drop(st);
        if waiting {
            self.changed.notify_all();
        }
    }

    pub fn push(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        st.buffered += data.len();
        st.chunks.push_back(data);
        self.notify(st);
    }

    pub fn end(&self) {
        let mut st = lock(&self.state);
        st.ended = true;
        self.notify(st);
    }

    /// The front cut the stream: reads fail from now on and writes are dropped.
    pub fn abort(&self) {
        let mut st = lock(&self.state);
        st.aborted = true;
        st.chunks.clear();
        st.buffered = 0;
        self.notify(st);
    }

    /// The input ended with this body incomplete: nothing more will come.
    pub(crate) fn abort_if_incomplete(&self) {
        let incomplete = {
            let st = lock(&self.state);
            !st.at_end()
        };
        if incomplete {
            self.abort();
        }
    }

    /// Asks the thread waiting on this body to take over the socket.
    pub(crate) fn nudge(&self) {
        let mut st = lock(&self.state);
        st.nudged = true;
        self.notify(st);
    }

    pub fn is_aborted(&self) -> bool {
        lock(&self.state).aborted
    }

    /// Whether `want` can be answered now (bytes, the end, or an abort).
    pub(crate) fn settled(&self, want: Want) -> bool {
        let st = lock(&self.state);
        st.aborted || st.ready(want).is_some()
    }

    /// Takes what `want` asks for if it is there; `Ok(None)` means the caller must
    /// wait (with the GIL released) in `Conn::take_blocking`.
    pub fn try_take(&self, want: Want) -> Result<Option<Vec<Bytes>>, Aborted> {
        let mut st = lock(&self.state);
        if st.aborted {
            return Err(Aborted);
        }
        Ok(st.ready(want).map(|n| st.take(n)))
    }

    /// Waits until `want` is settled, this thread is nudged, or `poll` passes: the
    /// timeout is the safety net for a nudge that went to a thread that no longer
    /// needed it (see `Conn::take_blocking`).
    pub(crate) fn wait_change(&self, want: Want, poll: Duration) {
        let mut st = lock(&self.state);
        if st.aborted || st.ready(want).is_some() || std::mem::take(&mut st.nudged) {
            return;
        }
        st.waiters += 1;
        st = self
            .changed
            .wait_timeout(st, poll)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        st.waiters -= 1;
        st.nudged = false;
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
}
