//! HTTP/2's timeouts, over h2c and TLS: an idle connection (even one that sent only
//! the preface) gets GOAWAY and is closed, like HTTP/1's keep-alive; a client that
//! keeps its flow-control window shut loses its connection after the write timeout;
//! idle HTTP/2 sockets cannot lock other clients out; answers without content (a
//! HEAD's, 204, 304) carry no DATA frames.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: u8 = 7;

/// Timeouts of 2 s, so the tests wait little; `extra` config lines appended.
fn server(dir: &std::path::Path, extra: &str, flags: &[&str]) -> Server {
    let conf = dir.join("h2.toml");
    std::fs::write(
        &conf,
        format!("[server]\nkeep_alive = 2\n[limits]\nhead_timeout = 2\nwrite_timeout = 2\n{extra}"),
    )
    .unwrap();
    let mut args = vec![
        "-c",
        conf.to_str().unwrap(),
        "--chdir",
        apps_dir().to_str().unwrap().to_owned().leak(),
        "-w",
        "1",
    ];
    args.extend_from_slice(flags);
    args.push("misbehave:app");
    Server::start(args)
}

/// The frame types in `bytes` (an HTTP/2 server's output).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

/// Reads until the server closes (or `limit` passes); returns the bytes and when.
fn read_to_close(s: &mut impl Read, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (out, Some(start.elapsed())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (out, Some(start.elapsed())),
        }
    }
    (out, None)
}

#[test]
fn a_connection_that_sends_only_the_preface_gets_goaway_and_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "", &[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(&[PREFACE, SETTINGS].concat()).unwrap();
    let (out, closed) = read_to_close(&mut s, Duration::from_secs(20));
    assert!(closed.is_some(), "still open after 20 s");
    assert!(
        frame_types(&out).contains(&GOAWAY),
        "{:?}",
        frame_types(&out)
    );
}

#[test]
fn over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = server(dir.path(), "", &["--certfile", &cert, "--keyfile", &key]);
    let mut client = std::process::Command::new("openssl")
        .args([
            "s_client", "-quiet", "-alpn", "h2", "-CAfile", &cert, "-connect",
        ])
        .arg(server.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(&[PREFACE, SETTINGS].concat()).unwrap();
    // stdin stays open: the client says nothing more, and does not leave.
    let mut stdout = client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let start = Instant::now();
    while client.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still open after 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = reader.join().unwrap();
    assert!(
        frame_types(&out).contains(&GOAWAY),
        "{:?}",
        frame_types(&out)
    );
}

#[test]
fn idle_http2_sockets_do_not_lock_other_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "max_connections = 3\n", &[]);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(&[PREFACE, SETTINGS].concat()).unwrap();
            s
        })
        .collect();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = c
        .get(server.url("/pid"))
        .send()
        .expect("served once an idle socket closed");
    assert_eq!(r.status(), 200);
    drop(idle);
}

/// h2's client, on a runtime of the test's own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn after_its_last_stream_an_idle_connection_gets_goaway() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "", &[]);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get(server.url("/pid")).body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        // The server ends the connection; the client's driver then finishes.
        let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
        assert!(ended.is_ok(), "the idle connection was kept past 20 s");
    });
}

/// The client never opens its window (initial window 0, no WINDOW_UPDATE): the
/// response cannot progress, and after the write timeout the connection is gone,
/// with whatever its stream held in the front.
#[test]
fn a_client_that_keeps_its_window_shut_loses_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "", &[]);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get(server.url("/stream?n=2000&pause=0"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
        assert!(ended.is_ok(), "the stalled connection was kept past 20 s");
    });
    // The worker and the front are free for others.
    assert_eq!(get(&server.url("/pid")).0, 200);
}

/// The timeouts are the client's: an app that pauses longer than them between
/// chunks (or before its head) keeps its HTTP/2 stream and connection.
#[test]
fn a_slow_app_is_not_a_slow_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "", &[]);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(server.url("/stream?n=3&pause=3"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let mut got = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the stream was not cut");
            got += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        assert_eq!(got, 3000);
    });
}

/// `sup_app` with one worker and `workers` config lines.
fn sup_server(dir: &std::path::Path, workers: &str) -> Server {
    let conf = dir.join("w.toml");
    std::fs::write(&conf, format!("[workers]\n{workers}")).unwrap();
    Server::start([
        "-c",
        conf.to_str().unwrap(),
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "1",
        "sup_app:app",
    ])
}

/// Sends `n` requests for `path` on one HTTP/2 connection and resets them all
/// `after` later, as a client that gives up (or pretends to) does.
async fn send_and_reset(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    url: &str,
    n: usize,
    after: Duration,
) {
    let mut streams = Vec::new();
    for _ in 0..n {
        *client = client.clone().ready().await.unwrap();
        let req = http::Request::get(url).body(()).unwrap();
        streams.push(client.send_request(req, true).unwrap());
    }
    tokio::time::sleep(after).await;
    for (_resp, mut stream) in streams {
        stream.send_reset(h2::Reason::CANCEL);
    }
}

/// A request whose client reset its stream no longer holds a place in the queue:
/// it used to, until it reached the head, so others got an immediate 503.
#[test]
fn cancelled_requests_do_not_fill_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = sup_server(dir.path(), "backlog = 10\nlook_ahead = 0\n");
    let slow = server.url("/sleep?s=2");
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        // One runs, ten wait, the rest get 503; then all are reset.
        send_and_reset(&mut client, &slow, 30, Duration::from_millis(120)).await;
    });
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = c.get(server.url("/pid")).send().unwrap();
    assert_eq!(r.status(), 200, "a live request waits for the worker");
}

