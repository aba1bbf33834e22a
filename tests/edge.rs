//! The edge: gunicorn's request corpus (tests/conformance; origin and MIT licence in its gunicorn-requests/NOTICE.md) run against ferricorn
//! serving its echo app, and smuggling shapes the corpus misses, sent as raw bytes.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn conformance_dir() -> PathBuf {
    repo().join("tests/conformance")
}

fn echo_server(extra: &[&str]) -> Server {
    let dir = conformance_dir();
    let mut args = vec![
        "--chdir",
        dir.to_str().unwrap(),
        "-w",
        "2",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    args.push("echo_app:app");
    Server::start(args)
}

/// Runs the corpus runner; returns (the closing line, the ids that failed).
fn run_corpus(server: &Server, extra: &[&str]) -> (String, BTreeSet<String>) {
    let out = Command::new("python3")
        .arg(conformance_dir().join("run_http_conformance.py"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.addr.port().to_string(),
        ])
        // ferricorn passes its own request id and start time to the app.
        .args(["--ignore-header", "HTTP_X_REQUEST_ID"])
        .args(["--ignore-header", "HTTP_X_REQUEST_START"])
        .args(extra)
        .output()
        .expect("run the conformance runner");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed = text
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    let last = text.lines().last().unwrap_or_default().to_string();
    eprintln!("{text}");
    (last, failed)
}

/// Every case passes with default settings. Skipped: the config-dependent cases (the
/// next test runs them with the equivalent settings) and valid/009 and valid/027, which
/// gunicorn 27 reversed: their bytes are refused as the invalid cases that replaced
/// them (invalid/rfc9112_te_identity_with_cl_01, invalid/rfc9112_target_non_ascii_02),
/// which run here.
#[test]
fn gunicorn_corpus_with_default_settings() {
    let server = echo_server(&[]);
    let (summary, failed) = run_corpus(&server, &["--skip-config-dependent", "--skip-superseded"]);
    assert!(failed.is_empty(), "failed: {failed:?} ({summary})");
    assert!(summary.contains(" passed, 0 failed, "), "{summary}");
}

#[test]
fn gunicorn_corpus_limit_cases_with_the_equivalent_settings() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases: [(&str, String); 4] = [
        (
            "invalid/010",
            conf("a.toml", "[limits]\nrequest_field_size = 10\n"),
        ),
        (
            "invalid/011",
            conf("b.toml", "[limits]\nrequest_fields = 2\n"),
        ),
        (
            "invalid/012",
            conf("c.toml", "[limits]\nrequest_field_size = 98\n"),
        ),
        (
            "valid/024",
            conf(
                "d.toml",
                "[limits]\nrequest_line = 8200\nrequest_field_size = 8210\n",
            ),
        ),
    ];
    for (case, config) in &cases {
        let server = echo_server(&["-c", config]);
        let (summary, failed) = run_corpus(&server, &["--case", case]);
        assert!(failed.is_empty(), "{case}: {summary}");
        assert_eq!(summary, "1 passed, 0 failed", "{case}");
    }
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn smuggling_shapes_are_refused_and_never_reach_the_app() {
    let server = echo_server(&[]);
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ];
    for raw in cases {
        let resp = server.raw(raw, Duration::from_secs(5));
        let line = status_line(&resp);
        assert!(
            line.starts_with("HTTP/1.1 4"),
            "{:?} got {resp:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(!resp.contains("REQUEST_METHOD"), "reached the app: {resp}");
    }
    let resp = server.raw(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", Duration::from_secs(5));
    assert!(status_line(&resp).starts_with("HTTP/1.1 505"), "{resp}");
}

#[test]
fn a_refused_request_does_not_cost_the_valid_ones_before_it() {
    let server = echo_server(&[]);
    let resp = server.raw(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        Duration::from_secs(5),
    );
    // Bodies do not end in a newline: find status lines anywhere.
    let statuses: Vec<&str> = resp
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| resp[i..].lines().next().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 400 Bad Request"
        ],
        "{resp}"
    );
}

