//! The worker's I/O on the master's Unix socket, done by the Python threads
//! themselves (see `stream` for why there is no reader or writer thread). The
//! leader reads big buffers, splits them into frames and routes each one: heads to
//! the job queue, body/end/abort to that stream's `Body`. Any thread writes its own
//! encoded frames with one `write_all` under a short lock, so frames of different
//! streams never interleave mid-frame. Every read is a `recvmsg` with room for fds:
//! the master passes an upgrade request's socket with the first byte of its head,
//! and a plain `recv` would close it unseen.

use crate::log::wlog;
use crate::stream::{Conn, Exit, Fatal, ReadBuf, Until};

use crate::wire::{self, Frame};
use bytes::BytesMut;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads and routes frames until `until` holds (false) or the input ended (true:
/// EOF, a read error or a protocol error; the exit is already decided). Called by
/// the leader only, with the GIL released.
pub fn lead(conn: &Conn, until: Until<'_>) -> bool {
    let mut rb = lock(&conn.read_buf);
    loop {
        // Route everything already buffered first: the master usually sends the
        // head, the body and the end in one write, and they all belong in place
        // before the app runs.
        let mut got_head = false;
        loop {
            match wire::decode(&mut rb.buf) {
                Ok(Some((stream, frame))) => {
                    got_head |= matches!(frame, Frame::RequestHead(_));
                    if let Err(e) = route(conn, stream, frame) {
                        conn.exit(Exit::Fatal(e));
                        return true;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.exit(Exit::Fatal(e.into()));
                    return true;
                }
            }
        }
        let satisfied = match &until {
            Until::Job => got_head,
            Until::Body(body, want) => body.settled(*want),
            Until::Drained => false,
        };
        if satisfied {
            return false;
        }
        let ReadBuf { buf, tmp } = &mut *rb;
        let read = match until {
            Until::Drained => recv_nowait(conn, tmp),
            _ => recv_when_readable(conn, tmp),
        };
        match read {
            Ok(0) => {
                conn.input_ended();
                return true;
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                conn.exit(Exit::Fatal(Fatal::FdsTruncated));
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                wlog!("reading from the master failed: {e}");
                conn.exit(Exit::MasterGone);
                return true;
            }
        }
    }
}

/// One non-blocking read; passed fds go to `conn`'s queue (`crate::fds`).
fn recv_nowait(conn: &Conn, tmp: &mut [u8]) -> std::io::Result<usize> {
    crate::fds::recv_nowait(&conn.socket, tmp, |fds| conn.push_passed(fds))
}

/// A blocking read that sleeps in `poll(POLLIN)` rather than in `recv`: a thread asleep
/// in `recv` is also woken each time the master reads our responses (the socket's
/// write-space wake-up), a context switch per request for nothing; `poll` filters
/// wake-ups by event.
fn recv_when_readable(conn: &Conn, tmp: &mut [u8]) -> std::io::Result<usize> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        match recv_nowait(conn, tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let mut fds = [PollFd::new(conn.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn route(conn: &Conn, stream: u32, frame: Frame) -> Result<(), Fatal> {
    match frame {
        Frame::RequestHead(head) => conn.start_request(stream, head),
        Frame::RequestBody(data) => {
            if let Some(body) = conn.body(stream) {
                body.push(data);
            }
            Ok(())
        }
        Frame::RequestEnd => {
            if let Some(body) = conn.body(stream) {
                body.end();
            }
            Ok(())
        }
        Frame::Abort(_) => {
            if let Some(body) = conn.body(stream) {
                body.abort();
            }
            Ok(())
        }
        other => Err(Fatal::UnexpectedFrame(other.name())),
    }
}

impl Conn {
    /// Writes encoded frames (and clears `out`). May block on a full socket: call
    /// it with the GIL released. After a failed write, frames are dropped: the
    /// master is gone and the worker is exiting.
    pub fn write_out(&self, out: &mut BytesMut) {
        if out.is_empty() {
            return;
        }
        if !self.write_failed.load(Ordering::Relaxed) {
            let _g = lock(&self.write_lock);
            if let Err(e) = (&self.socket).write_all(out) {
                self.write_failed.store(true, Ordering::Relaxed);
                wlog!("writing to the master failed: {e}");
                self.exit(Exit::MasterGone);
            }
        }
        out.clear();
    }

    /// Encodes and writes one frame now (Ready).
    pub fn send_now(&self, stream: u32, frame: &Frame) {
        let mut out = BytesMut::new();
        wire::encode(stream, frame, &mut out);
        self.write_out(&mut out);
    }
}