/// A client that cancels most of its streams, paced so that hyper's rapid-reset
/// limit does not see it, gets GOAWAY; others are still served.
#[test]
fn a_client_that_resets_most_of_its_streams_gets_goaway() {
    let dir = tempfile::tempdir().unwrap();
    let server = sup_server(dir.path(), "");
    let slow = server.url("/sleep?s=2");
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..4 {
            send_and_reset(&mut client, &slow, 40, Duration::from_millis(120)).await;
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(
            ended.is_ok(),
            "the connection outlived 160 cancelled streams"
        );
    });
    server.wait_for_log("cancelled most of its streams", Duration::from_secs(5));
    assert_eq!(get(&server.url("/pid")).0, 200);
}

/// Requests sent ahead to a busy worker and then cancelled by their client are
/// taken back: the app never runs them.
#[test]
fn a_cancelled_request_sent_ahead_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "", &[]);
    // The worker's one thread is busy for 2 s once the first chunk is out.
    let mut busy = TcpStream::connect(server.addr).unwrap();
    busy.write_all(b"GET /stream?n=2&pause=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    assert!(busy.read(&mut first).unwrap() > 0);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let url = server.url("/count?add=1");
        send_and_reset(&mut client, &url, 5, Duration::from_millis(100)).await;
    });
    let (rest, _) = read_to_close(&mut busy, Duration::from_secs(20));
    assert!(!rest.is_empty());
    assert_eq!(get(&server.url("/count")).1, "0", "a cancelled request ran");
}

/// A frame: 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields, new names, no Huffman (RFC 7541 §6.2.2);
/// names and values under 127 bytes.
fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// What came back on one stream: the status (from h2's static-table index), the
/// DATA bytes, and whether it ended cleanly (END_STREAM, no RST_STREAM).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Got {
    status: u16,
    data: usize,
    ended: bool,
    reset: bool,
}

/// A request: method, path and extra fields.
type Asked<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Sends each request on its own stream (1, 3, 5, ...) of one h2c connection and
/// reads every frame until all of them are over.
fn h2_streams(server: &Server, requests: &[Asked]) -> Vec<Got> {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = [PREFACE, SETTINGS].concat();
    for (i, (method, path, extra)) in requests.iter().enumerate() {
        let mut fields = vec![
            (":method", *method),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", *path),
        ];
        fields.extend_from_slice(extra);
        out.extend(frame(1, 0x5, 2 * i as u32 + 1, &literal_block(&fields)));
    }
    s.write_all(&out).unwrap();
    let mut got = vec![Got::default(); requests.len()];
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.iter().any(|g| !g.ended && !g.reset) {
        assert!(Instant::now() < deadline, "streams not over: {got:?}");
        let mut chunk = [0u8; 16384];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
            if kind == 4 && flags & 1 == 0 {
                s.write_all(&frame(4, 1, 0, &[])).unwrap(); // SETTINGS ACK
            }
            let Some(g) = (id > 0).then(|| &mut got[(id as usize - 1) / 2]) else {
                continue;
            };
            match kind {
                1 => {
                    g.status = match payload.first() {
                        Some(b @ 0x88..=0x8e) => {
                            [200, 204, 206, 304, 400, 404, 500][usize::from(b - 0x88)]
                        }
                        _ => 0,
                    }
                }
                0 => g.data += len,
                3 => g.reset = true,
                _ => {}
            }
            g.ended |= matches!(kind, 0 | 1) && flags & 1 != 0;
        }
    }
    got
}

/// No content where there is none (RFC 9110 §6.4.1; over HTTP/2 DATA there makes
/// the response malformed, RFC 9113 §8.1.1, and curl and browsers reset the
/// stream): an app's 204 and 304 with a body, a HEAD of the app, of a missing file
/// (our 404 page) and of a compressed answer all end with their HEADERS. The
/// worker finishes the request (its one thread serves the next); a 204 loses the
/// app's Content-Length over HTTP/1 too (RFC 9110 §8.6).
#[test]
fn answers_without_content_carry_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let statics = format!("/static/={}", dir.path().display());
    let server = server(dir.path(), "", &["--static", &statics]);
    let gzip: &[(&str, &str)] = &[("accept-encoding", "gzip")];
    let big = "/status?s=200%20OK&pad=4000";
    let got = h2_streams(
        &server,
        &[
            ("GET", "/status?s=204%20No%20Content", &[]),
            ("GET", "/status?s=304%20Not%20Modified", &[]),
            ("HEAD", "/pid", &[]),
            ("HEAD", "/static/missing", &[]),
            ("HEAD", big, gzip),
            ("GET", big, gzip),
        ],
    );
    let bodiless = |status| Got {
        status,
        data: 0,
        ended: true,
        reset: false,
    };
    assert_eq!(
        got[..5],
        [
            bodiless(204),
            bodiless(304),
            bodiless(200),
            bodiless(404),
            bodiless(200)
        ]
    );
    assert!(got[5].data > 0 && got[5].ended, "{:?}", got[5]);
    assert_eq!(get(&server.url("/pid")).0, 200);

    let (status, out) = h1_request(&server, "GET", "/status?s=204%20No%20Content", b"");
    assert_eq!(status, 204);
    let lower = out.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length") && !lower.contains("odd status"),
        "{out}"
    );
    let (status, out) = h1_request(&server, "HEAD", "/static/missing", b"");
    assert_eq!(status, 404);
    assert!(
        out.to_ascii_lowercase().contains("content-length: 14"),
        "{out}"
    );
}