#[test]
fn limits_answer_414_and_431() {
    let server = echo_server(&[]);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
    assert!(
        status_line(&server.raw(long_line.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 414")
    );
    let long_field = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert!(
        status_line(&server.raw(long_field.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 431")
    );
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert!(
        status_line(&server.raw(many.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 431")
    );
}

/// Runs curl; returns (stdout, stderr, success).
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

fn front_app(extra: &[&str]) -> Server {
    let apps = apps_dir();
    let mut args = vec!["--chdir", apps.to_str().unwrap(), "-w", "1"];
    args.extend_from_slice(extra);
    args.push("front_app:app");
    Server::start(args)
}

#[test]
fn http2_with_prior_knowledge_and_http10() {
    let server = front_app(&[]);
    let (body, err, ok) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &server.url("/environ"),
    ]);
    assert!(ok, "{err}");
    assert!(body.ends_with("\n2"), "{body}");
    assert!(body.contains("\"SERVER_PROTOCOL\": \"HTTP/2\""), "{body}");
    let (body, err, ok) = curl(&[
        "--http1.0",
        "-w",
        "\n%{http_version}",
        &server.url("/environ"),
    ]);
    assert!(ok, "{err}");
    // curl reports HTTP/1.0 as "1" or "1.0" depending on its version.
    assert!(body.ends_with("\n1.0") || body.ends_with("\n1"), "{body}");
    assert!(body.contains("\"SERVER_PROTOCOL\": \"HTTP/1.0\""), "{body}");
}

#[test]
fn tls_with_alpn_h2_http11_and_https_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = front_app(&["--certfile", &cert, "--keyfile", &key]);
    let url = format!("https://{}/environ", server.addr);
    let (body, err, ok) = curl(&[
        "--cacert",
        &cert,
        "--http2",
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(body.ends_with("\n2"), "{body}");
    assert!(body.contains("\"wsgi.url_scheme\": \"https\""), "{body}");
    let (body, err, ok) = curl(&[
        "--cacert",
        &cert,
        "--http1.1",
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(body.ends_with("\n1.1"), "{body}");
    // Old protocol versions are refused.
    let (_, _, ok) = curl(&["--cacert", &cert, "--tls-max", "1.1", &url]);
    assert!(!ok, "TLS 1.1 was accepted");
    // Plain HTTP on the TLS port is not served.
    let raw = server.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_secs(3));
    assert!(!raw.contains("200 OK"), "{raw}");
}

#[test]
fn tls_certificate_is_reread_on_hup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = front_app(&["--certfile", &cert, "--keyfile", &key]);
    let url = format!("https://{}/environ", server.addr);
    let fingerprint = |cert: &str| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-in", cert])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let served = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect {} 2>/dev/null | openssl x509 -noout -fingerprint",
                server.addr
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = fingerprint(&cert);
    assert_eq!(served(), before);
    let new_dir = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = certificate(new_dir.path());
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let from = server.log_len();
    server.signal(1);
    server.wait_for_log_after(from, "TLS certificate reloaded", Duration::from_secs(10));
    assert_ne!(served(), before);
    assert_eq!(served(), fingerprint(&cert));
    let (_, err, ok) = curl(&["--cacert", &cert, &url]);
    assert!(ok, "{err}");
}

#[test]
fn app_responses_are_compressed_static_files_are_not() {
    let static_dir = format!("/static/={}", repo().join("static_fixtures").display());
    let server = front_app(&["--static", &static_dir]);
    let r = client()
        .get(server.url("/big?n=5000"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    // application/octet-stream is not compressible: left alone.
    assert!(r.headers().get("content-encoding").is_none());
    let r = client()
        .get(server.url(&format!("/environ?pad={}", "x".repeat(2000))))
        .header("accept-encoding", "br;q=1, gzip;q=0.5")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    assert!(r.headers()["vary"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    let r = client()
        .get(server.url(&format!("/environ?pad={}", "x".repeat(2000))))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = client()
        .get(server.url("/environ"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "a small body was compressed"
    );
    let r = client()
        .get(server.url("/static/js/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "static file compressed on the fly"
    );
}

/// A compressed app response no longer has the bytes its strong ETag named: it
/// goes out weak (`W/"..."`), as nginx's gzip filter sends it; a weak one stays,
/// and an uncompressed answer keeps the app's validator as it is.
#[test]
fn a_compressed_app_response_has_a_weak_etag() {
    let server = front_app(&[]);
    let etag = |query: &str, accept: &str| {
        let r = client()
            .get(server.url(&format!("/etag{query}")))
            .header("accept-encoding", accept)
            .send()
            .unwrap();
        let encoding = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        (encoding, r.headers()["etag"].to_str().unwrap().to_string())
    };
    assert_eq!(etag("", "gzip"), (Some("gzip".into()), "W/\"v1\"".into()));
    assert_eq!(etag("", "br"), (Some("br".into()), "W/\"v1\"".into()));
    assert_eq!(
        etag("?weak", "gzip"),
        (Some("gzip".into()), "W/\"v1\"".into())
    );
    assert_eq!(etag("", "identity"), (None, "\"v1\"".into()));
}

#[test]
fn slowloris_connections_do_not_delay_normal_requests() {
    let server = front_app(&["--keep-alive", "5"]);
    let baseline = {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(
                client().get(server.url("/pid")).send().unwrap().status(),
                200
            );
        }
        t.elapsed() / 20
    };
    // 300 connections that each trickle one byte of a request head every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = server.addr;
    let tricklers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut socks: Vec<_> = (0..75)
                    .filter_map(|_| std::net::TcpStream::connect(addr).ok())
                    .collect();
                let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ";
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200 {
                    for s in socks.iter_mut() {
                        let _ = s.write_all(&[head[i.min(head.len() - 1)]]);
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                socks.len()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t = std::time::Instant::now();
        assert_eq!(
            client().get(server.url("/pid")).send().unwrap().status(),
            200
        );
        worst = worst.max(t.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened: usize = tricklers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(opened >= 290, "only {opened} slow connections opened");
    assert!(
        worst < Duration::from_millis(500),
        "worst {worst:?} (baseline {baseline:?})"
    );
}

fn limits_config(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("limits.toml");
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn slow_heads_get_408_idle_connections_close_stalled_bodies_get_408() {
    let dir = tempfile::tempdir().unwrap();
    let conf = limits_config(dir.path(), "[limits]\nhead_timeout = 1\nbody_timeout = 1\n");
    let server = front_app(&["-c", &conf, "--keep-alive", "1"]);

    let started = std::time::Instant::now();
    let resp = server.raw(
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Slow",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let resp = server.raw(b"", Duration::from_secs(5));
    assert_eq!(resp, "", "an idle connection got bytes");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "{idle:?}"
    );

    let resp = server.raw(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
}

#[test]
fn connections_over_the_limit_wait_in_the_backlog() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let conf = limits_config(dir.path(), "[limits]\nmax_connections = 2\n");
    let server = front_app(&["-c", &conf, "--keep-alive", "30"]);
    let a = std::net::TcpStream::connect(server.addr).unwrap();
    let b = std::net::TcpStream::connect(server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = std::net::TcpStream::connect(server.addr).unwrap();
    c.write_all(b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(c.read(&mut buf).is_err(), "served beyond max_connections");
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(b);
}

// ---- trusted proxies and the PROXY protocol (issue 5 item 6) -----------------------

/// tests/apps/front_app.py, whose `/environ` answers the CGI environ as JSON.
fn environ_server(extra: &[&str]) -> Server {
    let apps = apps_dir();
    let mut args = vec!["--chdir", apps.to_str().unwrap(), "-w", "1"];
    args.extend_from_slice(extra);
    args.push("front_app:app");
    Server::start(args)
}

fn environ(server: &Server, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut req = client().get(server.url("/environ"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status();
    let text = resp.text().unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The JSON body of a raw exchange that ends with the server closing.
fn raw_environ(server: &Server, bytes: &[u8]) -> serde_json::Value {
    let resp = server.raw(bytes, Duration::from_secs(10));
    assert!(status_line(&resp).starts_with("HTTP/1.1 200"), "{resp:?}");
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn a_trusted_proxy_sets_the_client_address_and_scheme() {
    let server = environ_server(&["--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"]);
    let env = environ(
        &server,
        &[
            ("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    assert_eq!(env["REMOTE_ADDR"], "1.2.3.4", "{env}");
    assert_eq!(env["wsgi.url_scheme"], "https", "{env}");
    let env = environ(&server, &[("X-Forwarded-Ssl", "on")]);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1", "{env}");
    assert_eq!(env["wsgi.url_scheme"], "https", "{env}");

    // One source, X-Forwarded-For by default: RFC 7239's field is not read
    // (tests/client_address.rs has `real_ip_header = "Forwarded"`).
    let env = environ(
        &server,
        &[
            ("Forwarded", r#"for="[2001:db8::1]:4711";proto=https"#),
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-Proto", "http"),
        ],
    );
    assert_eq!(env["REMOTE_ADDR"], "9.9.9.9", "{env}");
    assert_eq!(env["wsgi.url_scheme"], "http", "{env}");

    // gunicorn's InvalidSchemeHeaders: a 400 before any Python runs.
    let resp = server.raw(
        b"GET /environ HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(status_line(&resp).starts_with("HTTP/1.1 400"), "{resp}");
    assert!(!resp.contains("REMOTE_ADDR"), "reached the app: {resp}");
}

#[test]
fn an_untrusted_peer_is_not_believed_but_its_headers_reach_the_app() {
    let server = environ_server(&["--forwarded-allow-ips", "10.9.9.9"]);
    let env = environ(
        &server,
        &[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Ssl", "off"),
            ("Forwarded", "for=1.2.3.4;proto=https"),
        ],
    );
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1", "{env}");
    assert_eq!(env["wsgi.url_scheme"], "http", "{env}");
    // Passed on as gunicorn does; the app must not trust them either.
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "1.2.3.4", "{env}");
    assert_eq!(env["HTTP_FORWARDED"], "for=1.2.3.4;proto=https", "{env}");
}

#[test]
fn a_bad_trust_list_is_a_config_error() {
    let out = run([
        "--forwarded-allow-ips",
        "10.0.0.1/8",
        "--check-config",
        "-b",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
}

#[test]
fn proxy_protocol_v1_and_v2_set_the_client_address() {
    let server = environ_server(&["--proxy-protocol"]);
    let request = b"GET /environ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

    let v1 = [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n".as_slice(),
        request,
    ]
    .concat();
    let env = raw_environ(&server, &v1);
    assert_eq!(env["REMOTE_ADDR"], "203.0.113.7", "{env}");
    assert_eq!(env["REMOTE_PORT"], "40000", "{env}");

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend(
        "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend([0xd4, 0x31, 0x01, 0xbb]);
    v2.extend(request);
    let env = raw_environ(&server, &v2);
    assert_eq!(env["REMOTE_ADDR"], "2001:db8::7", "{env}");
    assert_eq!(env["REMOTE_PORT"], "54321", "{env}");

    // LOCAL (a balancer's health check): the socket peer.
    let local = [b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".as_slice(), request].concat();
    assert_eq!(raw_environ(&server, &local)["REMOTE_ADDR"], "127.0.0.1");

    // The PROXY source is the peer forwarded_allow_ips judges: 203.0.113.7 is not
    // trusted, so its X-Forwarded-For is not believed.
    let spoof = [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n".as_slice(),
        b"GET /environ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    assert_eq!(raw_environ(&server, &spoof)["REMOTE_ADDR"], "203.0.113.7");

    // No header, or a broken one: closed without an answer.
    for bad in [
        request.as_slice(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let resp = server.raw(bad, Duration::from_secs(10));
        assert_eq!(resp, "", "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn gunicorn_corpus_forwarded_and_proxy_protocol_cases() {
    // 127.0.0.1 is trusted by default, as in gunicorn: the scheme conflict is refused.
    let server = echo_server(&[]);
    let (summary, failed) = run_corpus(&server, &["--case", "invalid/019"]);
    assert!(failed.is_empty(), "{summary}");
    assert_eq!(summary, "1 passed, 0 failed");
    drop(server);

    let server = echo_server(&["--proxy-protocol"]);
    let cases = [
        "valid/pp_01",
        "valid/pp_02",
        "valid/pp_04",
        "valid/pp_05",
        "invalid/pp_01",
        "invalid/pp_02",
        "invalid/pp_03",
    ];
    let args: Vec<&str> = cases.iter().flat_map(|c| ["--case", c]).collect();
    let (summary, failed) = run_corpus(&server, &args);
    assert!(failed.is_empty(), "{failed:?}: {summary}");
    assert_eq!(summary, "7 passed, 0 failed");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    use std::io::{Read, Write};
    let server = front_app(&[]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&rest).contains("\"len\": 5") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&rest)
        );
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&rest).contains("200 OK"));
}

#[test]
fn require_host_refuses_http11_without_host() {
    let dir = tempfile::tempdir().unwrap();
    let strict = limits_config(dir.path(), "[limits]\nrequire_host = true\n");
    let server = front_app(&["-c", &strict]);
    let resp = server.raw(b"GET /pid HTTP/1.1\r\n\r\n", Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = server.raw(b"GET /pid HTTP/1.0\r\n\r\n", Duration::from_secs(5));
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "{resp}"
    );
    // The default follows gunicorn (and its corpus): served.
    let lenient = front_app(&[]);
    let resp = lenient.raw(
        b"GET /pid HTTP/1.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

// ---- requests hyper only parses as guard stand-ins ---------------------------------

/// The header section of a raw response, lower-cased for case-insensitive checks.
fn response_head(resp: &str) -> String {
    resp.split_once("\r\n\r\n")
        .map_or(resp, |(head, _)| head)
        .to_ascii_lowercase()
}

#[test]
fn target_bytes_http_refuses_reach_the_app_as_the_client_sent_them() {
    let server = echo_server(&[]);
    let env = raw_environ(
        &server,
        b"GET /a<b>`c\"%22?q=\"<`>#frag HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(env["REQUEST_METHOD"], "GET", "{env}");
    assert_eq!(env["PATH_INFO"], "/a<b>`c\"\"", "{env}");
    assert_eq!(env["QUERY_STRING"], "q=\"<`>", "{env}");
    assert_eq!(env["RAW_URI"], "/a<b>`c\"%22?q=\"<`>", "{env}");
    assert!(
        env.get("HTTP_X_FERRICORN_ORIGINAL_REQUEST").is_none(),
        "{env}"
    );

    let env = raw_environ(
        &server,
        b"GET http://a/x\"y?q=\"z\" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(env["PATH_INFO"], "/x\"y", "{env}");
    assert_eq!(env["QUERY_STRING"], "q=\"z\"", "{env}");

    // As many fields as allowed: the one the guard adds must not make hyper refuse.
    let fields: String = (0..98).map(|i| format!("X-{i}: v\r\n")).collect();
    let full = format!("GET /?q=\"full\" HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n");
    let env = raw_environ(&server, full.as_bytes());
    assert_eq!(env["QUERY_STRING"], "q=\"full\"", "{env}");
    assert_eq!(env["HTTP_X_97"], "v", "{env}");
}

#[test]
fn a_client_cannot_send_the_guards_internal_field() {
    let server = echo_server(&[]);
    let spoofs: &[&[u8]] = &[
        b"GET /real HTTP/1.1\r\nHost: a\r\nX-Ferricorn-Original-Request: GET /admin\r\n\r\n",
        // also on a request that gets a stand-in (and the guard's own field) anyway
        b"GET /real?q=\"1\" HTTP/1.1\r\nHost: a\r\nx-ferricorn-original-request: CONNECT admin:443\r\n\r\n",
        b"POST /real HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Ferricorn-Original-Request: GET /admin\r\n\r\n",
    ];
    for raw in spoofs {
        let resp = server.raw(raw, Duration::from_secs(5));
        assert!(status_line(&resp).starts_with("HTTP/1.1 400"), "{resp}");
        assert!(!resp.contains("REQUEST_METHOD"), "reached the app: {resp}");
    }
    // HTTP/2 does not go through the guard: the field is removed, never believed.
    let (body, err, ok) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "X-Ferricorn-Original-Request: CONNECT admin:443",
        &server.url("/real?x=1"),
    ]);
    assert!(ok, "{err}");
    let env: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["REQUEST_METHOD"], "GET", "{env}");
    assert_eq!(env["RAW_URI"], "/real?x=1", "{env}");
    assert!(
        env.get("HTTP_X_FERRICORN_ORIGINAL_REQUEST").is_none(),
        "{env}"
    );
}

#[test]
fn connect_is_served_by_the_app_without_a_tunnel_and_ends_the_connection() {
    let server = echo_server(&[]);
    let started = std::time::Instant::now();
    let resp = server.raw(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 5\r\n\r\nhello\
          GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the connection stayed open: {resp}"
    );
    assert!(status_line(&resp).starts_with("HTTP/1.1 200"), "{resp}");
    let head = response_head(&resp);
    assert!(head.contains("\r\nconnection: close"), "{resp}");
    assert!(head.contains("\r\ncontent-length: "), "{resp}");
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "served after CONNECT: {resp}"
    );
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let env: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(env["REQUEST_METHOD"], "CONNECT", "{env}");
    // gunicorn's PATH_INFO for authority-form (see cases.json)
    assert_eq!(env["PATH_INFO"], "443", "{env}");
    assert_eq!(env["HTTP_HOST"], "example.com:443", "{env}");
    assert_eq!(env["body_b64"], "aGVsbG8=", "{env}");

    let env = raw_environ(
        &server,
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    );
    assert_eq!(env["REQUEST_METHOD"], "CONNECT", "{env}");
    assert_eq!(env["PATH_INFO"], "[::1]:443", "{env}");
}

/// A path whose `..` climbs above `/` (in any spelling) or that holds a NUL once
/// decoded has no normal form: 400 over HTTP/1 and HTTP/2, before the app. Odd but
/// harmless spellings reach the app with their PATH_INFO and RAW_URI untouched.
#[test]
fn a_path_above_the_root_is_400_and_odd_spellings_reach_the_app_untouched() {
    let server = echo_server(&[]);
    let above = [
        "/..",
        "/../etc/passwd",
        "/a/../../b",
        "/%2e%2e/x",
        "/%2E%2e%2Fx",
        "/a%2f..%2F..%2fb",
        "/.%2E/x",
        "//..//..//x",
        "/a%00b",
        "/a%00",
    ];
    for path in above {
        let (status, answer) = h1_request(&server, "GET", path, b"");
        assert_eq!(status, 400, "HTTP/1 {path}: {answer}");
        let (status, body) = h2_request(&server, "GET", path, b"");
        assert_eq!(status, 400, "HTTP/2 {path}: {body}");
    }
    for target in [
        "http://a/../x",
        "http://a/%2e%2e/x?q",
        "/../x?q=<",
        "/%2e%2e/`",
    ] {
        let (status, answer) = h1_request(&server, "GET", target, b"");
        assert_eq!(status, 400, "HTTP/1 {target}: {answer}");
    }
    // Decoded once only, `;` and trailing dots are plain bytes, `?`/`#` encoded are
    // part of the path: the app gets exactly what the client sent.
    for (raw, path_info) in [
        ("/%252e%252e/x", "/%2e%2e/x"),
        ("/..;/x", "/..;/x"),
        ("/a./b../...", "/a./b../..."),
        ("/a%3F..%23/b", "/a?..#/b"),
        ("//x/..%2F", "//x/../"),
    ] {
        let req = format!("GET {raw}?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let env = raw_environ(&server, req.as_bytes());
        assert_eq!(env["PATH_INFO"], path_info, "{raw}: {env}");
        assert_eq!(env["RAW_URI"], format!("{raw}?q=1"), "{env}");
    }
    // Many slashes and many `..` cost linear work, over both protocols.
    let slashes = format!("{}x", "/".repeat(3000));
    let climbs = "/x/..".repeat(600);
    for path in [&slashes, &climbs] {
        assert_eq!(h1_request(&server, "GET", path, b"").0, 200);
        assert_eq!(h2_request(&server, "GET", path, b"").0, 200);
    }
}
