//! FastAPI under ASGI workers (issue 27), tests/apps/asgi_fastapi.py: JSON over
//! HTTP/1.1 and HTTP/2 with `-k uvicorn.workers.UvicornWorker`; the lifespan's
//! `yield {"n": ...}` state read by a route, its shutdown run on TERM and HUP, in
//! each worker under `--preload`; a
//! `BackgroundTasks` task whose effect a later request sees; a 200 MB `FileResponse`
//! sent by the front through `http.response.pathsend` (the worker reads none of it);
//! a handler sleeping past its timeout (global, then `[[route]]`) cancelled and
//! answered 504 while the same worker serves another request; a 64 MiB upload read
//! as a stream; the WebSocket echo of tests/ws_clients (the `websockets` library over
//! HTTP/1.1 and TLS, `h2` + `wsproto` over RFC 8441, h2c and TLS); the
//! denial-response extension (401) and a close before accept (403) over HTTP/1.1 and
//! HTTP/2; WebSockets counted against `--worker-connections`, their places freed at
//! close; an ASGI app started as WSGI, and the reverse, refused with one line; the
//! scope's fields (path, raw_path, root_path, client and scheme after proxy trust,
//! http_version) as uvicorn gives them.

mod common;

use common::*;
use std::io::Read;
use std::time::{Duration, Instant};

const APP: &str = "asgi_fastapi:app";
const CLIENT_DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn json_lifespan_state_and_a_background_task() {
    let server = test_app(APP, &["-k", "uvicorn.workers.UvicornWorker", "-w", "1"]).start();
    let json = get_json(&server.url("/json"));
    assert_eq!(json["hello"], "fastapi", "{json}");
    assert_eq!(json["in_task"], true, "{json}");
    assert_eq!(json["main_thread"], true, "{json}");
    let state = get_json(&server.url("/state"));
    assert_eq!(state["n"], 27, "{state}");
    // The lifespan ran in the worker that serves.
    assert_eq!(state["started_in"], json["pid"], "{state}");
    let (status, body) = h2_request(&server, "GET", "/state", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        state
    );

    let queued = client().post(server.url("/tasks/first")).send().unwrap();
    assert_eq!(queued.status(), 200);
    // The task runs after the answer (a sync function: in the loop's executor).
    wait_until(
        "the background task's effect",
        Duration::from_secs(30),
        || get_json(&server.url("/tasks"))["recorded"] == serde_json::json!(["first"]),
    );
}

/// The echo app on one worker (`--threads` is the loop's executor, not a bound on
/// the WebSockets: those are tasks).
fn echo_server(extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi", "-w", "1"];
    args.extend_from_slice(extra);
    test_app(APP, &args).start()
}

#[test]
fn websocket_echo_over_http1() {
    let server = echo_server(&[]);
    let base = format!("ws://{}", server.addr);
    let out = run_client(&server, "echo_client.py", &[&base], CLIENT_DEADLINE);
    assert!(out.contains("all checks passed"), "{out}");
    assert_eq!(get_json(&server.url("/json"))["hello"], "fastapi");
}

#[test]
fn websocket_echo_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = echo_server(&["--certfile", &cert, "--keyfile", &key]);
    let base = format!("wss://127.0.0.1:{}", server.addr.port());
    let args = [base.as_str(), "--cafile", &cert];
    let out = run_client(&server, "echo_client.py", &args, CLIENT_DEADLINE);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn websocket_echo_over_http2() {
    let server = echo_server(&[]);
    let port = server.addr.port().to_string();
    let args = ["127.0.0.1", port.as_str()];
    let out = run_client(&server, "h2_client.py", &args, CLIENT_DEADLINE);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn websocket_echo_over_tls_with_alpn_h2() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = echo_server(&["--certfile", &cert, "--keyfile", &key]);
    let port = server.addr.port().to_string();
    let args = ["127.0.0.1", port.as_str(), "--tls", &cert];
    let out = run_client(&server, "h2_client.py", &args, CLIENT_DEADLINE);
    assert!(out.contains("all checks passed"), "{out}");
}

