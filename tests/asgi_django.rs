//! Django under ASGI workers (issue 27): tests/apps/djsite's `asgi.py` (Channels'
//! `ProtocolTypeRouter`: HTTP to Django's ASGI handler, WebSockets to a consumer on
//! the in-memory channel layer) served with `-k asgi`. An async view's JSON over
//! HTTP/1.1 and HTTP/2, on uvloop unless `--asgi-loop asyncio`; the admin login (CSRF,
//! session) with its static files from the front; server-sent events from a
//! `StreamingHttpResponse` over an async generator, each received before the next is
//! produced; a client leaving mid-stream (HTTP/1 close, HTTP/2 RST_STREAM) seen by
//! Django as `http.disconnect`; `request_finished` sent for every request
//! (gunicorn#3627); a view past its timeout answered 504 and cancelled; two clients of a Channels room with the `websockets`
//! library and on RFC 8441 streams, a foreign Origin refused with 403; 2,000 idle event
//! streams on 2 workers, the master's and the workers' memory per stream printed.

mod common;

use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const APP: &str = "djsite.asgi:application";

/// The site served by ASGI workers with `extra` flags.
fn serve(site: &DjangoSite, extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi"];
    args.extend_from_slice(extra);
    site.launch(&args, APP).start()
}

fn sse_state(server: &Server, key: &str) -> String {
    let state = get_json(&server.url(&format!("/sse/{key}/state/")));
    state["state"].as_str().unwrap().to_string()
}

#[test]
fn async_view_and_admin_login_under_asgi() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "2"]);
    let view = get_json(&server.url("/async/json/"));
    assert_eq!(view["view"], "async", "{view}");
    // A Task on the loop, which runs on the interpreter's main thread.
    assert_eq!(view["in_task"], true, "{view}");
    assert_eq!(view["main_thread"], true, "{view}");
    assert_eq!(view["loop"], "uvloop", "uvloop is installed: {view}");
    let (status, body) = h2_request(&server, "GET", "/async/json/", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"view\": \"async\""), "{body}");

    let c = client();
    let css = c
        .get(server.url("/static/admin/css/base.css"))
        .send()
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers().get("etag").is_some(), "not from the front");
    let no_csrf = c
        .post(server.url("/admin/login/"))
        .form(&[("username", "admin"), ("password", DJANGO_ADMIN_PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let cookies = django_admin_login(&server, "admin", DJANGO_ADMIN_PASSWORD);
    // The session holds across requests and both workers.
    for _ in 0..4 {
        let page = c
            .get(server.url("/admin/"))
            .header("cookie", &cookies)
            .send()
            .unwrap();
        assert!(page.text().unwrap().contains("Site administration"));
    }
}

#[test]
fn asgi_loop_asyncio_is_the_standard_loop() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1", "--asgi-loop", "asyncio"]);
    let view = get_json(&server.url("/async/json/"));
    assert_eq!(view["loop"], "asyncio.unix_events", "{view}");
}

/// The generator yields `data: 0`, then waits for /release/: the client must hold
/// the first event while the last one does not exist yet.
#[test]
fn server_sent_events_arrive_as_they_are_produced() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1"]);
    let (mut s, first) = sse_open(server.addr, "/sse/h1/");
    let head = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_eq!(sse_state(&server, "h1"), "streaming");
    assert_eq!(get_json(&server.url("/sse/h1/release/"))["released"], "h1");
    let rest = read_to_close(&mut s, Duration::from_secs(30));
    assert!(rest.contains("data: 1\n\n"), "{rest:?}");
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "not a whole chunked body: {rest:?}"
    );
    assert_eq!(sse_state(&server, "h1"), "done");

    // Over HTTP/2, the release on the same connection as the stream.
    runtime().block_on(async {
        let addr = server.addr;
        let mut client = h2_client(addr).await;
        let (status, mut body) = h2_get_open(&mut client, addr, "/sse/h2/").await;
        assert_eq!(status, 200);
        let mut buf = Vec::new();
        h2_read_until(&mut body, &mut buf, b"data: 0\n\n").await;
        let (status, state) = h2_get(&mut client, addr, "/sse/h2/state/").await;
        assert_eq!(
            (status, state.as_str()),
            (200, "{\"state\": \"streaming\"}")
        );
        let (status, _) = h2_get(&mut client, addr, "/sse/h2/release/").await;
        assert_eq!(status, 200);
        h2_read_until(&mut body, &mut buf, b"data: 1\n\n").await;
        // Then the stream ends (maybe with an empty DATA frame carrying END_STREAM).
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            assert!(chunk.is_empty(), "more after data: 1: {chunk:?}");
        }
    });
    assert_eq!(sse_state(&server, "h2"), "done");
}

