//! Several workers for Socket.IO (issue 26): Flask-SocketIO keeps each Engine.IO
//! session in the worker that created it, so `--sticky /socket.io/` (`[[route]]
//! sticky = true`) makes the front pin a client to one worker with a cookie. Here:
//! python-socketio clients (tests/ws_clients/socketio_client.py) on `-w 2`, polling
//! then upgrading to a WebSocket, and polling only (each session's requests all
//! reach its worker, both workers hold sessions), and the cookie itself over
//! HTTP/1.1 and HTTP/2: set once, honoured (waiting for a busy worker while another
//! is free), forged or stale tokens meaning no preference, a dead worker's clients
//! moved and told.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Engine.IO's transports: long-polling, then the upgrade to a WebSocket.
const TRANSPORTS: &str = "polling,websocket";

/// tests/ws_clients/socketio_client.py: `SESSIONS EVENTS TRANSPORTS [flags]`, one
/// JSON value per session (SESSIONS `kill-worker`: one session that kills its worker
/// and connects again); every session upgraded when `transports` has `websocket`.
fn sessions_over(
    server: &Server,
    sessions: &str,
    events: usize,
    transports: &str,
    flags: &[&str],
) -> Vec<serde_json::Value> {
    let events = events.to_string();
    let mut args = vec![sessions, &events, transports];
    args.extend_from_slice(flags);
    let out = socketio_sessions(server, &args);
    if transports.contains("websocket") {
        for s in &out {
            assert_eq!(s["transport"], "websocket", "{s}");
        }
    }
    out
}

/// Each session's requests (its polls, its upgrade) reached one worker: none lost,
/// the worker counted all `events`; both workers hold sessions.
fn assert_sessions_stay_on_their_worker(sessions: &[serde_json::Value], events: u64) {
    let mut workers = BTreeSet::new();
    for s in sessions {
        assert_eq!(s["error"], serde_json::Value::Null, "{s}");
        assert_eq!(s["echoed"], events, "{s}");
        // The worker counted every event of the session: none went elsewhere.
        assert_eq!(s["events"], events, "{s}");
        let pids = s["pids"].as_array().unwrap();
        assert_eq!(pids.len(), 2, "{s}");
        assert_eq!(pids[0], pids[1], "{s}");
        workers.insert(pids[0].as_u64().unwrap());
    }
    assert_eq!(workers.len(), 2, "both workers hold sessions: {sessions:?}");
}

/// A config file in `dir` with one `[[route]]`: `prefix`, `sticky = true`.
fn sticky_route_conf(dir: &Path, prefix: &str) -> std::path::PathBuf {
    let conf = dir.join("sticky.toml");
    let route = format!("[[route]]\nprefix = \"{prefix}\"\nsticky = true\n");
    std::fs::write(&conf, route).unwrap();
    conf
}

#[test]
fn flask_socketio_sessions_stay_on_their_worker_with_two_workers() {
    let args = ["-w", "2", "--threads", "20", "--sticky", "/socket.io/"];
    let server = test_app("socketio_app:app", &args).start();
    let sessions = sessions_over(&server, "6", 30, TRANSPORTS, &[]);
    assert_eq!(sessions.len(), 6);
    assert_sessions_stay_on_their_worker(&sessions, 30);
}

/// Long-polling only: every event is its own POST and every answer a poll, each one
/// a request the sticky route must send to the session's worker.
#[test]
fn flask_socketio_polling_only_sessions_stay_on_their_worker() {
    let args = ["-w", "2", "--threads", "20", "--sticky", "/socket.io/"];
    let server = test_app("socketio_app:app", &args).start();
    let sessions = sessions_over(&server, "6", 30, "polling", &[]);
    assert_eq!(sessions.len(), 6);
    assert_sessions_stay_on_their_worker(&sessions, 30);
}

/// The sticky route from a config file (`[[route]] sticky = true`), eight sessions
/// connecting at once, each polling then upgrading, on two workers.
#[test]
fn flask_socketio_sessions_connecting_at_once_with_a_configured_route() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = sticky_route_conf(tmp.path(), "/socket.io/");
    let args = ["-c", conf.to_str().unwrap(), "-w", "2", "--threads", "20"];
    let server = test_app("socketio_app:app", &args).start();
    let sessions = sessions_over(&server, "8", 5, TRANSPORTS, &["--together"]);
    assert_eq!(sessions.len(), 8);
    let mut workers = BTreeSet::new();
    for s in &sessions {
        assert_eq!(
            (&s["error"], &s["echoed"]),
            (&serde_json::Value::Null, &5.into()),
            "{s}"
        );
        let pids = s["pids"].as_array().unwrap();
        assert_eq!(pids[0], pids[1], "{s}");
        workers.insert(pids[0].as_u64().unwrap());
    }
    println!("Socket.IO sessions held by workers {workers:?}");
    assert!(!workers.is_empty() && workers.len() <= 2, "{sessions:?}");
}