/// `--worker-connections 4`: four open WebSockets fill the one worker, so a request
/// waits in the front's queue (503 after `queue_timeout`); a WebSocket's close frees
/// its place, again and again.
#[test]
fn websockets_count_against_worker_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("f.toml");
    std::fs::write(&conf, "[workers]\nqueue_timeout = 1\n").unwrap();
    let conf = conf.to_str().unwrap();
    let server = echo_server(&["--worker-connections", "4", "-c", conf]);
    let mut held: Vec<_> = (0..4).map(|_| ws_open(server.addr, "/echo")).collect();
    for s in held.iter_mut() {
        ws_echo(s, "held");
    }
    let (status, _) = get(&server.url("/json"));
    assert_eq!(status, 503, "a fifth stream found room");
    for round in 0..3 {
        let mut s = held.pop().unwrap();
        ws_send(&mut s, 0x8, &1000u16.to_be_bytes());
        assert_eq!(ws_recv(&mut s).map(|f| f.0), Some(0x8), "round {round}");
        drop(s);
        wait_until("a freed place", Duration::from_secs(30), || {
            get(&server.url("/json")).0 == 200
        });
        held.push(ws_open(server.addr, "/echo"));
        ws_echo(held.last_mut().unwrap(), "again");
        assert_eq!(get(&server.url("/json")).0, 503, "round {round}");
    }
}

/// `send_denial_response` answers the handshake with the app's page; a close before
/// accept is a 403. Neither opens a WebSocket, over HTTP/1.1 or HTTP/2.
#[test]
fn websocket_denial_response_and_close_before_accept() {
    let server = echo_server(&[]);
    let within = Duration::from_secs(30);
    let denied = answer_until_close(server.addr, handshake("/deny").as_bytes(), within);
    assert!(denied.starts_with("HTTP/1.1 401 "), "{denied}");
    let lower = denied.to_ascii_lowercase();
    assert!(lower.contains("x-denied: yes"), "{denied}");
    assert!(!lower.contains("sec-websocket-accept"), "{denied}");
    assert!(denied.ends_with("no ticket"), "{denied}");
    let rejected = answer_until_close(server.addr, handshake("/reject").as_bytes(), within);
    assert!(rejected.starts_with("HTTP/1.1 403 "), "{rejected}");

    runtime().block_on(async {
        let addr = server.addr;
        let mut client = h2_client(addr).await;
        let (status, _, mut body) = h2_ws_connect(&mut client, addr, "/deny", &[]).await;
        assert_eq!(status, 401);
        let mut page = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            page.extend_from_slice(&chunk);
        }
        assert_eq!(page, b"no ticket");
        let (status, _, _) = h2_ws_connect(&mut client, addr, "/reject", &[]).await;
        assert_eq!(status, 403);
        // The connection and the worker go on.
        let (status, _) = h2_get(&mut client, addr, "/json").await;
        assert_eq!(status, 200);
    });
}

/// A 64 MiB upload read by the app as a stream (`more_body`), over HTTP/1.1 and
/// HTTP/2: every byte arrives, in many chunks, and the worker does not hold it all.
#[test]
fn a_request_body_is_streamed_to_the_app() {
    let server = echo_server(&[]);
    let worker = children(server.pid())[0];
    let body: Vec<u8> = (0..64u64 << 20).map(pattern).collect();
    let sum: u64 = body.iter().map(|b| *b as u64).sum();
    let rss_before = rss_kib(worker);
    let resp = client()
        .post(server.url("/upload"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        (v["size"].as_u64(), v["sum"].as_u64()),
        (Some(64 << 20), Some(sum)),
        "{v}"
    );
    assert!(v["chunks"].as_u64().unwrap() > 1, "{v}");
    let grown = rss_kib(worker).saturating_sub(rss_before);
    assert!(
        grown < 48 * 1024,
        "the worker grew {grown} KiB for a 64 MiB upload"
    );
    let (status, text) = h2_request(&server, "POST", "/upload", &body);
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["size"].as_u64(), v["sum"].as_u64()),
        (Some(64 << 20), Some(sum)),
        "{v}"
    );
}

