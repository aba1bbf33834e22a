//! TLS as nginx users expect it at the edge: plain HTTP sent to the TLS port gets
//! nginx's 400 page (curl, raw sockets, behind a PROXY header), while TLS clients
//! (curl, openssl s_client) are served as before.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn curl(args: &[&str]) -> (String, String, bool) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// A static-only server with TLS on its bind, plus `extra` flags.
fn tls_server(dir: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let (cert, key) = certificate(dir);
    let statics = format!("/static/={}", repo().join("static_fixtures").display());
    let mut args = vec!["--static", &statics, "--certfile", &cert, "--keyfile", &key];
    args.extend_from_slice(extra);
    (Server::start(args), cert)
}

const PLAIN_HTTP: &str = "400 The plain HTTP request was sent to HTTPS port";

#[test]
fn plain_http_on_the_tls_port_gets_nginx_s_400() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path(), &[]);

    // curl says http:// to the TLS port: a 400 page, not an HTTP/0.9 error.
    let (out, err, ok) = curl(&["-i", &format!("http://{}/static/", server.addr)]);
    assert!(ok, "curl: {err}");
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("Connection: close\r\n"), "{out}");
    assert!(out.contains(PLAIN_HTTP), "{out}");

    // HEAD: the head alone; a body sent along does not reset the answer away.
    let head = server.raw(
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    let mut post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".to_vec();
    post.extend(std::iter::repeat_n(b'x', 100_000));
    let answer = server.raw(&post, Duration::from_secs(5));
    assert!(answer.contains(PLAIN_HTTP), "{answer}");

    // HTTP/2's cleartext preface too, and a request line split over two writes.
    let preface = server.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Duration::from_secs(5));
    assert!(preface.starts_with("HTTP/1.1 400 "), "{preface}");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"G").unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"ET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.contains(PLAIN_HTTP), "{got}");

    // TLS clients are served as before: curl, and openssl s_client.
    let url = format!("https://{}/static/index.html", server.addr);
    let (body, err, ok) = curl(&["--cacert", &cert, &url]);
    assert!(ok, "{err}");
    assert!(!body.is_empty());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'GET /static/index.html HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' \
             | openssl s_client -quiet -connect {} 2>/dev/null",
            server.addr
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

#[test]
fn plain_http_after_a_proxy_header_gets_the_400_too() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = tls_server(dir.path(), &["--proxy-protocol"]);
    let answer = server.raw(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains(PLAIN_HTTP), "{answer}");
}

/// The address of the redirect bind, from its log line.
fn redirect_addr(server: &Server) -> String {
    let line = server.wait_for_log(
        "Redirecting plain HTTP to HTTPS at: http://",
        Duration::from_secs(10),
    );
    line.split("http://").nth(1).unwrap().trim().to_string()
}

