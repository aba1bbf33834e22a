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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// Room for this many fds per read. A head carries one, and Linux ends a
/// unix-stream `recvmsg` right after a segment with fds, so more never come at
/// once; the spare room only keeps a misbehaving master from having fds dropped.
const FDS_PER_READ: usize = 8;

/// One `recvmsg` that does not wait (MSG_DONTWAIT: the descriptor itself stays
/// blocking, as other threads write to it). Passed fds go to `conn`'s queue before
/// the bytes are returned, closed at exec like every fd Python makes. Fds cut for
/// lack of room (MSG_CTRUNC) are `InvalidData`: the fds and heads are out of step.
fn recv_nowait(conn: &Conn, tmp: &mut [u8]) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = [0u8; cmsg_room()];
    let mut iov = [std::io::IoSliceMut::new(tmp)];
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<()>(conn.socket.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let n = msg.bytes;
    let cmsgs = msg
        .cmsgs()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            conn.push_passed(fds.into_iter().map(own));
        }
    }
    Ok(n)
}

/// CMSG_SPACE for `FDS_PER_READ` fds, on the stack (what `nix::cmsg_space!`
/// computes before it allocates a Vec).
const fn cmsg_room() -> usize {
    nix::sys::socket::cmsg_space::<[RawFd; FDS_PER_READ]>()
}

/// An fd the kernel just installed for us from SCM_RIGHTS.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was created in our table by this `recvmsg` and is referred to
    // nowhere else: we are its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
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
