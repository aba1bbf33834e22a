//! Upgrade requests at the worker (issue 26): a head with `upgrade` set comes with a
//! socket (SCM_RIGHTS on its first byte, as `WorkerConn::start_upgrade` sends it),
//! which the app gets as `environ["gunicorn.socket"]` and `["werkzeug.socket"]`.
//! The test holds the other end of a socketpair, as the master's relay does, and
//! speaks to the app through it: raw bytes (tests/apps/ws_raw_app.py) and RFC 6455
//! frames written by hand (tests/apps/ws_flask_app.py, Flask-Sock).

#[path = "common/worker.rs"]
mod launcher;

use bytes::BytesMut;
use ferricorn::wire::{self, Frame, RequestHead};
use launcher::*;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

fn start(app: &str, extra: &[&str]) -> Worker {
    let dir = apps();
    let mut args = vec!["--app", app, "--chdir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Worker::start(&args)
}

/// The handshake's fields as the front passes them for an upgrade request.
fn upgrade_head(path: &str, query: &str) -> RequestHead {
    let mut h = head("GET", path, query);
    h.upgrade = true;
    h.headers = [
        ("host", "example.test"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec().into(), v.as_bytes().to_vec().into()))
    .collect();
    h
}

/// `bytes` in one `sendmsg` with `fd` in SCM_RIGHTS.
fn send_fd(sock: &UnixStream, bytes: &[u8], fd: &OwnedFd) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let n = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(n, bytes.len());
}

/// A socketpair: the test's end (read timeout set) and the end for the worker,
/// non-blocking as a tokio master may leave it (the worker must make it blocking).
fn pair() -> (UnixStream, OwnedFd) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(DEADLINE)).unwrap();
    theirs.set_nonblocking(true).unwrap();
    (ours, theirs.into())
}

/// An upgrade request's head and end, encoded, on stream `s`.
fn encoded(s: u32, h: RequestHead) -> BytesMut {
    let mut out = BytesMut::new();
    wire::encode(s, &Frame::RequestHead(Box::new(h)), &mut out);
    wire::encode(s, &Frame::RequestEnd, &mut out);
    out
}

/// Sends an upgrade request as the master does: the head's first byte with the
/// socket, then the rest; our copy of the socket is closed.
fn send_upgrade(w: &mut Worker, h: RequestHead, fd: OwnedFd) -> u32 {
    let s = w.stream();
    let out = encoded(s, h);
    send_fd(w.sock.as_ref().unwrap(), &out[..1], &fd);
    drop(fd);
    w.sock.as_mut().unwrap().write_all(&out[1..]).unwrap();
    s
}

/// Reads from the app's side up to and including `end`.
fn read_until(peer: &mut UnixStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        match peer.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!("reading the app's bytes: {other:?} after {got:?}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The app's 101 head and its report line (ws_raw_app.py `/echo`).
fn report(peer: &mut UnixStream) -> String {
    let head = read_until(peer, b"\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    read_until(peer, b"\n")
}

/// Sends `data` and reads it back.
fn echo(peer: &mut UnixStream, data: &[u8]) {
    peer.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// Shuts our side; the app ends its echo and the worker closes the socket: EOF.
fn finish(peer: &mut UnixStream) {
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest)
        .expect("EOF from the worker's close()");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn the_app_gets_one_blocking_unix_socket_under_both_keys() {
    let mut w = start("ws_raw_app:app", &[]);
    let (mut peer, fd) = pair();
    let s = send_upgrade(&mut w, upgrade_head("/echo", "id=1"), fd);
    assert_eq!(
        report(&mut peer),
        "same=True unix=True blocking=True upgrade='websocket' \
         connection='Upgrade' input=b'' query='id=1'\n"
    );
    echo(&mut peer, b"ping");
    echo(&mut peer, &[7u8; 200_000]);
    finish(&mut peer);
    // The WSGI answer still goes over the wire, for the master to discard.
    let r = w.response(s);
    assert_eq!((r.status, r.end), (Some(200), End::Complete));
    // An ordinary request has no socket.
    assert_eq!(w.get("/plain", "").text(), "socket=False");
}

#[test]
fn the_worker_closes_the_socket_the_app_kept() {
    // ws_raw_app.py keeps every socket object in a global: without the worker's
    // close() after the response the fd stays open and the peer never sees EOF.
    let mut w = start("ws_raw_app:app", &[]);
    for id in 0..3 {
        let (mut peer, fd) = pair();
        let s = send_upgrade(&mut w, upgrade_head("/echo", &format!("id={id}")), fd);
        report(&mut peer);
        finish(&mut peer);
        assert_eq!(w.response(s).status, Some(200));
    }
}
