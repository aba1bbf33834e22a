//! The rules of the HTTP/1 client-close watch (issue 27), as pure functions, for
//! our HTTP/1 connection (`http1::conn`, `Conn::poll_side`).
//!
//! While an answer is owed the request being served reads nothing more, so a client
//! that leaves during an idle stream or a long poll would hold its worker until the
//! next write. The watch reads for it, through the guard:
//!
//! - It reads while an answer is owed and less than [`READ_AHEAD`] validated bytes
//!   wait to be served, whatever they are (a pipelined request's head, part of one, a
//!   body, bytes after a WebSocket candidate's head): a byte the client pipelined no
//!   longer hides its later close. Past that it stops reading, and the client's further
//!   bytes wait in the kernel (back-pressure); head bytes the guard holds back are
//!   bounded by the head limits (431/414 beyond). What was read is served in order.
//! - A read that ends the input with an answer owed (EOF, including a half-close:
//!   `shutdown(SHUT_WR)`, TLS close_notify, a bare FIN; or an error such as a reset) is
//!   a client that left: the request ends, as nginx ends it with its default
//!   `proxy_ignore_client_abort off` (measured: 499 for every request followed at once
//!   by a half-close, fast answer or not; see the README, "client close").
//! - A refusal of what the client pipelined ends the input but is no close: the
//!   connection answers what came before, then the guard's 4xx is written.
//! - Once the read-ahead is full, a FIN or reset waits in the kernel behind bytes the
//!   watch no longer reads; so every [`PEER_PROBE_EVERY`] it asks the socket itself
//!   ([`PeerEnded`]: `poll` for POLLRDHUP, POLLHUP, POLLERR, which nginx's epoll sees as
//!   EPOLLRDHUP), and a peer that ended is gone as above. Without it, 16 KiB pipelined
//!   before leaving held a worker's place for good.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// How many validated bytes the watch reads ahead of the request served, at most (plus one read).
pub(crate) const READ_AHEAD: usize = 8 * 1024;

/// How often a watch whose read-ahead is full asks the socket whether the peer left.
pub(crate) const PEER_PROBE_EVERY: Duration = Duration::from_secs(1);

/// A client stream whose socket can tell, without reading, that the peer ended its
/// side or reset the connection, even behind unread bytes.
pub(crate) trait PeerEnded {
    fn peer_ended(&self) -> bool;
}

/// POLLRDHUP (the peer's FIN was received), POLLHUP or POLLERR (a reset) on `fd`,
/// asked without waiting; a failed `poll` says nothing.
fn fd_peer_ended(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // Only POLLRDHUP is asked for; POLLHUP and POLLERR are always reported. nix has
    // no name for POLLRDHUP (and cannot decode it back): any event counts.
    let mut fds = [PollFd::new(
        fd,
        PollFlags::from_bits_retain(libc::POLLRDHUP),
    )];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

impl PeerEnded for tokio::net::TcpStream {
    fn peer_ended(&self) -> bool {
        fd_peer_ended(self.as_fd())
    }
}

impl PeerEnded for tokio::net::UnixStream {
    fn peer_ended(&self) -> bool {
        fd_peer_ended(self.as_fd())
    }
}

impl<S: AsFd> PeerEnded for crate::proxy_protocol::Prefixed<S> {
    fn peer_ended(&self) -> bool {
        fd_peer_ended(self.as_fd())
    }
}

impl<IO: PeerEnded> PeerEnded for tokio_rustls::server::TlsStream<IO> {
    fn peer_ended(&self) -> bool {
        self.get_ref().0.peer_ended()
    }
}

impl<T: PeerEnded + ?Sized> PeerEnded for Box<T> {
    fn peer_ended(&self) -> bool {
        (**self).peer_ended()
    }
}

/// What the watch knows at a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    /// The front has not finished every request the guard passed.
    pub answer_owed: bool,
    /// The input already ended (EOF, a refusal, a timer).
    pub input_ended: bool,
    /// Validated bytes read and not yet served (or held for a tunnel).
    pub read_ahead: usize,
}

impl Watch {
    /// Whether to read from the client now.
    pub(crate) fn reads(&self) -> bool {
        self.answer_owed && !self.input_ended && self.read_ahead < READ_AHEAD
    }

    /// Whether the watch stopped reading with an answer owed: the socket is probed.
    pub(crate) fn probes_peer(&self) -> bool {
        self.answer_owed && !self.input_ended && self.read_ahead >= READ_AHEAD
    }
}

/// What one read by the watch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Bytes, validated and kept for the requests after.
    Bytes,
    /// The guard refused what the client sent.
    Refused,
    /// EOF (the client closed or half-closed its side) or a read error (a reset, a
    /// TLS record without close_notify).
    End,
}

/// What the watch does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Read on while [`Watch::reads`] says so.
    Continue,
    /// The input ended without the client leaving: the refusal is answered in order.
    InputEnded,
    /// The client left with an answer owed: end the connection.
    Gone,
}

/// The verdict on what a read found while an answer is owed.
pub(crate) fn verdict(found: Found) -> Verdict {
    match found {
        Found::Bytes => Verdict::Continue,
        Found::Refused => Verdict::InputEnded,
        Found::End => Verdict::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(answer_owed: bool, input_ended: bool, read_ahead: usize) -> Watch {
        Watch {
            answer_owed,
            input_ended,
            read_ahead,
        }
    }

    #[test]
    fn reads_only_while_an_answer_is_owed_and_the_input_is_open() {
        assert!(watch(true, false, 0).reads());
        assert!(
            !watch(false, false, 0).reads(),
            "the connection reads itself then"
        );
        assert!(!watch(true, true, 0).reads());
    }

    #[test]
    fn pipelined_bytes_do_not_stop_the_watch_until_the_read_ahead_is_full() {
        assert!(watch(true, false, 1).reads());
        assert!(watch(true, false, READ_AHEAD - 1).reads());
        assert!(!watch(true, false, READ_AHEAD).reads(), "back-pressure");
        assert!(!watch(true, false, 10 * READ_AHEAD).reads());
    }

    #[test]
    fn the_socket_is_probed_only_while_reading_stopped_with_an_answer_owed() {
        assert!(
            !watch(true, false, READ_AHEAD - 1).probes_peer(),
            "reads see it"
        );
        assert!(watch(true, false, READ_AHEAD).probes_peer());
        assert!(!watch(false, false, READ_AHEAD).probes_peer());
        assert!(!watch(true, true, READ_AHEAD).probes_peer());
    }

    #[tokio::test]
    async fn a_peer_that_closed_behind_unread_bytes_is_seen_by_the_probe() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        std::io::Write::write_all(&mut client, &[b'x'; 64 * 1024]).unwrap();
        server.readable().await.unwrap();
        assert!(!server.peer_ended(), "unread bytes are no close");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !server.peer_ended() {
            assert!(
                std::time::Instant::now() < deadline,
                "FIN behind unread bytes unseen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn any_end_of_input_with_an_answer_owed_is_a_client_that_left() {
        assert_eq!(
            verdict(Found::End),
            Verdict::Gone,
            "half-close too: nginx 499s it"
        );
        assert_eq!(verdict(Found::Refused), Verdict::InputEnded);
        assert_eq!(verdict(Found::Bytes), Verdict::Continue);
    }
}