#[test]
fn a_session_whose_worker_died_connects_again_on_another() {
    // The next request of the session finds its worker gone: it goes to the other
    // one with a new cookie, Engine.IO there answers "Invalid session" (400), and
    // the client connects again, now on the other worker.
    let args = ["-w", "2", "--threads", "20", "--sticky", "/socket.io/"];
    let server = test_app("socketio_app:app", &args).start();
    let sessions = sessions_over(&server, "kill-worker", 10, TRANSPORTS, &[]);
    let s = &sessions[0];
    assert_eq!(s["error"], serde_json::Value::Null, "{s}");
    assert_eq!(
        (&s["echoed"], &s["events"]),
        (&10.into(), &10.into()),
        "{s}"
    );
    let pids = s["pids"].as_array().unwrap();
    assert_ne!(pids[0], pids[1], "{s}");
}

/// The answer of one request: status, the `Set-Cookie` of `ferricorn_worker` (if
/// any), and the body (sup_app's views answer with the worker's pid).
#[derive(Debug)]
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: String,
}

impl Answer {
    /// The `name=value` a browser sends back.
    fn cookie(&self) -> String {
        let set = self.set_cookie.as_deref().expect("a Set-Cookie");
        set.split(';').next().unwrap().to_string()
    }
}

fn h1_get(server: &Server, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = client().get(server.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().unwrap();
    let sticky: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|v| v.starts_with("ferricorn_worker="))
        .collect();
    assert!(sticky.len() <= 1, "{sticky:?}");
    Answer {
        status: resp.status().as_u16(),
        set_cookie: sticky.into_iter().next(),
        body: resp.text().unwrap(),
    }
}

/// A GET over HTTP/2 cleartext with one `cookie` field per crumb, as browsers send.
fn h2_get(server: &Server, path: &str, crumbs: &[&str]) -> Answer {
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        let mut req = http::Request::get(format!("http://{}{path}", server.addr));
        for c in crumbs {
            req = req.header("cookie", *c);
        }
        let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with("ferricorn_worker="));
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&out).into_owned();
        Answer {
            status,
            set_cookie,
            body,
        }
    })
}

/// `/wait?for=FLAG` on its own thread, returned once the view runs.
fn blocked(server: &Arc<Server>, flag: &Path, cookie: Option<&str>) -> JoinHandle<Answer> {
    let url = format!("/wait?for={}", flag.display());
    let (s, cookie) = (server.clone(), cookie.map(str::to_owned));
    let h = thread::spawn(move || h1_get(&s, &url, cookie.as_deref()));
    let started = flag.with_extension("started");
    wait_until("the view to start", Duration::from_secs(20), || {
        started.exists()
    });
    std::fs::remove_file(started).unwrap();
    h
}

/// `ferricorn_worker=<32 hex>; Path=PATH; HttpOnly; SameSite=Lax`.
fn assert_sticky_cookie(answer: &Answer, path: &str) {
    let set = answer.set_cookie.as_deref().expect("a sticky cookie");
    let (crumb, attributes) = set.split_once(';').unwrap();
    let token = crumb.strip_prefix("ferricorn_worker=").unwrap();
    assert_eq!(token.len(), 32, "{set}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{set}"
    );
    assert_eq!(attributes, format!(" Path={path}; HttpOnly; SameSite=Lax"));
}