#[test]
fn the_redirect_bind_sends_every_request_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path(), &["--redirect-http", "127.0.0.1:0"]);
    let plain = redirect_addr(&server);
    let tls_port = server.addr.port();

    // GET: 301 to the same host (its port replaced by the TLS port's) and target.
    let (out, err, ok) = curl(&[
        "-i",
        "-H",
        "Host: Example.COM:80",
        &format!("http://{plain}/static/index.html?a=1&b=%2F"),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{out}"
    );
    let location =
        format!("location: https://example.com:{tls_port}/static/index.html?a=1&b=%2F\r\n");
    assert!(out.contains(&location), "{out}");
    // POST: 308, which keeps the method and its body.
    let (out, _, _) = curl(&["-i", "-d", "x=1", &format!("http://{plain}/form")]);
    assert!(
        out.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{out}"
    );
    // curl follows it to the TLS port and gets the file.
    let (body, err, ok) = curl(&[
        "-L",
        "--cacert",
        &cert,
        "-w",
        "\n%{url_effective} %{http_code}",
        &format!("http://{plain}/static/index.html"),
    ]);
    assert!(ok, "{err}");
    let effective = format!("\nhttps://127.0.0.1:{tls_port}/static/index.html 200");
    assert!(body.ends_with(&effective), "{body}");
    // HTTP/2 with prior knowledge, as h2c clients speak it.
    let (out, err, ok) = curl(&[
        "-i",
        "--http2-prior-knowledge",
        &format!("http://{plain}/x?y"),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/2 301"), "{out}");
    let location = format!("location: https://127.0.0.1:{tls_port}/x?y\r\n");
    assert!(out.contains(&location), "{out}");
}

#[test]
fn the_redirect_bind_names_no_host_but_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _) = tls_server(dir.path(), &["--redirect-http", "127.0.0.1:0"]);
    let plain = redirect_addr(&server);
    let send = |req: &str| {
        let mut s = TcpStream::connect(&plain).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    for req in [
        // The guard's refusals: userinfo, spaces, `..`, two Hosts.
        "GET / HTTP/1.1\r\nHost: good.com@evil.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil..com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        // The redirect's own: escapes and sub-delims in a name, no Host at all, an
        // absolute-form target naming another host, a target that is no path.
        "GET / HTTP/1.1\r\nHost: evil.com%2f.good.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil.com;good.com\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://evil.com/ HTTP/1.1\r\nHost: good.com\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: good.com\r\n\r\n",
    ] {
        let answer = send(req);
        let status = answer.get(8..13);
        assert_eq!(status, Some(" 400 "), "{req:?}: {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("location:"),
            "{answer}"
        );
    }
    // A valid Host in absolute form is the one named.
    let answer =
        send("GET http://good.com/p HTTP/1.1\r\nHost: good.com\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 301 "), "{answer}");
    // The server still serves, and the redirect needs TLS configured.
    assert!(
        send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 301 ")
    );
    let out = run(["--static", "/=.", "--redirect-http", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redirect_http"), "{err}");
    // TERM stops the redirect bind with the listeners: a clean exit.
    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    assert!(
        TcpStream::connect(&plain).is_err(),
        "the redirect bind still accepts"
    );
}

/// The redirect bind reads HTTP/1 with the codec the public port uses (no more
/// hyper): the requests `http` cannot take as sent (CONNECT's authority, a `"` in a
/// query), which reached hyper as issue 26's stand-ins, are read as the client sent
/// them.
#[test]
fn the_redirect_bind_reads_the_requests_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = tls_server(dir.path(), &["--redirect-http", "127.0.0.1:0"]);
    let plain = redirect_addr(&server);
    let tls_port = server.addr.port();
    let send = |req: &str| {
        let mut s = TcpStream::connect(&plain).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let connect = send("CONNECT good.com:443 HTTP/1.1\r\nHost: good.com:443\r\n\r\n");
    assert!(connect.starts_with("HTTP/1.1 400 "), "{connect}");
    assert!(
        !connect.to_ascii_lowercase().contains("location:"),
        "{connect}"
    );
    // A `"` in the query: the same target, escaped as a URL must be.
    let quote = send("GET /p?q=\"x\" HTTP/1.1\r\nHost: good.com\r\nConnection: close\r\n\r\n");
    assert!(quote.starts_with("HTTP/1.1 301 "), "{quote}");
    let location = format!("location: https://good.com:{tls_port}/p?q=%22x%22\r\n");
    assert!(quote.to_ascii_lowercase().contains(&location), "{quote}");
}

/// Behind a port mapping (a Service's 443 for a bind on 8443), the redirect names
/// the port clients use, and 443 not at all.
#[test]
fn the_redirect_names_the_port_clients_reach() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--redirect-http",
        "127.0.0.1:0",
        "--redirect-https-port",
        "443",
    ];
    let (server, _) = tls_server(dir.path(), &flags);
    let plain = redirect_addr(&server);
    let (out, err, ok) = curl(&[
        "-i",
        "-H",
        "Host: example.com:8080",
        &format!("http://{plain}/a?b"),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("location: https://example.com/a?b\r\n"),
        "{out}"
    );
    let out = run(["--static", "/=.", "--redirect-https-port", "443"]);
    assert_eq!(out.status.code(), Some(2));
}

/// USR2: the new master binds the redirect bind again beside the old one
/// (SO_REUSEPORT; it is not among the sockets handed over) and answers on it once
/// the old one has gone.
#[test]
fn a_binary_upgrade_keeps_the_redirect_bind() {
    struct Reap(String);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0]).status();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = format!("127.0.0.1:{}", free_port());
    let (mut server, _) = tls_server(dir.path(), &["--redirect-http", &plain]);
    let url = format!("http://{plain}/x");
    let (out, _, _) = curl(&["-i", &url]);
    assert!(out.starts_with("HTTP/1.1 301 "), "{out}");
    server.signal(12);
    let line = server.wait_for_log(
        "binary upgrade: new master started",
        Duration::from_secs(10),
    );
    let new = line
        .split("pid=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let _reap = Reap(new.to_string());
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let (out, err, ok) = curl(&["-i", &url]);
    assert!(ok, "{err}\n{}", server.log());
    assert!(out.starts_with("HTTP/1.1 301 "), "{out}");
}

