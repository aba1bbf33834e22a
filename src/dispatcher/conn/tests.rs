//! `WorkerConn` against a test standing in for the worker: the fd an upgrade
//! request carries rides on its head's first byte, and the stream escapes timeouts
//! once exempted.

use super::*;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream as StdStream;

/// A `WorkerConn` as the supervisor makes one; its worker is the returned
/// blocking socket, read by the test.
async fn conn() -> (Arc<WorkerConn>, StdStream, tempfile::TempDir) {
    conn_of(wsgi(1)).await
}

async fn conn_of(capacity: Capacity) -> (Arc<WorkerConn>, StdStream, tempfile::TempDir) {
    let (master, worker) = StdStream::pair().unwrap();
    let ready = wire::Ready {
        protocol: ferricorn_wire::PROTOCOL,
        pid: 7,
        interpreter: wire::Interpreter::default(),
    };
    let mut out = BytesMut::new();
    wire::encode(0, &Frame::Ready(Box::new(ready)), &mut out);
    (&worker).write_all(&out).unwrap();
    master.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let claims = Claims::create(&dir.path().join("claims")).unwrap();
    let (shards, _threads) = crate::shards::Shards::start(1).unwrap();
    let look = super::super::LookAhead {
        depth: 0,
        stall: Duration::from_secs(1),
    };
    let dispatcher = Dispatcher::new(8, Duration::from_secs(1), look);
    let sock = UnixStream::from_std(master).unwrap();
    let (events, _) = mpsc::unbounded_channel();
    let c = WorkerConn::handshake(
        shards.host_worker(),
        sock,
        claims,
        capacity,
        0,
        dispatcher,
        events,
    );
    let c = c.await.unwrap();
    dispatcher.add(c.clone());
    (c, worker, dir)
}

fn wsgi(threads: usize) -> Capacity {
    Capacity {
        slots: threads,
        interface: Interface::Wsgi,
    }
}

fn head() -> RequestHead {
    RequestHead {
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
        upgrade: false,
    }
}

/// One `recvmsg` as the worker does it: the bytes, and the fds that came.
#[allow(unsafe_code)]
fn recv_with_fds(sock: &StdStream) -> (Vec<u8>, Vec<OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    );
    let msg = msg.unwrap();
    let n = msg.bytes;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(got) = cmsg {
            // SAFETY: just installed in our table by this recvmsg, owned by no one else.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    buf.truncate(n);
    (buf, fds)
}

#[tokio::test]
async fn an_upgrade_passes_its_socket_on_its_heads_first_byte_then_escapes_timeouts() {
    let (c, worker, _dir) = conn().await;
    c.send(99, Frame::RequestEnd);
    let (app_end, relay_end) = StdStream::pair().unwrap();
    let lease = Lease {
        conn: c.clone(),
        armed: false,
    };
    let tiny = Some(Duration::from_nanos(1));
    let (s, _rx) = c.start_upgrade(lease, head(), app_end.into(), 1 << 16, tiny);
    c.send(s, Frame::RequestEnd);
    // What the worker reads: the fd comes in the read that ends with the head's
    // first byte (right after the 9-byte RequestEnd queued before it).
    let (bytes, fd) = tokio::task::spawn_blocking(move || {
        let (mut bytes, mut fd) = (Vec::new(), None);
        while bytes.len() < 9 + 1 || fd.is_none() || wire_frames(&bytes).len() < 3 {
            let (got, mut fds) = recv_with_fds(&worker);
            bytes.extend_from_slice(&got);
            if let Some(f) = fds.pop() {
                assert!(fd.is_none() && fds.is_empty(), "exactly one fd");
                assert_eq!(bytes.len(), 9 + 1, "the fd rides on the head's first byte");
                fd = Some(f);
            }
        }
        (bytes, fd.unwrap())
    })
    .await
    .unwrap();
    let frames = wire_frames(&bytes);
    assert!(matches!(&frames[0], (99, Frame::RequestEnd)));
    assert!(matches!(&frames[1], (id, Frame::RequestHead(h)) if *id == s && h.upgrade));
    assert!(matches!(&frames[2], (id, Frame::RequestEnd) if *id == s));
    // The fd is the app's end, and the master kept no copy: dropping ours is EOF.
    let mut theirs = std::fs::File::from(fd);
    theirs.write_all(b"hi").unwrap();
    drop(theirs);
    let mut relayed = Vec::new();
    (&relay_end).read_to_end(&mut relayed).unwrap();
    assert_eq!(relayed, b"hi");
    // Timed like any request (its route's limit, or the default) until taken.
    assert_eq!(c.silent_streams(None), vec![s]);
    assert_eq!(c.limits(None), vec![tiny]);
    c.exempt_from_timeout(s);
    assert!(c.silent_streams(None).is_empty());
    assert!(c.silent_streams(tiny).is_empty());
    assert_eq!(c.limits(tiny), vec![None]);
}

fn wire_frames(bytes: &[u8]) -> Vec<(u32, Frame)> {
    let mut buf = BytesMut::from(bytes);
    std::iter::from_fn(|| wire::decode(&mut buf).unwrap()).collect()
}

fn asgi(slots: usize) -> Capacity {
    Capacity {
        slots,
        interface: Interface::Asgi,
    }
}