/// Django 5 listens for `http.disconnect` beside a streaming response and cancels
/// it: the generator sees the cancellation when the client goes, here by closing
/// its HTTP/1 connection while the stream is idle.
#[test]
fn a_client_closing_mid_stream_is_a_disconnect_for_django() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1"]);
    let (s, _) = sse_open(server.addr, "/sse/gone1/");
    drop(s);
    wait_until("HTTP/1 disconnect seen", Duration::from_secs(30), || {
        sse_state(&server, "gone1") == "disconnected"
    });
}

/// The same when the client resets the HTTP/2 stream (RST_STREAM CANCEL) and keeps
/// its connection.
#[test]
fn a_client_resetting_a_stream_is_a_disconnect_for_django() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1"]);
    runtime().block_on(async {
        let addr = server.addr;
        let mut client = h2_client(addr).await;
        h2_sse_reset(&mut client, addr, "gone2").await;
    });
}

/// Opens `/sse/{key}/` on `client`, reads its first event, resets the stream by
/// dropping it, and waits until Django saw the disconnect.
async fn h2_sse_reset(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    key: &str,
) {
    let (status, mut body) = h2_get_open(client, addr, &format!("/sse/{key}/")).await;
    assert_eq!(status, 200);
    h2_read_until(&mut body, &mut Vec::new(), b"data: 0\n\n").await;
    // Dropping the stream's last handle resets it (RST_STREAM CANCEL).
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, state) = h2_get(client, addr, &format!("/sse/{key}/state/")).await;
        if state.contains("disconnected") {
            return;
        }
        assert!(Instant::now() < deadline, "HTTP/2 reset not seen: {state}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// gunicorn#3627: a server that swallows the cancellation of Django's disconnect
/// listener (Django cancels it when a response is done) makes Django skip
/// `request_finished`, and with it `close_old_connections`. Counted over 200 async
/// views and 5 event streams the client reset: as many finished as started.
#[test]
fn every_request_sends_request_finished() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1"]);
    let signals = || {
        let v = get_json(&server.url("/signals/"));
        (
            v["started"].as_u64().unwrap(),
            v["finished"].as_u64().unwrap(),
        )
    };
    // Each reading counts its own start, and the one before it its finish.
    let (started, finished) = signals();
    for _ in 0..200 {
        assert_eq!(get_json(&server.url("/async/json/"))["view"], "async");
    }
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        for i in 0..5 {
            h2_sse_reset(&mut client, server.addr, &format!("left{i}")).await;
        }
    });
    wait_until(
        "request_finished for every request",
        Duration::from_secs(30),
        || {
            let (s, f) = signals();
            s - started == f - finished
        },
    );
}

/// A view past `-t 2`: 504, and the view itself cancelled, with `request_finished`
/// sent, while the worker lives on. Django's ASGIHandler runs the view in a task of
/// its own: cancelling only the app's task would leave the view running and skip
/// `request_finished`; an `http.disconnect` first lets Django cancel it.
#[test]
fn a_django_view_past_its_timeout_is_cancelled() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1", "-t", "2"]);
    let workers = children(server.pid());
    let signals = || {
        let v = get_json(&server.url("/signals/"));
        (
            v["started"].as_u64().unwrap(),
            v["finished"].as_u64().unwrap(),
        )
    };
    let (started, finished) = signals();
    let start = Instant::now();
    let slow = client().get(server.url("/slow/t1/")).send().unwrap();
    assert_eq!(slow.status(), 504);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    wait_until("the view's cancellation", Duration::from_secs(30), || {
        sse_state(&server, "t1") == "cancelled"
    });
    wait_until(
        "request_finished for every request",
        Duration::from_secs(30),
        || {
            let (s, f) = signals();
            s - started == f - finished
        },
    );
    assert_eq!(children(server.pid()), workers, "the worker was replaced");
}