/// The scope's fields as the ASGI spec and uvicorn 0.55 give them (checked against
/// it): `path` decoded once and prefixed with `--root-path`, `raw_path` as sent
/// (prefixed too), the query string as sent, `client` and `scheme` after proxy trust,
/// `http_version` "2" over HTTP/2; odd spellings reach the app as the client sent
/// them and a path above the root never reaches it, over HTTP/1.1 and HTTP/2.
#[test]
fn the_scope_as_the_spec_and_uvicorn_give_it() {
    let server = echo_server(&["--root-path", "/api"]);
    let v = get_json(&server.url("/scope/a%20b%2Fc?x=1&y=%20"));
    assert_eq!(v["path"], "/api/scope/a b/c", "{v}");
    assert_eq!(v["raw_path"], "/api/scope/a%20b%2Fc", "{v}");
    assert_eq!(v["root_path"], "/api", "{v}");
    assert_eq!(v["query_string"], "x=1&y=%20", "{v}");
    assert_eq!(v["rest"], "a b/c", "{v}");
    assert_eq!(v["client"][0], "127.0.0.1", "{v}");
    assert_eq!(v["scheme"], "http", "{v}");
    assert_eq!(v["http_version"], "1.1", "{v}");
    assert_eq!(v["asgi"]["version"], "3.0", "{v}");
    for (raw, path) in [
        ("/scope/%252e%252e/x", "/api/scope/%2e%2e/x"),
        ("/scope/..;/x", "/api/scope/..;/x"),
        ("/scope/a%3F..%23/b", "/api/scope/a?..#/b"),
    ] {
        let (status, answer) = h1_request(&server, "GET", raw, b"");
        assert_eq!(status, 200, "{raw}: {answer}");
        assert!(
            answer.contains(&format!("\"path\":\"{path}\"")),
            "{raw}: {answer}"
        );
        let (status, body) = h2_request(&server, "GET", raw, b"");
        assert_eq!(status, 200, "{raw}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["path"], path, "{v}");
        assert_eq!(v["raw_path"], format!("/api{raw}"), "{v}");
        assert_eq!(v["http_version"], "2", "{v}");
    }
    for above in [
        "/scope/../../x",
        "/scope/%2e%2e/%2E%2e/x",
        "/a%2f..%2F..%2fb",
    ] {
        assert_eq!(h1_request(&server, "GET", above, b"").0, 400, "{above}");
        assert_eq!(h2_request(&server, "GET", above, b"").0, 400, "{above}");
    }

    // A trusted proxy's X-Forwarded-For and -Proto (loopback is trusted by default),
    // and the same from a peer that is not trusted.
    let forwarded = |server: &Server| {
        let resp = client()
            .get(server.url("/scope/p"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .send()
            .unwrap();
        resp.json::<serde_json::Value>().unwrap()
    };
    let v = forwarded(&server);
    assert_eq!(
        (&v["client"][0], &v["scheme"]),
        (&"203.0.113.7".into(), &"https".into()),
        "{v}"
    );
    let untrusted = echo_server(&["--forwarded-allow-ips", "10.9.9.9"]);
    let v = forwarded(&untrusted);
    assert_eq!(
        (&v["client"][0], &v["scheme"]),
        (&"127.0.0.1".into(), &"http".into()),
        "{v}"
    );
}

const BIG: u64 = 200 * 1000 * 1000;

/// The file's byte at `offset`: a pattern no shift of it repeats soon.
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8 ^ (offset >> 20) as u8
}

#[test]
fn a_file_response_goes_out_through_pathsend() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        while written < BIG {
            let n = (BIG - written).min(1 << 20) as usize;
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(written + i as u64);
            }
            std::io::Write::write_all(&mut f, &chunk[..n]).unwrap();
            written += n as u64;
        }
    }
    let server = test_app(APP, &["-k", "asgi", "-w", "1"])
        .env("ASGI_BIG_FILE", &path)
        .start();
    let worker = children(server.pid())[0];
    get_json(&server.url("/json"));
    let (read_before, rss_before) = (read_chars(worker), rss_kib(worker));
    let start = Instant::now();
    let mut resp = client().get(server.url("/file")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["x-pathsend"], "offered", "{headers:?}");
    assert_eq!(headers["content-length"], BIG.to_string().as_str());
    assert_eq!(headers["content-type"], "application/octet-stream");
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = resp.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != pattern(got + i as u64) {
                panic!("byte {} differs", got + i as u64);
            }
        }
        got += n as u64;
    }
    let took = start.elapsed();
    assert_eq!(got, BIG);
    let (read_after, rss_after) = (read_chars(worker), rss_kib(worker));
    println!(
        "200 MB FileResponse in {took:?}; the worker read {} bytes, its RSS {rss_before} -> \
         {rss_after} KiB",
        read_after - read_before
    );
    assert!(
        read_after - read_before < BIG / 100,
        "the worker read the file itself: {} bytes",
        read_after - read_before
    );
    assert!(rss_after < rss_before + 32 * 1024, "worker RSS grew");
}

