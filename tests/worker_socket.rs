//! Upgrade requests at the worker (issue 26): a head with `upgrade` set comes with a
//! socket (SCM_RIGHTS on its first byte, as `WorkerConn::start_upgrade` sends it),
//! which the app gets as `environ["gunicorn.socket"]` and `["werkzeug.socket"]`.
//! The test holds the other end of a socketpair, as the master's relay does, and
//! speaks to the app through it: raw bytes (tests/apps/ws_raw.py) and RFC 6455
//! frames written by hand (tests/apps/ws_echo.py, Flask-Sock).

#[path = "common/worker.rs"]
mod launcher;

use bytes::BytesMut;
use ferricorn::log_record::{Level, Record};
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

/// The app's 101 head and its line of facts about the socket (ws_raw.py `/kept`).
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
    let mut w = start("ws_raw:app", &[]);
    let (mut peer, fd) = pair();
    let s = send_upgrade(&mut w, upgrade_head("/kept", "id=1"), fd);
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
    // ws_raw.py `/kept` keeps every socket object in a global: without the worker's
    // close() after the response the fd stays open and the peer never sees EOF.
    let mut w = start("ws_raw:app", &[]);
    for id in 0..3 {
        let (mut peer, fd) = pair();
        let s = send_upgrade(&mut w, upgrade_head("/kept", &format!("id={id}")), fd);
        report(&mut peer);
        finish(&mut peer);
        assert_eq!(w.response(s).status, Some(200));
    }
}

#[test]
fn passed_sockets_stay_in_step_with_their_heads() {
    let mut w = start("ws_raw:app", &["--threads", "4"]);
    let plain = |w: &mut Worker| w.send_request(head("GET", "/plain", ""), &[]);
    let mut peers = Vec::new();
    let mut streams = vec![(plain(&mut w), None)];
    let (peer, fd) = pair();
    streams.push((
        send_upgrade(&mut w, upgrade_head("/kept", "id=a"), fd),
        Some(0),
    ));
    peers.push(("a", peer));
    streams.push((plain(&mut w), None));
    // Two upgrades back to back, the second fd sent early: it rides on the rest of
    // the first head (with the whole second head), so it is queued before the first
    // head is even complete. Each head must still take its own.
    let (peer_b, fd_b) = pair();
    let (peer_c, fd_c) = pair();
    let (sb, sc) = (w.stream(), w.stream());
    let mut out = encoded(sb, upgrade_head("/kept", "id=b"));
    out.extend_from_slice(&encoded(sc, upgrade_head("/kept", "id=c")));
    let sock = w.sock.as_ref().unwrap();
    send_fd(sock, &out[..1], &fd_b);
    send_fd(sock, &out[1..], &fd_c);
    drop((fd_b, fd_c));
    streams.push((sb, Some(1)));
    streams.push((sc, Some(2)));
    peers.push(("b", peer_b));
    peers.push(("c", peer_c));
    streams.push((plain(&mut w), None));
    for (id, peer) in &mut peers {
        assert!(report(peer).ends_with(&format!("query='id={id}'\n")));
        echo(peer, id.as_bytes());
    }
    for (_, peer) in &mut peers {
        finish(peer);
    }
    for (s, upgrade) in streams {
        let r = w.response(s);
        assert_eq!(r.status, Some(200));
        if upgrade.is_none() {
            assert_eq!(r.text(), "socket=False");
        }
    }
}

#[test]
fn an_upgrade_holds_its_thread_until_the_app_returns() {
    let mut w = start("ws_raw:app", &["--threads", "1"]);
    let (mut peer, fd) = pair();
    let s = send_upgrade(&mut w, upgrade_head("/kept", ""), fd);
    report(&mut peer);
    let after = w.send_request(head("GET", "/plain", ""), &[]);
    echo(&mut peer, b"still here");
    finish(&mut peer);
    // The one thread ran the upgrade to its end before the request behind it.
    let (first, _) = w.recv();
    assert_eq!(first, s);
    assert_eq!(w.response(after).text(), "socket=False");
}

/// The worker's records (it runs without --log-fd, so they are on its stderr).
fn records(w: &Worker) -> Vec<Record> {
    w.log().lines().filter_map(Record::decode).collect()
}

#[test]
fn an_os_error_after_taking_the_socket_is_a_debug_line_not_a_traceback() {
    let mut w = start("ws_raw:app", &[]);
    let (mut peer, fd) = pair();
    let s = send_upgrade(&mut w, upgrade_head("/raise", ""), fd);
    read_until(&mut peer, b"\r\n\r\n");
    finish(&mut peer);
    assert_eq!(w.response(s).status, Some(500));
    w.wait_log("ConnectionError: the peer went away");
    // Other errors, an OSError that is not the connection's included, still get
    // their traceback.
    for path in ["/fail", "/missing"] {
        let (mut peer, fd) = pair();
        let s = send_upgrade(&mut w, upgrade_head(path, ""), fd);
        read_until(&mut peer, b"\r\n\r\n");
        finish(&mut peer);
        assert_eq!(w.response(s).status, Some(500));
    }
    w.wait_log("FileNotFoundError");
    let records = records(&w);
    let quiet: Vec<&Record> = records
        .iter()
        .filter(|r| r.message.contains("ConnectionError"))
        .collect();
    assert_eq!(quiet.len(), 1, "{records:?}");
    assert_eq!(quiet[0].level, Level::Debug);
    assert!(!quiet[0].message.contains("Traceback"), "{quiet:?}");
    for error in ["ValueError", "FileNotFoundError"] {
        let loud = records.iter().find(|r| r.message.contains(error));
        let loud = loud.unwrap_or_else(|| panic!("no record of the {error}"));
        assert_eq!(loud.level, Level::Error);
        assert!(loud.message.contains("Traceback"), "{loud:?}");
    }
}

/// One RFC 6455 frame from a client: FIN, `opcode`, masked (RFC 6455 §5.3).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// One short unmasked frame from the server: (first byte, payload).
fn server_frame(peer: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut hdr = [0u8; 2];
    peer.read_exact(&mut hdr).unwrap();
    assert_eq!(hdr[1] & 0x80, 0, "a server's frames are not masked");
    let mut payload = vec![0u8; usize::from(hdr[1] & 0x7f)];
    peer.read_exact(&mut payload).unwrap();
    (hdr[0], payload)
}

#[test]
fn flask_sock_echoes_through_the_socket() {
    let mut w = start("ws_echo:app", &[]);
    let (mut peer, fd) = pair();
    let s = send_upgrade(&mut w, upgrade_head("/echo", ""), fd);
    let head = read_until(&mut peer, b"\r\n\r\n").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    for text in ["hello", "wörld"] {
        peer.write_all(&client_frame(0x1, text.as_bytes())).unwrap();
        assert_eq!(server_frame(&mut peer), (0x81, text.as_bytes().to_vec()));
    }
    peer.write_all(&client_frame(0x2, &[0, 1, 2, 255])).unwrap();
    assert_eq!(server_frame(&mut peer), (0x82, vec![0, 1, 2, 255]));
    // Close with 1000: the app answers the close, returns, and the socket ends.
    peer.write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .unwrap();
    let (op, payload) = server_frame(&mut peer);
    assert_eq!(op, 0x88);
    assert_eq!(payload.get(..2), Some(&1000u16.to_be_bytes()[..]));
    finish(&mut peer);
    assert_eq!(w.response(s).status, Some(200));
    assert!(!w.log().contains("Traceback"), "{}", w.log());
}
