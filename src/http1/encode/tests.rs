//! Our response heads against hyper's, byte for byte (the date aside), for the
//! framing cases: HEAD, 204, 304, 1xx, HTTP/1.0 and 1.1, chunked, Content-Length,
//! keep-alive and close.

use super::*;
use crate::guard::{GuardLimits, Http1Guard};
use crate::http1::inbox::{Inbox, Input};
use bytes::Bytes;
use http::Response;
use http_body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A body of one frame whose length it does not tell (or is empty, or known).
struct TestBody(BodyLength);

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = match self.0 {
            BodyLength::Empty => return Poll::Ready(None),
            BodyLength::Known(n) => Bytes::from(vec![b'x'; n as usize]),
            BodyLength::Unknown => Bytes::from_static(b"hello"),
        };
        self.0 = BodyLength::Empty;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
    fn is_end_stream(&self) -> bool {
        self.0 == BodyLength::Empty
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self.0 {
            BodyLength::Known(n) => http_body::SizeHint::with_exact(n),
            BodyLength::Empty => http_body::SizeHint::with_exact(0),
            BodyLength::Unknown => http_body::SizeHint::default(),
        }
    }
}

type MakeResponse = fn() -> (StatusCode, Vec<(&'static str, &'static str)>, BodyLength);

fn response(make: MakeResponse) -> Response<TestBody> {
    let (status, fields, body) = make();
    let mut resp = Response::new(TestBody(body));
    *resp.status_mut() = status;
    for (n, v) in fields {
        resp.headers_mut().append(n, HeaderValue::from_static(v));
    }
    resp
}