/// The in-memory channel layer is per process: one worker holds the room.
#[test]
fn channels_room_between_two_clients() {
    let site = DjangoSite::prepare();
    let server = serve(&site, &["-w", "1"]);
    let base = format!("ws://{}", server.addr);
    let out = run_client(
        &server,
        "channels_client.py",
        &[&base],
        Duration::from_secs(120),
    );
    assert!(out.contains("all checks passed"), "{out}");

    // Two RFC 8441 streams of one HTTP/2 connection in one room.
    runtime().block_on(async {
        let addr = server.addr;
        let origin = format!("http://{addr}");
        let fields = [("origin", origin.as_str())];
        let mut client = h2_client(addr).await;
        let (status, mut a_send, a) =
            h2_ws_connect(&mut client, addr, "/ws/room/h2/", &fields).await;
        assert_eq!(status, 200);
        let (status, _b_send, b) = h2_ws_connect(&mut client, addr, "/ws/room/h2/", &fields).await;
        assert_eq!(status, 200);
        h2_ws_send(&mut a_send, 0x1, "over h2 \u{2603}".as_bytes());
        for mut r in [WsRecv::new(a), WsRecv::new(b)] {
            let (op, payload) = r.recv().await.expect("the room's message");
            assert_eq!(op, 0x1);
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(v["text"], "over h2 \u{2603}");
        }
        let evil = [("origin", "http://evil.example")];
        let (status, _, _) = h2_ws_connect(&mut client, addr, "/ws/room/h2/", &evil).await;
        assert_eq!(status, 403, "a foreign Origin over HTTP/2");
    });
}

const IDLE: usize = 2000;

/// 2,000 event streams held open, each waiting in its generator, on 2 workers: what
/// each costs the master and the workers is printed, and bounded. A stream's release
/// must reach its worker (the events are per process): `--sticky /sse/` gives each
/// stream's answer a cookie that routes its release there.
#[test]
fn two_thousand_idle_event_streams_on_two_workers() {
    // This process holds the 2,000 client sockets.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(hard >= 3 * IDLE as u64, "open-file hard limit {hard}");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let site = DjangoSite::prepare();
    // -t 0: an idle stream says nothing for longer than any timeout.
    let server = serve(
        &site,
        &[
            "-w",
            "2",
            "-t",
            "0",
            "--worker-connections",
            "1023",
            "--sticky",
            "/sse/",
        ],
    );
    // Releases the stream `key` opened on `s` (`head` its answer so far) and reads
    // its last event.
    let release = |key: &str, s: &mut TcpStream, head: &[u8]| {
        let head = String::from_utf8_lossy(head);
        let cookie = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.contains("ferricorn_worker="))
            .and_then(|(_, v)| v.trim().split(';').next())
            .unwrap_or_else(|| panic!("no sticky cookie in {head:?}"))
            .to_string();
        let url = server.url(&format!("/sse/{key}/release/"));
        let released = client().get(url).header("cookie", cookie).send().unwrap();
        assert_eq!(released.status(), 200);
        let rest = read_to_close(s, Duration::from_secs(30));
        assert!(rest.contains("data: 1\n\n"), "{rest:?}");
    };
    // Warm both workers up: streams through to their end first, so what the first
    // request of a worker allocates once is not counted per stream.
    for i in 0..20 {
        let key = format!("warm{i}");
        let (mut s, head) = sse_open(server.addr, &format!("/sse/{key}/"));
        release(&key, &mut s, &head);
    }
    let workers = children(server.pid());
    assert_eq!(workers.len(), 2, "{workers:?}");
    let rss = |pids: &[i32]| pids.iter().map(|p| rss_kib(*p)).sum::<u64>();
    let (master_before, workers_before) = (rss_kib(server.pid()), rss(&workers));
    let start = Instant::now();
    let mut held: Vec<(TcpStream, Vec<u8>)> = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        held.push(sse_open(server.addr, &format!("/sse/idle{i}/")));
    }
    let opened = start.elapsed();
    let (master_after, workers_after) = (rss_kib(server.pid()), rss(&workers));
    // All still live: the first and the last get their last event.
    for i in [IDLE - 1, 0] {
        let (s, head) = &mut held[i];
        release(&format!("idle{i}"), s, head);
    }
    assert_eq!(children(server.pid()), workers, "a worker was replaced");
    let per = |before: u64, after: u64| after.saturating_sub(before) * 1024 / IDLE as u64;
    let (master_per, workers_per) = (
        per(master_before, master_after),
        per(workers_before, workers_after),
    );
    println!(
        "{IDLE} idle SSE streams on 2 workers (opened in {opened:?}): master RSS \
         {master_before} -> {master_after} KiB ({master_per} bytes per stream), workers \
         {workers_before} -> {workers_after} KiB ({workers_per} bytes per stream)"
    );
    if master_per > 64 * 1024 || workers_per > 256 * 1024 {
        server.fail(&format!(
            "per idle stream: master {master_per} bytes (bound 64 KiB), workers \
             {workers_per} bytes (bound 256 KiB)"
        ));
    }
}
