//! One header policy for HTTP/1 and HTTP/2 (issue 25, item 2): an HTTP/2 request meets
//! the HTTP/1 guard's refusals and limits, over h2c and over TLS, and cookie crumbs
//! reach the app as one HTTP_COOKIE. Requests the `h2` crate will not send are
//! written as raw frames with a literal HPACK encoding; the rest go through the `h2`
//! client, and the same request over HTTP/1 must get the same status.

mod common;
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const DATA: u8 = 0;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const LIMIT: Duration = Duration::from_secs(20);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How a test reaches the server: h2c with prior knowledge, or TLS with ALPN `h2`
/// trusting the test's own certificate.
#[derive(Clone)]
enum Transport {
    H2c,
    Tls(Arc<tokio_rustls::TlsConnector>),
}

impl Transport {
    fn tls(cert: &str) -> Transport {
        Transport::Tls(Arc::new(h2_tls_connector(cert)))
    }

    fn scheme(&self) -> &'static str {
        match self {
            Transport::H2c => "http",
            Transport::Tls(_) => "https",
        }
    }

    async fn connect(&self, server: &Server) -> Box<dyn Stream> {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        match self {
            Transport::H2c => Box::new(tcp),
            Transport::Tls(connector) => {
                let name = rustls::pki_types::ServerName::IpAddress(server.addr.ip().into());
                let tls = connector.connect(name, tcp).await.unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Box::new(tls)
            }
        }
    }

    /// An `h2` client on a new connection.
    async fn h2(&self, server: &Server) -> h2::client::SendRequest<bytes::Bytes> {
        let io = self.connect(server).await;
        let (client, conn) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---- raw frames ----

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
fn int7(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 128);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman
/// (RFC 7541 §6.2.2): any bytes at all, in the order given.
fn hpack(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        int7(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        int7(&mut out, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// What the server did with stream 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A response; 0 for a status outside the static table.
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Closed,
}

async fn read_frame(io: &mut dyn Stream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Sends one request (its header block, and a body when given) on stream 1 of a new
/// connection, after the settings exchange; returns the server's answer to it.
async fn exchange(t: &Transport, server: &Server, block: Vec<u8>, body: Option<&[u8]>) -> Answer {
    let end = if body.is_none() { END_STREAM } else { 0 };
    let mut frames = frame(HEADERS, END_HEADERS | end, 1, &block);
    if let Some(body) = body {
        frames.extend(frame(DATA, END_STREAM, 1, body));
    }
    exchange_frames(t, server, frames).await
}

/// Sends `frames` after the settings exchange; returns the server's answer on stream 1.
async fn exchange_frames(t: &Transport, server: &Server, frames: Vec<u8>) -> Answer {
    let mut io = t.connect(server).await;
    io.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat())
        .await
        .unwrap();
    let run = async {
        let mut sent = false;
        loop {
            let Some((kind, flags, stream, payload)) = read_frame(&mut *io).await else {
                return Answer::Closed;
            };
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let mut out = frame(SETTINGS, ACK, 0, &[]);
                    if !sent {
                        out.extend_from_slice(&frames);
                        sent = true;
                    }
                    io.write_all(&out).await.unwrap();
                }
                HEADERS if stream == 1 => return Answer::Status(status_of(&payload)),
                RST_STREAM if stream == 1 => {
                    return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
                }
                GOAWAY => {
                    return Answer::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(LIMIT, run).await.expect("no answer")
}

/// The `:status` at the start of a response's header block, as h2 encodes it: an
/// index into the static table (RFC 7541 Appendix A), or for 414 and 431 the name's
/// index and the Huffman-coded digits. 0 for anything else.
fn status_of(block: &[u8]) -> u16 {
    match block {
        [b @ 0x88..=0x8e, ..] => [200, 204, 206, 304, 400, 404, 500][usize::from(b - 0x88)],
        [0x48, 0x83, 0x68, 0x2d, 0x7f, ..] => 414,
        [0x48, 0x83, 0x69, 0x90, 0xff, ..] => 431,
        _ => 0,
    }
}

/// The pseudo-headers of a GET for `/environ` on `server`, then `extra`.
fn request<'a>(
    t: &Transport,
    server: &Server,
    extra: &[(&'a str, &[u8])],
) -> Vec<(&'a str, Vec<u8>)> {
    let mut fields: Vec<(&str, Vec<u8>)> = vec![
        (":method", b"GET".to_vec()),
        (":scheme", t.scheme().as_bytes().to_vec()),
        (":authority", server.addr.to_string().into_bytes()),
        (":path", b"/environ".to_vec()),
    ];
    for (name, value) in extra {
        match fields
            .iter_mut()
            .find(|(n, _)| n == name && n.starts_with(':'))
        {
            Some(f) => f.1 = value.to_vec(),
            None => fields.push((name, value.to_vec())),
        }
    }
    fields
}

fn block(fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let borrowed: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, &v[..])).collect();
    hpack(&borrowed)
}

/// A named list of fields.
type Fields = Vec<(&'static str, Vec<u8>)>;
/// What a case is, and the fields it adds to (or changes in) a plain request.
type Case = (&'static str, Fields);

/// Holes HTTP/2 had and HTTP/1 never had: each is a 400 now (it reached the app).
fn refused_like_http1(authority: &str) -> Vec<Case> {
    let a = |s: &str| s.as_bytes().to_vec();
    let userinfo = format!("user:pw@{authority}");
    vec![
        ("leading space in a value", vec![("x-a", a(" v"))]),
        ("trailing tab in a value", vec![("x-a", a("v\t"))]),
        (
            "host differs from :authority",
            vec![("host", a("evil.example"))],
        ),
        (
            "host twice",
            vec![("host", a(authority)), ("host", a(authority))],
        ),
        (":path * on GET", vec![(":path", a("*"))]),
        ("lower-case method", vec![(":method", a("get"))]),
        ("one-letter method", vec![(":method", a("G"))]),
        (
            ":authority with userinfo",
            vec![(":authority", a(&userinfo))],
        ),
        (":scheme ftp", vec![(":scheme", a("ftp"))]),
        (
            "content-length twice",
            vec![("content-length", a("0")), ("content-length", a("0"))],
        ),
        (
            "content-type twice",
            vec![("content-type", a("a/b")), ("content-type", a("a/b"))],
        ),
    ]
}

/// What h2 (under hyper) refuses itself: a stream reset or GOAWAY, never the app.
fn refused_by_h2() -> Vec<Case> {
    let a = |s: &str| s.as_bytes().to_vec();
    vec![
        (
            "repeated :path",
            vec![(":path", a("/environ")), ("::path", a("/x"))],
        ),
        (
            "pseudo-header after a field",
            vec![("x-a", a("1")), (":x-late", a("/"))],
        ),
        ("unknown pseudo-header", vec![(":foo", a("1"))]),
        (":status in a request", vec![(":status", a("200"))]),
        ("upper-case name", vec![("X-A", a("1"))]),
        ("te: gzip", vec![("te", a("gzip"))]),
        ("connection", vec![("connection", a("close"))]),
        ("keep-alive", vec![("keep-alive", a("5"))]),
        ("proxy-connection", vec![("proxy-connection", a("close"))]),
        (
            "transfer-encoding",
            vec![("transfer-encoding", a("chunked"))],
        ),
        ("upgrade", vec![("upgrade", a("h2c"))]),
        ("empty :path", vec![(":path", a(""))]),
        (":path not origin-form", vec![(":path", a("environ"))]),
        ("space in :path", vec![(":path", a("/a b"))]),
        ("NUL in a value", vec![("x-a", a("a\0b"))]),
        ("CR in a value", vec![("x-a", a("a\rb"))]),
        ("LF in a value", vec![("x-a", a("a\nb"))]),
        ("DEL in a value", vec![("x-a", a("a\x7fb"))]),
        (
            "content-length not a number",
            vec![("content-length", a("+1"))],
        ),
    ]
}

/// Expands the test's shorthands: `::path` is a second `:path`, `:x-late` a
/// `:path` after a regular field.
fn spelled(mut fields: Vec<(&'static str, Vec<u8>)>) -> Vec<(&'static str, Vec<u8>)> {
    for f in &mut fields {
        f.0 = match f.0 {
            "::path" | ":x-late" => ":path",
            n => n,
        };
    }
    fields
}

fn check_refusals(t: &Transport, server: &Server) {
    runtime().block_on(async {
        let plain = request(t, server, &[]);
        assert_eq!(
            exchange(t, server, block(&plain), None).await,
            Answer::Status(200)
        );
        let authority = server.addr.to_string();
        let mut wrong = Vec::new();
        let cases = refused_like_http1(&authority)
            .into_iter()
            .map(|c| (c, true));
        let cases = cases.chain(refused_by_h2().into_iter().map(|c| (c, false)));
        for ((what, extra), like_http1) in cases {
            let borrowed: Vec<_> = extra.iter().map(|(n, v)| (*n, &v[..])).collect();
            let fields = spelled(request(t, server, &borrowed));
            let got = exchange(t, server, block(&fields), None).await;
            let refused = match got {
                Answer::Status(400) => like_http1,
                Answer::Reset(_) | Answer::GoAway(_) => !like_http1,
                _ => false,
            };
            if !refused {
                let expected = if like_http1 {
                    "a 400"
                } else {
                    "a reset or GOAWAY"
                };
                wrong.push(format!("{what}: {got:?}, expected {expected}"));
            }
        }
        // A Content-Length the DATA contradicts, either way.
        for (declared, sent) in [("5", &b"abc"[..]), ("2", &b"abcde"[..])] {
            let extra: [(&str, &[u8]); 2] = [
                (":method", b"POST"),
                ("content-length", declared.as_bytes()),
            ];
            let fields = request(t, server, &extra);
            let got = exchange(t, server, block(&fields), Some(sent)).await;
            if !matches!(got, Answer::Reset(_) | Answer::GoAway(_)) {
                wrong.push(format!(
                    "content-length {declared} with {} bytes: {got:?}",
                    sent.len()
                ));
            }
        }
        wrong.extend(check_floods(t, server).await);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    });
}

/// Heads that cost little on the wire and much once decoded or buffered: h2's
/// limits answer them (431, or GOAWAY past four times the header list size, or
/// ENHANCE_YOUR_CALM for CONTINUATION frames without end), never the app.
async fn check_floods(t: &Transport, server: &Server) -> Vec<String> {
    let mut wrong = Vec::new();
    let pseudo = block(&request(t, server, &[]));
    // One field in HPACK's dynamic table (literal with incremental indexing), then
    // named by its index (62), one byte each.
    let bomb = |len: usize, refs: usize| {
        let mut b = pseudo.clone();
        b.push(0x40);
        int7(&mut b, 5);
        b.extend_from_slice(b"x-big");
        int7(&mut b, len);
        b.extend(std::iter::repeat_n(b'a', len));
        b.extend(std::iter::repeat_n(0x80 | 62, refs));
        b
    };
    // 150 small fields (6 kB decoded): over the field count, the front's 431.
    let got = exchange(t, server, bomb(1, 150), None).await;
    if got != Answer::Status(431) {
        wrong.push(format!(
            "150 fields from 160 bytes: {got:?}, expected a 431"
        ));
    }
    // 20 fields of 4,000 bytes (80 kB decoded from 4 kB): h2's header list limit, 431.
    let got = exchange(t, server, bomb(4000, 20), None).await;
    if got != Answer::Status(431) {
        wrong.push(format!("80 kB decoded from 4 kB: {got:?}, expected a 431"));
    }
    // 4,000 of them (16 MB): past four times h2's limit, the connection goes.
    let got = exchange(t, server, bomb(4000, 4000), None).await;
    if got != Answer::GoAway(ENHANCE_YOUR_CALM) {
        wrong.push(format!("16 MB decoded from 8 kB: {got:?}, expected GOAWAY"));
    }
    // HEADERS without END_HEADERS, then empty CONTINUATION frames (type 9): h2 takes
    // about 63 with the default limits.
    let mut frames = frame(HEADERS, END_STREAM, 1, &pseudo);
    for _ in 0..200 {
        frames.extend(frame(9, 0, 1, &[]));
    }
    let got = exchange_frames(t, server, frames).await;
    if got != Answer::GoAway(ENHANCE_YOUR_CALM) {
        wrong.push(format!(
            "a CONTINUATION flood: {got:?}, expected GOAWAY(ENHANCE_YOUR_CALM)"
        ));
    }
    // A :path over the request line limit, the raw way: 414.
    let long = format!("/{}", "a".repeat(5000));
    let fields = request(t, server, &[(":path", long.as_bytes())]);
    let got = exchange(t, server, block(&fields), None).await;
    if got != Answer::Status(414) {
        wrong.push(format!("a 5,000-byte :path: {got:?}, expected a 414"));
    }
    wrong
}

fn front_app(extra: &[&str]) -> Server {
    test_app("front_app:app", &[&["-w", "1"], extra].concat()).start()
}

#[test]
fn http2_requests_get_http1s_refusals_over_h2c() {
    let server = front_app(&[]);
    check_refusals(&Transport::H2c, &server);
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

#[test]
fn http2_requests_get_http1s_refusals_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let server = front_app(&["--certfile", &cert, "--keyfile", &key]);
    check_refusals(&Transport::tls(&cert), &server);
}

// ---- limits, HTTP/1 and HTTP/2 side by side ----

/// The status of `GET path` with `fields` over HTTP/1 (raw, Host first; only the
/// status line is read, so no Connection field is needed to end the exchange).
fn h1_status(server: &Server, path: &str, fields: &[(String, String)]) -> u16 {
    use std::io::{Read, Write};
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for (n, v) in fields {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 12 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{text:?}"))
}

/// The status and body of the same request over HTTP/2 (`h2` client, `:authority`).
async fn h2_get(
    t: &Transport,
    server: &Server,
    path: &str,
    fields: &[(String, String)],
) -> (u16, String) {
    let mut client = t.h2(server).await.ready().await.unwrap();
    let mut req = http::Request::get(format!("{}://{}{path}", t.scheme(), server.addr));
    for (n, v) in fields {
        req = req.header(n.as_str(), v.as_str());
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

fn fields(n: usize, value_len: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-f{i:02}"), "v".repeat(value_len)))
        .collect()
}

fn crumbs(n: usize, len: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| ("cookie".to_string(), format!("c{i:02}={}", "v".repeat(len))))
        .collect()
}

#[test]
fn the_head_limits_are_the_same_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let limits = [
        "--limit-request-fields",
        "10",
        "--limit-request-field_size",
        "200",
        "--limit-request-line",
        "100",
    ];
    let server = front_app(&limits);
    // The same over TLS (HTTP/2 only: ALPN h2).
    let tls_server = front_app(&[&limits[..], &["--certfile", &cert, "--keyfile", &key]].concat());
    let tls = Transport::tls(&cert);
    // `GET ` + path + ` HTTP/1.1` = 100 bytes.
    let path_100 = format!("/environ?{}", "q".repeat(100 - 4 - 9 - 9));
    let line_200 = 200 - "x-f00: ".len() - 2;
    // What, the path, the fields, the status over both protocols.
    type LimitCase = (&'static str, String, Vec<(String, String)>, u16);
    let cases: Vec<LimitCase> = vec![
        ("Host and 9 fields", "/environ".into(), fields(9, 10), 200),
        ("Host and 10 fields", "/environ".into(), fields(10, 10), 431),
        (
            "a 200-byte field line",
            "/environ".into(),
            fields(1, line_200),
            200,
        ),
        (
            "a 201-byte field line",
            "/environ".into(),
            fields(1, line_200 + 1),
            431,
        ),
        ("a 100-byte request line", path_100.clone(), vec![], 200),
        (
            "a 101-byte request line",
            format!("{path_100}q"),
            vec![],
            414,
        ),
        // Twelve crumbs are one Cookie line of 8 + 12 * 6 + 11 * 2 + 2 = 104 bytes.
        (
            "twelve small cookie crumbs",
            "/environ".into(),
            crumbs(12, 2),
            200,
        ),
        (
            "crumbs longer than a field line",
            "/environ".into(),
            crumbs(20, 8),
            431,
        ),
    ];
    let rt = runtime();
    let mut wrong = Vec::new();
    for (what, path, fields, expected) in cases {
        let h1 = if what.contains("crumb") {
            // HTTP/1 sends the cookie as one line, as a browser does.
            let joined: Vec<String> = fields.iter().map(|f| f.1.clone()).collect();
            h1_status(&server, &path, &[("Cookie".into(), joined.join("; "))])
        } else {
            h1_status(&server, &path, &fields)
        };
        let (h2, _) = rt.block_on(h2_get(&Transport::H2c, &server, &path, &fields));
        let (h2_tls, _) = rt.block_on(h2_get(&tls, &tls_server, &path, &fields));
        if (h1, h2, h2_tls) != (expected, expected, expected) {
            wrong.push(format!(
                "{what}: HTTP/1 {h1}, HTTP/2 {h2}, over TLS {h2_tls}, expected {expected}"
            ));
        }
    }
    // Far beyond the limits, h2's own SETTINGS_MAX_HEADER_LIST_SIZE answers (431).
    let (status, _) = rt.block_on(h2_get(
        &Transport::H2c,
        &server,
        "/environ",
        &fields(60, 150),
    ));
    if status != 431 {
        wrong.push(format!("60 fields of 150 bytes over HTTP/2: {status}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With the default limits a 25 kB head is served over HTTP/2 as over HTTP/1:
/// hyper's own 16 KiB header list limit no longer refuses it.
#[test]
fn a_large_head_within_the_limits_is_served_over_http2() {
    let server = front_app(&[]);
    let big = fields(25, 1000);
    assert_eq!(h1_status(&server, "/environ", &big), 200);
    let (status, body) = runtime().block_on(h2_get(&Transport::H2c, &server, "/environ", &big));
    assert_eq!(status, 200);
    assert!(body.contains("HTTP_X_F24"), "{body}");
}

// ---- what the app gets ----

#[test]
fn cookie_crumbs_reach_the_app_as_one_cookie_and_underscores_are_dropped() {
    let server = front_app(&[]);
    let sent = vec![
        ("cookie".to_string(), "sessionid=abc".to_string()),
        ("x_forwarded_for".to_string(), "198.51.100.7".to_string()),
        ("x-kept".to_string(), "1".to_string()),
        ("cookie".to_string(), "csrftoken=xyz".to_string()),
    ];
    let (status, body) = runtime().block_on(h2_get(&Transport::H2c, &server, "/environ", &sent));
    assert_eq!(status, 200);
    let env: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["HTTP_COOKIE"], "sessionid=abc; csrftoken=xyz", "{body}");
    assert_eq!(env["HTTP_X_KEPT"], "1");
    assert!(env.get("HTTP_X_FORWARDED_FOR").is_none(), "{body}");
    // Over HTTP/1, several Cookie lines the same way.
    let raw = format!(
        "GET /environ HTTP/1.1\r\nHost: {}\r\nCookie: sessionid=abc\r\nCookie: csrftoken=xyz\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let out = server.raw(raw.as_bytes(), LIMIT);
    assert!(
        out.contains("\"HTTP_COOKIE\": \"sessionid=abc; csrftoken=xyz\""),
        "{out}"
    );
}

/// A client that splits its cookies into crumbs, as browsers do over HTTP/2, logs
/// into the Django admin: the CSRF cookie (with another crumb before it) on the
/// login POST, then the session and CSRF cookies as two crumbs on `/admin/`.
#[test]
fn a_raw_h2_client_that_splits_its_cookies_logs_into_django_admin() {
    let site = DjangoSite::prepare();
    let (cert, key) = leaf_certificate(site.tmp.path());
    for tls in [false, true] {
        let server = match tls {
            false => site.serve_with(&["-w", "1"]),
            true => site.serve_with(&["-w", "1", "--certfile", &cert, "--keyfile", &key]),
        };
        let t = if tls {
            Transport::tls(&cert)
        } else {
            Transport::H2c
        };
        let cookies = runtime().block_on(django_login_with_crumbs(&t, &server));
        if !tls {
            // HTTP/1 with the same cookies on two Cookie lines.
            let raw = format!(
                "GET /admin/ HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
                server.addr, cookies.0, cookies.1
            );
            let out = server.raw(raw.as_bytes(), LIMIT);
            assert!(out.contains("Site administration"), "{out}");
        }
    }
}

/// Logs in over HTTP/2 with cookie crumbs; returns the (csrftoken, sessionid) cookies.
async fn django_login_with_crumbs(t: &Transport, server: &Server) -> (String, String) {
    let base = format!("{}://{}", t.scheme(), server.addr);
    let mut client = t.h2(server).await;
    let send = |client: &mut h2::client::SendRequest<bytes::Bytes>,
                req: http::Request<()>,
                body: Option<String>| {
        let end = body.is_none();
        let (resp, mut stream) = client.send_request(req, end).unwrap();
        if let Some(body) = body {
            stream.send_data(body.into(), true).unwrap();
        }
        resp
    };
    client = client.ready().await.unwrap();
    let login = http::Request::get(format!("{base}/admin/login/?next=/admin/"))
        .body(())
        .unwrap();
    let resp = send(&mut client, login, None).await.unwrap();
    let csrf = set_cookie(&resp, "csrftoken");
    let page = body_text(resp).await;
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the login form")
        .to_string();
    let form = format!(
        "csrfmiddlewaretoken={token}&username=admin&password={DJANGO_ADMIN_PASSWORD}&next=%2Fadmin%2F"
    );
    let post = http::Request::post(format!("{base}/admin/login/?next=/admin/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", form.len())
        // Django checks the origin of a POST over HTTPS.
        .header("origin", &base)
        .header("cookie", "theme=dark")
        .header("cookie", &csrf)
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let resp = send(&mut client, post, Some(form)).await.unwrap();
    assert_eq!(resp.status(), 302, "login POST: {}", body_text(resp).await);
    assert_eq!(resp.headers()["location"], "/admin/");
    let session = set_cookie(&resp, "sessionid");
    let admin = http::Request::get(format!("{base}/admin/"))
        .header("cookie", &session)
        .header("cookie", &csrf)
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let resp = send(&mut client, admin, None).await.unwrap();
    let status = resp.status();
    let page = body_text(resp).await;
    assert_eq!(
        status, 200,
        "/admin/ sent the client back to log in:\n{page}"
    );
    assert!(page.contains("Site administration"), "{page}");
    (csrf, session)
}

fn set_cookie<B>(resp: &http::Response<B>, name: &str) -> String {
    cookie_in(resp.headers(), name)
}

async fn body_text(resp: http::Response<h2::RecvStream>) -> String {
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// HPACK amplification: 100 streams per connection, each naming a 4,000-byte entry
/// of the dynamic table 20 times (80 kB decoded from 40 bytes, a head the field
/// limits allow), on 4 connections. Each gets h2's 431 and the front's memory stays
/// put; with the header list limit at the 800 KiB the field limits allow, 99 names
/// a stream made the master take 170 MB.
#[test]
fn an_hpack_amplification_gets_431s_and_costs_no_memory() {
    let server = test_app("sup_app:app", &["-w", "1"]).start();
    let rss_kb = || {
        let s = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        let line = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = rss_kb();
    let t = Transport::H2c;
    let statuses = runtime().block_on(async {
        let mut conns = Vec::new();
        for _ in 0..4 {
            let mut io = t.connect(&server).await;
            let mut out = [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat();
            for i in 0..100u32 {
                let fields = request(&t, &server, &[(":path", b"/sleep?s=5")]);
                let mut b = block(&fields);
                if i == 0 {
                    b.push(0x40);
                    int7(&mut b, 5);
                    b.extend_from_slice(b"x-big");
                    int7(&mut b, 4000);
                    b.extend(std::iter::repeat_n(b'a', 4000));
                }
                b.extend(std::iter::repeat_n(0x80 | 62, 20));
                out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &b));
            }
            io.write_all(&out).await.unwrap();
            conns.push(io);
        }
        // h2 sends the first 431 as a literal and puts it in its HPACK table; the
        // later ones name that entry (index 62).
        let mut statuses = Vec::new();
        for io in &mut conns {
            let mut answers = 0;
            while answers < 100 {
                match tokio::time::timeout(LIMIT, read_frame(&mut **io))
                    .await
                    .expect("no answer")
                {
                    Some((HEADERS, _, _, payload)) => {
                        let again = answers > 0 && payload.first() == Some(&0xbe);
                        statuses.push(if again { 431 } else { status_of(&payload) });
                        answers += 1;
                    }
                    Some(_) => {}
                    None => panic!("connection closed after {answers} answers"),
                }
            }
        }
        statuses
    });
    assert!(statuses.iter().all(|&s| s == 431), "{statuses:?}");
    let grown = rss_kb().saturating_sub(before);
    assert!(grown < 32 * 1024, "the master grew by {grown} kB");
}

// ---- the Host value and the whole head (issue 25's attacker, findings 04 and 08) ----

/// Sends raw HTTP/1 bytes; the status of the answer.
fn h1_raw_status(server: &Server, raw: &str) -> u16 {
    let answer = server.raw(raw.as_bytes(), LIMIT);
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{raw:?}: {answer:?}"))
}

/// RFC 9112 §3.2: a Host that is not `uri-host [ ":" port ]` is a 400, as an http
/// URI with an empty host (RFC 9110 §4.2.1); over HTTP/2 the same for `host`
/// and `:authority`. None reaches the app as HTTP_HOST or SERVER_NAME.
#[test]
fn an_invalid_host_is_400_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let server = front_app(&[]);
    let tls_server = front_app(&["--certfile", &cert, "--keyfile", &key]);
    let bad = [
        "a b",
        "evil/../x",
        "good@evil",
        "good:80x",
        "a..b",
        "x:99999",
        "[::1",
        "\"a\"",
    ];
    let good = [
        "a.example",
        "a.example:8080",
        "[::1]:8080",
        "127.0.0.1",
        "",
        "a.example:",
    ];
    let mut wrong = Vec::new();
    for (host, expected) in bad
        .iter()
        .map(|h| (h, 400))
        .chain(good.iter().map(|h| (h, 200)))
    {
        let raw = format!("GET /environ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let got = h1_raw_status(&server, &raw);
        if got != expected {
            wrong.push(format!("HTTP/1 Host {host:?}: {got}, expected {expected}"));
        }
    }
    for target in [
        "http://:80/environ",
        "http:///environ",
        "http://a b@x/environ",
    ] {
        let got = h1_raw_status(
            &server,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        if got != 400 {
            wrong.push(format!("HTTP/1 target {target:?}: {got}, expected 400"));
        }
    }
    let got = h1_raw_status(&server, "CONNECT a b:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    if got != 400 {
        wrong.push(format!("CONNECT with a space: {got}"));
    }
    let rt = runtime();
    for (t, server) in [
        (Transport::H2c, &server),
        (Transport::tls(&cert), &tls_server),
    ] {
        let scheme = t.scheme().as_bytes().to_vec();
        for (host, expected) in bad
            .iter()
            .map(|h| (h, 400))
            .chain(good.iter().map(|h| (h, 200)))
        {
            // `host` without `:authority`, as an HTTP/1 request carries it.
            let fields = [
                (":method", b"GET".to_vec()),
                (":scheme", scheme.clone()),
                (":path", b"/environ".to_vec()),
                ("host", host.as_bytes().to_vec()),
            ];
            let got = rt.block_on(exchange(&t, server, block(&fields), None));
            if got != Answer::Status(expected) {
                wrong.push(format!(
                    "{} host {host:?}: {got:?}, expected {expected}",
                    t.scheme()
                ));
            }
            // `:authority`: what h2 cannot parse it resets, the rest is ours to refuse.
            if host.is_empty() {
                continue;
            }
            let fields = request(&t, server, &[(":authority", host.as_bytes())]);
            let got = rt.block_on(exchange(&t, server, block(&fields), None));
            let refused = matches!(got, Answer::Status(400) | Answer::Reset(_));
            if (expected == 400 && !refused) || (expected == 200 && got != Answer::Status(200)) {
                wrong.push(format!("{} :authority {host:?}: {got:?}", t.scheme()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for s in [&server, &tls_server] {
        assert!(!s.log().contains("Traceback"), "{}", s.log());
    }
}

/// The whole head is capped (`defaults::REQUEST_HEAD`, 32 KiB, nginx's) below what the
/// per-line limits allow (100 lines of 8190 bytes): the same over HTTP/1 and HTTP/2,
/// and an HTTP/1 head that passes it is refused before it ends, not held.
#[test]
fn the_whole_head_is_capped_alike_over_http1_and_http2() {
    use ferricorn::defaults::REQUEST_HEAD;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let server = front_app(&[]);
    let tls_server = front_app(&["--certfile", &cert, "--keyfile", &key]);
    let tls = Transport::tls(&cert);
    let rt = runtime();
    // `x-fNN: ` + 1000 + CRLF = 1009 bytes a line.
    let under = (REQUEST_HEAD - 200) / (1009 + 32);
    let over = REQUEST_HEAD / 1009 + 1;
    for (n, expected) in [(under, 200), (over, 431)] {
        let f = fields(n, 1000);
        let h1 = h1_status(&server, "/environ", &f);
        let (h2, _) = rt.block_on(h2_get(&Transport::H2c, &server, "/environ", &f));
        let (h2_tls, _) = rt.block_on(h2_get(&tls, &tls_server, "/environ", &f));
        assert_eq!(
            (h1, h2, h2_tls),
            (expected, expected, expected),
            "{n} fields"
        );
    }
    // An unfinished head: refused as soon as it passes the cap (not after the head
    // timeout, 10 s), though each line is within the limits.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /environ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let line = format!("X-F: {}\r\n", "a".repeat(8180));
    let started = std::time::Instant::now();
    for _ in 0..REQUEST_HEAD / line.len() + 1 {
        if s.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
