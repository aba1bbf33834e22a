//! One source of the client's address (issue 25, items 3 and 5): behind a trusted
//! proxy, the field `real_ip_header` names (X-Forwarded-For by default) decides
//! REMOTE_ADDR, `wsgi.url_scheme`, the access log's client and the rate-limit key,
//! all four the same, over HTTP/1.1 and HTTP/2; a field the proxy passes through
//! from the client (`Forwarded` here) changes none of them. Rate limits key IPv6
//! clients by their /64.
//!
//! This test process is the "proxy": it connects from 127.0.0.1 and sends the fields
//! a proxy that appends X-Forwarded-For and passes the rest through would send.

mod common;

use common::*;
use std::time::Duration;

/// tests/apps/front_app.py (`/environ` answers the environ as JSON, any path under
/// it too), access log on stdout, `/environ/limited` limited to one request a
/// minute per client, and `extra` flags.
fn serve(dir: &std::path::Path, route: &str, extra: &[&str]) -> Server {
    let conf = dir.join("limits.toml");
    std::fs::write(
        &conf,
        format!("[[route]]\nprefix = \"/environ/limited\"\nrate = \"1/m\"\n{route}"),
    )
    .unwrap();
    let mut args = vec!["-w", "1", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(&["--access-logfile", "-"]);
    args.extend_from_slice(extra);
    test_app("front_app:app", &args).start()
}

/// The client a proxy reports, and the one the client itself wrote in `Forwarded`.
const REAL: &str = "203.0.113.5";
const CHOSEN: &str = "198.51.100.77";

/// What one request gave: status, REMOTE_ADDR, url_scheme, SERVER_PORT, and the
/// access log's client (the first word of its line).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    remote_addr: String,
    scheme: String,
    server_port: String,
    logged: String,
}

/// GET `path` over HTTP/1.1 with `fields`, tagged with a unique User-Agent to find
/// its access log line.
fn get_h1(server: &Server, path: &str, fields: &[(&str, &str)]) -> Seen {
    let tag = unique_tag();
    let mut req = client().get(server.url(path)).header("user-agent", &tag);
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    seen(server, status, &resp.text().unwrap(), &tag)
}

/// The same over HTTP/2 (h2c, prior knowledge), with the `h2` crate.
fn get_h2(server: &Server, path: &str, fields: &[(&str, &str)]) -> Seen {
    let tag = unique_tag();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let mut req = http::Request::get(server.url(path)).header("user-agent", &tag);
        for (k, v) in fields {
            req = req.header(*k, *v);
        }
        let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        (status, String::from_utf8(out).unwrap())
    });
    seen(server, status, &body, &tag)
}

fn unique_tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("client-address-test/{}-{n}", std::process::id())
}

fn seen(server: &Server, status: u16, body: &str, tag: &str) -> Seen {
    let line = server.wait_for_log(tag, Duration::from_secs(10));
    let logged = line.split(' ').next().unwrap_or_default().to_string();
    let env: serde_json::Value = if status == 200 {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    } else {
        serde_json::Value::Null
    };
    let field = |k: &str| env[k].as_str().unwrap_or_default().to_string();
    Seen {
        status,
        remote_addr: field("REMOTE_ADDR"),
        scheme: field("wsgi.url_scheme"),
        server_port: field("SERVER_PORT"),
        logged,
    }
}

type Get = fn(&Server, &str, &[(&str, &str)]) -> Seen;
const BOTH: [(&str, Get); 2] = [("HTTP/1.1", get_h1), ("HTTP/2", get_h2)];

#[test]
fn behind_a_proxy_that_sets_x_forwarded_for_a_client_forwarded_field_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "", &["--forwarded-allow-ips", "127.0.0.1"]);
    for (n, (version, get)) in BOTH.into_iter().enumerate() {
        let chosen = format!("for={CHOSEN};proto=https");
        let got = get(
            &server,
            "/environ",
            &[("forwarded", &chosen), ("x-forwarded-for", REAL)],
        );
        assert_eq!(got.status, 200, "{version}");
        assert_eq!(got.remote_addr, REAL, "{version}");
        assert_eq!(got.scheme, "http", "{version}");
        assert_eq!(got.logged, REAL, "{version}: the access log");

        // The client's own X-Forwarded-For before the proxy's append, in the same
        // line or in a line of its own, respelled; junk and empty items too.
        let one_line = format!("1.1.1.1, \"x\",, {REAL}");
        for fields in [
            &[("x-forwarded-for", one_line.as_str())][..],
            &[
                ("X-FORWARDED-FOR", "1.1.1.1, 2.2.2.2,"),
                ("x-forwarded-for", REAL),
            ],
        ] {
            let got = get(&server, "/environ", fields);
            assert_eq!(
                (got.remote_addr.as_str(), got.logged.as_str()),
                (REAL, REAL),
                "{version} {fields:?}"
            );
        }

        // The rate limit counts the proxy's client, whatever `for=` each request has.
        let limited_client = format!("203.0.113.{}", 10 + n);
        for (i, expected) in [200, 429, 429].into_iter().enumerate() {
            let chosen = format!("for=198.51.100.{i};proto=https");
            let got = get(
                &server,
                "/environ/limited",
                &[("forwarded", &chosen), ("x-forwarded-for", &limited_client)],
            );
            assert_eq!(got.status, expected, "{version}, request {i}");
            assert_eq!(got.logged, limited_client, "{version}");
        }
    }
}