/// The head hyper's HTTP/1 server writes for `make`'s response to `request`.
async fn hypers_head(request: &str, make: MakeResponse) -> String {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let service =
        hyper::service::service_fn(move |_req| async move { Ok::<_, Infallible>(response(make)) });
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    tokio::spawn(conn);
    let (mut read, mut write) = tokio::io::split(client);
    write.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while memchr::memmem::find(&got, b"\r\n\r\n").is_none() {
        let mut buf = [0; 4096];
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "hyper closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let end = memchr::memmem::find(&got, b"\r\n\r\n").unwrap() + 4;
    without_date(&got[..end])
}

fn without_date(head: &[u8]) -> String {
    let s = String::from_utf8(head.to_vec()).unwrap();
    let at = s.find("date: ").expect("a date");
    format!("{}date: -{}", &s[..at], &s[at + 6 + date::LEN..])
}

/// Our head for the same exchange, and what follows it.
fn our_head(request: &str, make: MakeResponse) -> (String, Encoded) {
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut inbox = Inbox::default();
    guard.feed(request.as_bytes(), &mut inbox).unwrap();
    let Some(Input::Head(head)) = inbox.pop() else {
        panic!("no head")
    };
    let req = head.to_request(()).unwrap();
    let answering = Answering {
        method: req.method(),
        version: req.version(),
        keep_alive: head.keep_alive(),
    };
    let mut resp = response(make);
    let body = BodyLength::of(resp.body());
    let status = resp.status();
    let mut dst = Vec::new();
    let encoded = encode_head(&mut dst, answering, status, resp.headers_mut(), body).unwrap();
    (without_date(&dst), encoded)
}

async fn same(request: &str, make: MakeResponse) -> Encoded {
    let hyper = hypers_head(request, make).await;
    let (ours, encoded) = our_head(request, make);
    assert_eq!(ours, hyper, "{request:?}");
    encoded
}

const GET11: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const GET10: &str = "GET / HTTP/1.0\r\n\r\n";
const GET10_KEEP: &str = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
const HEAD11: &str = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
const CLOSE11: &str = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";

fn len(n: u64) -> Encoded {
    Encoded {
        framing: Framing::Length(n),
        last: false,
    }
}

#[tokio::test]
async fn lengths_chunked_and_close_delimited_as_hyper_frames_them() {
    let known: MakeResponse = || (StatusCode::OK, vec![("x-a", "1")], BodyLength::Known(5));
    let unknown: MakeResponse = || (StatusCode::OK, vec![("x-a", "1")], BodyLength::Unknown);
    let empty: MakeResponse = || (StatusCode::NOT_FOUND, vec![], BodyLength::Empty);
    assert_eq!(same(GET11, known).await, len(5));
    assert_eq!(
        same(GET11, unknown).await,
        Encoded {
            framing: Framing::Chunked,
            last: false
        }
    );
    assert_eq!(same(GET11, empty).await, len(0));
    let close_delimited = Encoded {
        framing: Framing::CloseDelimited,
        last: true,
    };
    assert_eq!(same(GET10, unknown).await, close_delimited);
    assert_eq!(same(GET10_KEEP, unknown).await, close_delimited);
    assert_eq!(
        same(GET10, known).await,
        Encoded {
            framing: Framing::Length(5),
            last: true
        }
    );
    assert_eq!(same(GET10_KEEP, known).await, len(5));
    assert_eq!(
        same(CLOSE11, known).await,
        Encoded {
            framing: Framing::Length(5),
            last: true
        }
    );
    let app_length: MakeResponse = || {
        (
            StatusCode::OK,
            vec![("content-length", "5")],
            BodyLength::Unknown,
        )
    };
    assert_eq!(same(GET11, app_length).await, len(5));
    let app_te: MakeResponse = || {
        (
            StatusCode::OK,
            vec![("transfer-encoding", "gzip")],
            BodyLength::Unknown,
        )
    };
    assert_eq!(same(GET11, app_te).await.framing, Framing::Chunked);
    assert_eq!(same(GET10, app_te).await.framing, Framing::CloseDelimited);
}

#[tokio::test]
async fn bodiless_answers_as_hyper_frames_them() {
    let known: MakeResponse = || (StatusCode::OK, vec![], BodyLength::Known(5));
    assert_eq!(same(HEAD11, known).await, len(0));
    let head_length: MakeResponse = || {
        (
            StatusCode::OK,
            vec![("content-length", "42")],
            BodyLength::Empty,
        )
    };
    assert_eq!(same(HEAD11, head_length).await, len(0));
    let head_unknown: MakeResponse = || (StatusCode::OK, vec![], BodyLength::Unknown);
    assert_eq!(same(HEAD11, head_unknown).await, len(0));
    let no_content: MakeResponse = || (StatusCode::NO_CONTENT, vec![], BodyLength::Empty);
    assert_eq!(same(GET11, no_content).await, len(0));
    let not_modified: MakeResponse = || {
        (
            StatusCode::NOT_MODIFIED,
            vec![("etag", "\"e\""), ("content-length", "10")],
            BodyLength::Empty,
        )
    };
    assert_eq!(same(GET11, not_modified).await, len(0));
    let not_modified_known: MakeResponse = || {
        (
            StatusCode::NOT_MODIFIED,
            vec![("content-length", "10")],
            BodyLength::Known(10),
        )
    };
    assert_eq!(same(GET11, not_modified_known).await, len(0));
    let switching: MakeResponse = || {
        let fields = vec![("upgrade", "websocket"), ("connection", "Upgrade")];
        (StatusCode::SWITCHING_PROTOCOLS, fields, BodyLength::Empty)
    };
    assert_eq!(
        same(GET11, switching).await,
        Encoded {
            framing: Framing::Length(0),
            last: true
        }
    );
}

#[tokio::test]
async fn fields_order_connection_and_date_as_hyper_writes_them() {
    let many: MakeResponse = || {
        let fields = vec![
            ("x-b", "1"),
            ("Set-Cookie", "a=1"),
            ("connection", "x-b"),
            ("set-cookie", "b=2"),
            ("connection", "keep-alive"),
        ];
        (
            StatusCode::from_u16(299).unwrap(),
            fields,
            BodyLength::Known(1),
        )
    };
    assert_eq!(same(GET11, many).await, len(1));
    assert!(same(CLOSE11, many).await.last);
    assert!(
        same(GET10, many).await.last,
        "an app cannot keep an HTTP/1.0 client"
    );
    assert!(!same(GET10_KEEP, many).await.last);
    let closes: MakeResponse = || {
        (
            StatusCode::OK,
            vec![("connection", "close")],
            BodyLength::Known(1),
        )
    };
    assert!(same(GET11, closes).await.last);
    let dated: MakeResponse = || {
        (
            StatusCode::OK,
            vec![("date", "Thu, 01 Jan 1970 00:00:00 GMT")],
            BodyLength::Known(1),
        )
    };
    same(GET11, dated).await;
    let (ours, _) = our_head(GET11, dated);
    assert_eq!(
        ours.matches("date: ").count(),
        1,
        "the app's date only: {ours}"
    );
}

#[test]
fn an_informational_answer_other_than_101_is_a_500_and_a_close() {
    // hyper answers it so too, but with an error that ends the connection first.
    let early: MakeResponse = || (StatusCode::CONTINUE, vec![("x", "y")], BodyLength::Known(3));
    let (ours, encoded) = our_head(GET11, early);
    assert_eq!(ours, "HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\ncontent-length: 0\r\ndate: -\r\n\r\n");
    assert_eq!(
        encoded,
        Encoded {
            framing: Framing::Length(0),
            last: true
        }
    );
}

#[test]
fn conflicting_framing_fields_are_refused() {
    let mut dst = Vec::new();
    let mut headers = HeaderMap::new();
    headers.append("content-length", HeaderValue::from_static("5"));
    headers.append("content-length", HeaderValue::from_static("6"));
    let req = Answering {
        method: &Method::GET,
        version: Version::HTTP_11,
        keep_alive: true,
    };
    let r = encode_head(
        &mut dst,
        req,
        StatusCode::OK,
        &mut headers,
        BodyLength::Unknown,
    );
    assert_eq!(r, Err(EncodeError::Framing));
    assert!(dst.is_empty(), "nothing of a refused head is left");
}

#[test]
fn chunk_size_lines_are_lower_hex() {
    let mut buf = [0; 18];
    assert_eq!(chunk_size_line(0, &mut buf), b"0\r\n");
    assert_eq!(chunk_size_line(255, &mut buf), b"ff\r\n");
    assert_eq!(chunk_size_line(0x10000, &mut buf), b"10000\r\n");
    for n in [0, 7, 10, 1234567890, u64::MAX] {
        let mut dst = Vec::new();
        write_decimal(&mut dst, n);
        assert_eq!(dst, n.to_string().into_bytes());
    }
}