/// Frames the worker reads until `n` came.
async fn worker_reads(worker: &StdStream, n: usize) -> Vec<(u32, Frame)> {
    let worker = worker.try_clone().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        while wire_frames(&bytes).len() < n {
            bytes.extend_from_slice(&recv_with_fds(&worker).0);
        }
        wire_frames(&bytes)
    })
    .await
    .unwrap()
}

fn worker_sends(mut worker: &StdStream, stream: u32, frames: &[Frame]) {
    let mut out = BytesMut::new();
    for f in frames {
        wire::encode(stream, f, &mut out);
    }
    worker.write_all(&out).unwrap();
}

/// Issue 27: an ASGI request past its timeout is answered at once and its worker
/// told `Cancel`; the stream keeps its slot (no new request gets it) until the
/// worker ends it, and is overdue once its grace has passed.
#[tokio::test]
async fn an_asgi_stream_past_its_timeout_is_cancelled_and_keeps_its_slot_until_ended() {
    use crate::dispatcher::response_spool::Interruption;
    let (c, worker, dir) = conn_of(asgi(1)).await;
    let dispatcher = c.dispatcher();
    let lease = dispatcher.acquire(false, false, None).await.unwrap();
    let tiny = Some(Duration::from_nanos(1));
    let (s, mut rx) = c.start_request(lease, head(), 1 << 16, tiny);
    assert!(Claims::open(&dir.path().join("claims")).unwrap().claim(s));
    assert_eq!(c.silent_streams(None), vec![s]);
    let now = Instant::now();
    let grace = Duration::from_secs(5);
    assert!(c.cancel_stream(s, now, grace));
    assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
    assert_eq!(rx.interruption(), Some(Interruption::TimedOut), "its 504");
    let frames = worker_reads(&worker, 2).await;
    assert!(
        matches!(frames[1], (id, Frame::Cancel) if id == s),
        "{frames:?}"
    );
    // Answered once, cancelled once, and its slot kept.
    assert!(c.silent_streams(None).is_empty());
    assert!(!c.cancel_stream(s, now, grace));
    assert_eq!(c.in_flight(), 1);
    let second = tokio::time::timeout(
        Duration::from_millis(200),
        dispatcher.acquire(false, false, None),
    );
    assert!(
        second.await.is_err(),
        "the cancelled stream's slot was given away"
    );
    assert!(c.overdue_cancels(now + grace / 2).is_empty());
    assert_eq!(c.overdue_cancels(now + grace), vec![s]);
    // The worker's end of the stream acknowledges it: the slot is free.
    worker_sends(
        &worker,
        s,
        &[Frame::Abort(Bytes::from_static(b"cancelled"))],
    );
    let lease = dispatcher.acquire(false, false, None).await.unwrap();
    assert_eq!(c.in_flight(), 0);
    assert!(c.overdue_cancels(now + grace).is_empty());
    drop(lease);
}

/// Issue 27: an ASGI response held past its limit is paused in the worker and
/// resumed once its client took it below half; a paused stream never times out.
#[tokio::test]
async fn an_asgi_response_is_paused_past_its_limit_and_resumed_below_half() {
    let (c, worker, _dir) = conn_of(asgi(4)).await;
    let lease = c.dispatcher().acquire(false, false, None).await.unwrap();
    let tiny = Some(Duration::from_nanos(1));
    let (s, mut rx) = c.start_request(lease, head(), 100, tiny);
    let chunk = || Frame::ResponseBody(Bytes::from_static(&[b'x'; 40]));
    let head = Frame::ResponseHead(Box::new(wire::ResponseHead {
        status: 200,
        headers: vec![],
    }));
    worker_sends(&worker, s, &[head, chunk(), chunk(), chunk()]);
    let frames = worker_reads(&worker, 2).await;
    assert!(
        matches!(frames[1], (id, Frame::Pause) if id == s),
        "{frames:?}"
    );
    assert!(
        c.silent_streams(None).is_empty(),
        "paused: silent by our order"
    );
    // Taken down to 80, then 40 held: resumed at half the limit.
    assert!(matches!(rx.recv().await, Some(Frame::ResponseHead(_))));
    assert!(matches!(rx.recv().await, Some(Frame::ResponseBody(_))));
    c.response_taken(s);
    assert!(matches!(rx.recv().await, Some(Frame::ResponseBody(_))));
    c.response_taken(s);
    let frames = worker_reads(&worker, 1).await;
    assert!(
        matches!(frames[0], (id, Frame::Resume) if id == s),
        "{frames:?}"
    );
    assert_eq!(c.silent_streams(None), vec![s], "timed again once resumed");
}

/// A WSGI worker is never sent Pause: its responses spool as before.
#[tokio::test]
async fn a_wsgi_response_is_never_paused() {
    let (c, worker, _dir) = conn_of(wsgi(1)).await;
    let lease = c.dispatcher().acquire(false, false, None).await.unwrap();
    let (s, _rx) = c.start_request(lease, head(), 100, None);
    let chunk = || Frame::ResponseBody(Bytes::from_static(&[b'x'; 400]));
    worker_sends(&worker, s, &[chunk(), chunk()]);
    c.send(s, Frame::RequestEnd);
    let frames = worker_reads(&worker, 2).await;
    assert!(
        matches!(frames[1], (id, Frame::RequestEnd) if id == s),
        "{frames:?}"
    );
}