/// `GET /sleep/30` on the one worker while `-t 2` (or its route's timeout) holds:
/// 504 in about 2 s, the handler cancelled (it counts that), the same worker
/// answering meanwhile and after.
fn sleep_past_the_timeout(server: &Server) {
    let pid = get_json(&server.url("/json"))["pid"].clone();
    let workers = children(server.pid());
    let url = server.url("/sleep/30");
    let slow = std::thread::spawn(move || {
        let start = Instant::now();
        let status = client().get(url).send().unwrap().status().as_u16();
        (status, start.elapsed())
    });
    // The worker serves another request while the first one sleeps.
    let other = get_json(&server.url("/json"));
    assert_eq!(other["pid"], pid);
    let (status, took) = slow.join().unwrap();
    assert_eq!(status, 504);
    assert!(took < Duration::from_secs(15), "504 after {took:?}");
    wait_until(
        "the handler's cancellation",
        Duration::from_secs(30),
        || get_json(&server.url("/cancelled"))["cancelled"] == 1,
    );
    assert_eq!(get_json(&server.url("/json"))["pid"], pid);
    assert_eq!(children(server.pid()), workers, "the worker was replaced");
}

#[test]
fn a_handler_past_its_timeout_is_cancelled_and_the_worker_lives_on() {
    let server = echo_server(&["-t", "2"]);
    sleep_past_the_timeout(&server);

    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("f.toml");
    std::fs::write(&conf, "[[route]]\nprefix = \"/sleep/\"\ntimeout = 2\n").unwrap();
    let server = echo_server(&["-t", "60", "-c", conf.to_str().unwrap()]);
    sleep_past_the_timeout(&server);
}

#[test]
fn lifespan_shutdown_runs_on_term() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("lifespan.log");
    let mut server = test_app(APP, &["-k", "asgi", "-w", "2"])
        .env("ASGI_LIFESPAN_LOG", &log)
        .start();
    let mut workers = children(server.pid());
    workers.sort();
    assert_eq!(get_json(&server.url("/state"))["n"], 27);
    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("shutdown "))
        .map(|p| p.parse().unwrap())
        .collect();
    pids.sort();
    assert_eq!(pids, workers, "{text}");
}

/// `--preload`: the app is imported once, but the lifespan runs in each worker
/// (its state names the worker that serves); HUP brings new workers and runs the old
/// ones' lifespan shutdown.
#[test]
fn preload_and_hup_with_asgi_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("lifespan.log");
    let server = test_app(APP, &["-k", "asgi", "-w", "2", "--preload"])
        .env("ASGI_LIFESPAN_LOG", &log)
        .start();
    // Each answer's lifespan state was made in the worker that serves, never in the
    // zygote.
    let mut old = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let state = get_json(&server.url("/state"));
        assert_eq!(state["n"], 27, "{state}");
        assert_eq!(state["started_in"], state["pid"], "{state}");
        old.insert(state["pid"].as_i64().unwrap());
    }
    server.signal(1);
    wait_until("new workers", Duration::from_secs(60), || {
        let pid = get_json(&server.url("/json"))["pid"].as_i64().unwrap();
        !old.contains(&pid)
    });
    wait_until(
        "the old workers' lifespan shutdown",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            old.iter()
                .all(|p| text.contains(&format!("shutdown {p}\n")))
        },
    );
}

#[test]
fn the_wrong_interface_is_one_line_and_exit_2() {
    let apps = apps_dir();
    let apps = apps.to_str().unwrap();
    let out = run(["--chdir", apps, "--check-config", APP]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is an ASGI app"), "{err}");
    assert!(err.contains("-k asgi"), "{err}");

    let wsgi = "flask_app:app";
    let out = run(["--chdir", apps, "-k", "asgi", "--check-config", wsgi]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("WSGI app"), "{err}");

    // Started for real, the same line and exit.
    let mut server = test_app(APP, &["-w", "1"]).no_wait().start();
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(2));
    assert!(server.log().contains("is an ASGI app"), "{}", server.log());
}