/// HOLE: the redirect bind had a connection cap of its own, `max_connections` again,
/// outside the open-file plan (`master::fd_limit`) that keeps the connections to half
/// the descriptors: clients holding port 80's connections open took the other half,
/// and the TLS port could no longer accept (EMFILE) under an open-file limit that
/// the server had sized itself to.
#[test]
fn the_redirect_bind_cannot_take_the_descriptors_the_tls_port_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let statics = format!("/static/={}", repo().join("static_fixtures").display());
    let server = Launch::program(
        "prlimit",
        [
            "--nofile=256:256",
            BIN,
            "--static",
            &statics,
            "--certfile",
            &cert,
            "--keyfile",
            &key,
            "--keep-alive",
            "60",
            "--redirect-http",
            "127.0.0.1:0",
            "-b",
            "127.0.0.1:0",
        ],
    )
    .start();
    server.wait_for_log("open-file limit", Duration::from_secs(5));
    let plain = redirect_addr(&server);
    // Port 80's clients, each answered and kept alive: as many as the connection cap
    // the plan left (half the descriptors), less the place the TLS port's accept loop
    // holds ready.
    let mut held = Vec::new();
    for _ in 0..127 {
        let mut s = TcpStream::connect(&plain).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 301"));
        held.push(s);
    }
    // The TLS port's own clients (here plain HTTP, which gets the 400 page and holds a
    // place as a TLS client does): accepted at once, or waiting in the backlog for a
    // place, never refused for want of a descriptor.
    let mut clients = Vec::new();
    for _ in 0..120 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"G").unwrap();
        clients.push(s);
    }
    let mut last = TcpStream::connect(server.addr).unwrap();
    last.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Until the server has done what it does with them: one accepted on the place
    // held ready and 120 queued for a place, or many accepted until the descriptors
    // ran out.
    wait_until(
        "the TLS port's clients queued or refused",
        Duration::from_secs(20),
        || accept_queue(server.addr.port()) >= 120 || server.log().contains("accept failed"),
    );
    drop(held); // port 80's clients leave: their places (and descriptors) are free
    last.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = String::new();
    let _ = last.read_to_string(&mut answer);
    let log = server.log();
    assert!(
        answer.contains(PLAIN_HTTP) && !log.contains("accept failed"),
        "the TLS port: {answer:?}\n{log}"
    );
    drop(clients);
}

/// The connections waiting in the accept queue of the listening TCP socket on
/// `port` (its `rx_queue` in /proc/net/tcp).
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1].ends_with(&local) && f[3] == "0A")
        .and_then(|f| f[4].split_once(':').map(|(_, rx)| rx.to_string()))
        .and_then(|rx| usize::from_str_radix(&rx, 16).ok())
        .unwrap_or(0)
}

/// HOLE: the wait for a TLS client's first byte (to tell plain HTTP from TLS) came
/// before the 10 s handshake timeout instead of within it: a client that sent one
/// byte of a ClientHello just before 10 s held its connection (and its place) for
/// 20 s, twice the handshake's bound.
#[test]
fn the_first_byte_s_wait_is_part_of_the_handshake_s_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = tls_server(dir.path(), &[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let connected = std::time::Instant::now();
    // The attacker's pace, not a wait for the server: its first byte late.
    std::thread::sleep(Duration::from_secs(8));
    s.write_all(&[0x16]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf); // EOF (or a reset) when the server gives up
    let held = connected.elapsed();
    assert!(
        held < Duration::from_secs(13),
        "a silent TLS client was held {held:?}"
    );
}