#[test]
fn with_real_ip_header_forwarded_only_forwarded_counts() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = serve(
        dir.path(),
        "",
        &[
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--real-ip-header",
            "Forwarded",
        ],
    );
    for (n, (version, get)) in BOTH.into_iter().enumerate() {
        let chosen = format!("for={CHOSEN};proto=https");
        let got = get(
            &trusted,
            "/environ",
            &[
                ("forwarded", &chosen),
                ("x-forwarded-for", REAL),
                ("x-forwarded-proto", "http"),
            ],
        );
        assert_eq!(got.status, 200, "{version}");
        assert_eq!(got.remote_addr, CHOSEN, "{version}");
        assert_eq!(got.scheme, "https", "{version}");
        assert_eq!(got.logged, CHOSEN, "{version}: the access log");

        // A new `for=` per request is a new client; a new X-Forwarded-For is not.
        for i in 0..3 {
            let chosen = format!("for=\"[2001:db8:{n}:{i}::1]:4711\"");
            let got = get(&trusted, "/environ/limited", &[("forwarded", &chosen)]);
            assert_eq!(got.status, 200, "{version}, /64 number {i}");
        }
        let same = format!("for=198.51.100.{}", 10 + n);
        for (i, expected) in [200, 429, 429].into_iter().enumerate() {
            let xff = format!("192.0.2.{i}");
            let got = get(
                &trusted,
                "/environ/limited",
                &[("forwarded", &same), ("x-forwarded-for", &xff)],
            );
            assert_eq!(got.status, expected, "{version}, request {i}");
        }
    }
    drop(trusted);

    // An untrusted peer's fields change nothing, in either mode.
    for source in ["Forwarded", "X-Forwarded-For"] {
        let untrusted = serve(
            dir.path(),
            "",
            &[
                "--forwarded-allow-ips",
                "10.9.9.9",
                "--real-ip-header",
                source,
            ],
        );
        for (version, get) in BOTH {
            let fields = [
                ("forwarded", "for=198.51.100.77;proto=https"),
                ("x-forwarded-for", REAL),
                ("x-forwarded-proto", "https"),
            ];
            let got = get(&untrusted, "/environ", &fields);
            assert_eq!(
                (
                    got.remote_addr.as_str(),
                    got.scheme.as_str(),
                    got.logged.as_str()
                ),
                ("127.0.0.1", "http", "127.0.0.1"),
                "{source} {version}"
            );
        }
        let limited: Vec<u16> = (0..3)
            .map(|i| {
                let chosen = format!("for=198.51.100.{i}");
                let xff = format!("203.0.113.{i}");
                let fields = [("forwarded", chosen.as_str()), ("x-forwarded-for", &xff)];
                get_h1(&untrusted, "/environ/limited", &fields).status
            })
            .collect();
        assert_eq!(limited, [200, 429, 429], "{source}: keyed by the peer");
    }
}

#[test]
fn the_scheme_a_trusted_proxy_gives_sets_the_default_server_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "", &[]);
    let got = get_h1(
        &server,
        "/environ",
        &[("x-forwarded-proto", "https"), ("host", "example.test")],
    );
    assert_eq!(
        (got.scheme.as_str(), got.server_port.as_str()),
        ("https", "443")
    );
}

#[test]
fn rate_limits_key_ipv6_clients_by_their_64() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "", &[]);
    let status =
        |xff: &str| get_h1(&server, "/environ/limited", &[("x-forwarded-for", xff)]).status;
    assert_eq!(status("2001:db8:1:2::1"), 200);
    // Another address of the same /64, however written: the same client.
    assert_eq!(status("2001:db8:1:2:ffff:ffff:ffff:ffff"), 429);
    assert_eq!(status("[2001:DB8:1:2::abcd]:443"), 429);
    // Another /64.
    assert_eq!(status("2001:db8:1:3::1"), 200);
    // IPv4-mapped IPv6 is the IPv4 client.
    assert_eq!(status("203.0.113.9"), 200);
    assert_eq!(status("::ffff:203.0.113.9"), 429);
    drop(server);

    let per_address = serve(dir.path(), "ipv6_subnet = 128\n", &[]);
    for xff in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        let got = get_h1(
            &per_address,
            "/environ/limited",
            &[("x-forwarded-for", xff)],
        );
        assert_eq!(got.status, 200, "{xff}");
    }
}

#[test]
fn with_real_ip_header_proxy_protocol_no_field_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        "",
        &[
            "--proxy-protocol",
            "--real-ip-header",
            "proxy_protocol",
            // Even a trusted PROXY source's fields are not read for the address.
            "--forwarded-allow-ips",
            "*",
        ],
    );
    let request = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n\
        GET /environ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\
        Forwarded: for=5.6.7.8\r\nConnection: close\r\n\r\n";
    let resp = server.raw(request, Duration::from_secs(10));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let env: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"));
    assert_eq!(env["REMOTE_ADDR"], "203.0.113.7", "{env}");
    assert_eq!(env["REMOTE_PORT"], "40000", "{env}");

    // Without the PROXY protocol the setting is a config error.
    let out = run([
        "--real-ip-header",
        "proxy_protocol",
        "--check-config",
        "--static",
        "/s/=.",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proxy_protocol = true"), "{err}");
}