#[test]
fn the_cookie_pins_a_client_to_its_worker_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let args = [
        "-w",
        "2",
        "--threads",
        "1",
        "--sticky",
        "/pid",
        "--sticky",
        "/wait",
        "--admin-bind",
        &admin,
    ];
    let server = Arc::new(test_app("sup_app:app", &args).start());
    // A cookie for each worker: the first takes X, the next then goes to Y.
    let on_x = blocked(&server, &dir.path().join("a"), None);
    let first = h1_get(&server, "/pid", None);
    assert_eq!(first.status, 200);
    assert_sticky_cookie(&first, "/pid");
    std::fs::write(dir.path().join("a"), "").unwrap();
    let on_x = on_x.join().unwrap();
    assert_sticky_cookie(&on_x, "/wait");
    let (x, y) = (on_x.body.clone(), first.body.clone());
    assert_ne!(x, y);
    let (cx, cy) = (on_x.cookie(), first.cookie());

    // Both idle: each cookie takes its client to its worker, and sets nothing.
    for _ in 0..5 {
        for (cookie, pid) in [(&cy, &y), (&cx, &x)] {
            let a = h1_get(&server, "/pid", Some(&format!("a=1; {cookie}; b=2")));
            assert_eq!(
                (a.status, &a.body, a.set_cookie.as_deref()),
                (200, pid, None)
            );
            let a = h2_get(&server, "/pid", &["a=1", cookie, "b=2"]);
            assert_eq!(
                (a.status, &a.body, a.set_cookie.as_deref()),
                (200, pid, None)
            );
        }
    }
    // Not under a sticky route: no cookie.
    assert_eq!(h1_get(&server, "/environ", Some(&cy)).set_cookie, None);
    assert_eq!(h2_get(&server, "/environ", &[&cy]).set_cookie, None);

    // Y busy: Y's client waits for it though X is free; X serves the others.
    let busy_y = blocked(&server, &dir.path().join("b"), Some(&cy));
    let (s, c) = (server.clone(), cy.clone());
    let pinned = thread::spawn(move || h2_get(&s, "/pid", &[&c]));
    poll_metric(
        &admin,
        "ferricorn_requests_queued",
        Duration::from_secs(20),
        |n| n == 1,
    )
    .expect("the pinned request waits");
    let other = h1_get(&server, "/pid", None);
    assert_eq!(other.body, x);
    assert_sticky_cookie(&other, "/pid");
    std::fs::write(dir.path().join("b"), "").unwrap();
    assert_eq!(busy_y.join().unwrap().body, y);
    let pinned = pinned.join().unwrap();
    assert_eq!(
        (pinned.status, &pinned.body, pinned.set_cookie),
        (200, &y, None)
    );

    // A forged or respelled token is no preference: the least busy worker answers
    // and its cookie is set.
    let forged = format!("ferricorn_worker={}", "0123456789abcdef".repeat(2));
    let upper = cy
        .to_uppercase()
        .replace("FERRICORN_WORKER", "ferricorn_worker");
    for bad in [forged, upper, format!("{cy}0")] {
        let a = h1_get(&server, "/pid", Some(&bad));
        assert_eq!(a.status, 200);
        assert_sticky_cookie(&a, "/pid");
    }

    // Y dies: its client goes to a worker that serves, and is told which.
    kill(y.parse().unwrap(), "KILL");
    wait_until("Y's replacement", Duration::from_secs(30), || {
        server.log().matches("Booted worker").count() >= 3
    });
    for crumbs in [vec![cy.as_str()], vec![]] {
        let a = h2_get(&server, "/pid", &crumbs);
        assert_eq!(a.status, 200);
        assert_ne!(a.body, y);
        assert_sticky_cookie(&a, "/pid");
        let again = h1_get(&server, "/pid", Some(&a.cookie()));
        assert_eq!((&again.body, again.set_cookie), (&a.body, None));
    }
}

/// The `Set-Cookie` curl saw for `url` (`-k`: the test's own certificate).
fn curl_set_cookie(url: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let head = assert_success("curl", &out);
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Set-Cookie in {head}"))
}

#[test]
fn the_cookie_is_secure_over_tls_or_behind_a_trusted_https_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    let conf = sticky_route_conf(dir.path(), "/caf%C3%A9;x/");
    let (cert, key) = leaf_certificate(dir.path());
    let serve = |extra: &[&str]| {
        let mut args = vec!["-w", "1", "-c", conf.to_str().unwrap()];
        args.extend_from_slice(extra);
        test_app("sup_app:app", &args).start()
    };
    let path = "/caf%C3%A9;x/";
    let attributes = "; Path=/caf%C3%A9%3Bx/; HttpOnly; SameSite=Lax";
    let tls = serve(&["--certfile", &cert, "--keyfile", &key]);
    let url = format!("https://{}{path}", tls.addr);
    for version in ["--http1.1", "--http2"] {
        let set = curl_set_cookie(&url, &[version]);
        assert!(set.ends_with(&format!("{attributes}; Secure")), "{set}");
    }
    let forward = ["-H", "X-Forwarded-Proto: https"];
    // The local proxy, trusted by default, says the client came over https.
    let behind = serve(&[]);
    let set = curl_set_cookie(&behind.url(path), &forward);
    assert!(set.ends_with(&format!("{attributes}; Secure")), "{set}");
    assert!(curl_set_cookie(&behind.url(path), &[]).ends_with(attributes));
    // A client that is no trusted proxy says nothing about the scheme.
    let untrusted = serve(&["--forwarded-allow-ips", "192.0.2.1"]);
    let set = curl_set_cookie(&untrusted.url(path), &forward);
    assert!(set.ends_with(attributes), "{set}");
}
