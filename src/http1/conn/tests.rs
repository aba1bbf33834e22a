//! The driver over an in-memory stream with a small service: pipelining, refusals
//! after the answers owed, bodies, `Expect`, HTTP/1.0, the client-close watch, the
//! hand-back of an HTTP/2 connection.

use super::*;
use crate::net::RawTarget;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// An in-memory pipe has no socket to ask: its peer's end is seen by reading.
impl crate::guard::client_close::PeerEnded for DuplexStream {
    fn peer_ended(&self) -> bool {
        false
    }
}
use tokio_util::sync::CancellationToken;

const TIMEOUTS: ConnTimeouts = ConnTimeouts {
    idle: Duration::from_secs(5),
    head: Duration::from_secs(5),
    write: Duration::from_secs(5),
};

/// `METHOD target body` (the raw target when it differs), or 400 on a body error.
async fn echo(req: Request<ClientBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = match req.extensions().get::<RawTarget>() {
        Some(RawTarget(raw)) => String::from_utf8_lossy(raw).into_owned(),
        None => req.uri().to_string(),
    };
    let method = req.method().clone();
    let text = match req.into_body().collect().await {
        Ok(body) => format!(
            "{method} {target} {}",
            String::from_utf8_lossy(&body.to_bytes())
        ),
        Err(e) => {
            let mut resp = Response::new(Full::new(Bytes::from(e.to_string())));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(resp);
        }
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

fn start<S, B>(service: S) -> (DuplexStream, tokio::task::JoinHandle<Ended<DuplexStream>>)
where
    S: Service<B> + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    let (client, server) = tokio::io::duplex(1 << 16);
    let activity = Activity::new(CancellationToken::new());
    let limits = GuardLimits::default();
    let task = tokio::spawn(serve(server, limits, TIMEOUTS, service, activity));
    (client, task)
}

/// Sends `request`, then reads until the server closes.
async fn exchange(request: &[u8]) -> String {
    let (mut client, task) = start(tower::service_fn(echo));
    client.write_all(request).await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(matches!(task.await.unwrap(), Ended::Closed));
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(response: &str) -> Vec<&str> {
    response
        .match_indices("HTTP/1.")
        .map(|(i, _)| &response[i + 9..i + 12])
        .collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_then_the_refusal() {
    let out = exchange(
        b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
          POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
          GET /d HTTP/1.1\r\nBad Field\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), ["200", "200", "200", "400"], "{out}");
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s} in {out}"));
    assert!(at("GET /a ") < at("POST /b abc") && at("POST /b abc") < at("POST /c de"));
    assert!(out.ends_with("connection: close\r\n\r\n") || out.contains("Bad Request"));
}

#[tokio::test]
async fn a_refusal_inside_a_body_reaches_the_service_as_a_body_error() {
    let out =
        exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n")
            .await;
    assert_eq!(statuses(&out), ["400"], "the service's answer only: {out}");
    assert!(out.contains("malformed request body framing"), "{out}");
}

#[tokio::test]
async fn http10_keeps_the_connection_only_when_asked() {
    let out = exchange(
        b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.0 200 OK").count(), 2, "{out}");
    assert_eq!(out.matches("connection: keep-alive").count(), 1, "{out}");
    assert!(!out.contains("GET /3"), "{out}");
}

#[tokio::test]
async fn targets_http_refuses_reach_the_service_as_sent() {
    let out = exchange(
        b"GET /q?a=\"b\"&<c> HTTP/1.1\r\n\r\nCONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    )
    .await;
    assert!(out.contains("GET /q?a=\"b\"&<c> "), "{out}");
    assert!(out.contains("CONNECT [::1]:443 "), "{out}");
}

#[tokio::test]
async fn a_body_the_service_does_not_read_is_skipped_once_it_all_came() {
    let ignore = tower::service_fn(|_req: Request<ClientBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let (mut client, _task) = start(ignore);
    client
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert_eq!(statuses(&out), ["200", "200"], "{out}");
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
}

#[tokio::test]
async fn a_body_not_read_nor_received_ends_the_connection_after_the_answer() {
    let refuse = tower::service_fn(|_req: Request<ClientBody>| async {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"too big")));
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        Ok::<_, Infallible>(resp)
    });
    let (mut client, task) = start(refuse);
    client
        .write_all(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "no 100 Continue first: {out}"
    );
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(matches!(task.await.unwrap(), Ended::Closed));
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_body_is_first_read() {
    let (mut client, _task) = start(tower::service_fn(echo));
    client
        .write_all(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 64];
    let n = client.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"hi").await.unwrap();
    let n = client.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn a_client_eof_with_an_answer_pending_drops_the_request() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let never = tower::service_fn(move |_req: Request<ClientBody>| {
        let guard = DropFlag(flag.clone());
        async move {
            std::future::pending::<()>().await;
            drop(guard);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let (mut client, task) = start(never);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty());
    assert!(matches!(task.await.unwrap(), Ended::Closed));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the request's future was dropped"
    );
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_refusal_pipelined_behind_a_pending_answer_is_not_a_close() {
    let slow = tower::service_fn(|req: Request<ClientBody>| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        echo(req).await
    });
    let (mut client, _task) = start(slow);
    client
        .write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    client
        .write_all(b"GET /3 HTTP/1.1\r\nBad Field\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert_eq!(statuses(&out), ["200", "200", "400"], "{out}");
}

#[tokio::test]
async fn the_http2_preface_is_handed_back_with_what_came_after() {
    let (mut client, task) = start(tower::service_fn(echo));
    let bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    client.write_all(&bytes[..10]).await.unwrap();
    client.write_all(&bytes[10..]).await.unwrap();
    match task.await.unwrap() {
        Ended::Http2(_, read) => assert_eq!(&read[..], &bytes[..]),
        Ended::Closed => panic!("closed"),
    }
}

#[tokio::test]
async fn a_slow_head_gets_408() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let t = ConnTimeouts {
        head: Duration::from_millis(100),
        ..TIMEOUTS
    };
    let activity = Activity::new(CancellationToken::new());
    let service = tower::service_fn(echo);
    let task = tokio::spawn(serve(server, GuardLimits::default(), t, service, activity));
    let (mut read, mut write) = tokio::io::split(client);
    write.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut out = String::new();
    read.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(matches!(task.await.unwrap(), Ended::Closed));
}

#[tokio::test]
async fn pipelined_input_behind_a_pending_answer_is_read_only_so_far_ahead() {
    let never = tower::service_fn(|_req: Request<ClientBody>| async {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
    });
    let (client, _task) = start(never);
    let (_read, mut write) = tokio::io::split(client);
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut sent = 0;
    // 4 MiB offered; the server stops reading once it holds `WATCH_AHEAD_ITEMS`.
    for _ in 0..(4 << 20) / request.len() {
        let wrote = tokio::time::timeout(Duration::from_millis(200), write.write_all(request));
        if wrote.await.is_err() {
            break;
        }
        sent += request.len();
    }
    // What the server read (32 heads), plus the in-memory pipe's buffer (64 KiB)
    // and one read (8 KiB).
    let ahead = WATCH_AHEAD_ITEMS * request.len();
    assert!(
        sent < ahead + (64 << 10) + (8 << 10) + 64,
        "{sent} bytes taken"
    );
}
