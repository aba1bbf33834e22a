//! Responses held for clients that do not take them, bounded for the whole server
//! (findings 10 and 01 of issue 25's attack): HTTP/2 clients that keep their
//! flow-control window shut on 100 streams per connection made the master hold
//! 1 MiB of app response per stream (+521 MiB for 4 connections) and a file per
//! stream (a static file streamed from disk, or a response spool file: 4 connections
//! took a 400-descriptor limit). Now `[limits] response_memory` and `response_files`
//! bound both, over h2c and TLS, while other clients' static and app requests are
//! served.

mod common;
use bytes::Bytes;
use common::*;
use std::time::{Duration, Instant};

/// `front_app:app` with one single-threaded worker (requests run in order), an
/// admin port, `/static/` on static_fixtures and `/files/` on a directory holding a
/// 5 MB file, `limits` as its `[limits]`, under `prlimit --nofile=NOFILE` if given.
struct Site {
    server: Server,
    admin: String,
    tmp: tempfile::TempDir,
}

fn site(limits: &str, nofile: Option<&str>, extra: &[&str]) -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("r.toml");
    std::fs::write(&conf, format!("[limits]\n{limits}\n")).unwrap();
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("big.bin"), vec![b'b'; 5_000_000]).unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let statics = format!("/static/={}", repo().join("static_fixtures").display());
    let bigs = format!("/files/={}", big.display());
    let mut args: Vec<String> = Vec::new();
    if let Some(n) = nofile {
        args.extend([format!("--nofile={n}"), BIN.to_string()]);
    }
    let apps = apps_dir();
    let fixed = [
        "-c",
        conf.to_str().unwrap(),
        "--chdir",
        apps.to_str().unwrap(),
        "-w",
        "1",
        "--admin-bind",
        &admin,
        "--static",
        &statics,
        "--static",
        &bigs,
        "-b",
        "127.0.0.1:0",
    ];
    for a in fixed.iter().chain(extra).chain(&["front_app:app"]) {
        args.push(a.to_string());
    }
    let launch = match nofile {
        Some(_) => Launch::program("prlimit", args),
        None => Launch::new(args),
    };
    let server = launch.env("TMPDIR", &spool).start();
    Site { server, admin, tmp }
}

impl Site {
    fn try_metric(&self, name: &str) -> Option<u64> {
        try_metric(&self.admin, name)
    }

    fn metric(&self, name: &str) -> u64 {
        self.try_metric(name)
            .unwrap_or_else(|| self.server.fail(&format!("no metric {name}")))
    }

    fn wait_metric(&self, name: &str, timeout: Duration, cond: impl Fn(u64) -> bool) {
        if let Err(v) = poll_metric(&self.admin, name, timeout, cond) {
            self.server.fail(&format!("{name} stayed at {v:?}"));
        }
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.server.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Spool files the master holds open (unlinked files of its TMPDIR).
    fn open_spool_files(&self) -> usize {
        open_files_under(self.server.pid(), &self.tmp.path().join("spool"))
    }

    /// Another client's static and app requests over HTTP/1, each answered 200
    /// within 10 s (the app's after the worker handed over what was asked before).
    fn others_are_served(&self) {
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for path in ["/static/index.html", "/pid", "/big?n=100000"] {
            let r = c.get(self.server.url(path)).send();
            let status = r.as_ref().map(|r| r.status().as_u16());
            if status.as_ref().ok() != Some(&200) {
                self.server
                    .fail(&format!("GET {path} while attacked: {status:?}"));
            }
            let len = r.unwrap().bytes().map(|b| b.len());
            if path == "/big?n=100000" && len.as_ref().ok() != Some(&100_000) {
                self.server.fail(&format!("GET {path}: {len:?} bytes"));
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// What an attacking connection keeps: its handle and its streams' answers.
type Held = (
    h2::client::SendRequest<Bytes>,
    Vec<h2::client::ResponseFuture>,
);

/// An HTTP/2 connection on `io` whose window stays shut (initial window 0, never a
/// WINDOW_UPDATE), with `n` GET streams of `path` (to `origin`).
async fn shut_window<T>(io: T, origin: &str, path: &str, n: usize) -> Held
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut answers = Vec::new();
    for _ in 0..n {
        client = client.ready().await.unwrap();
        let req = http::Request::get(format!("{origin}{path}"))
            .body(())
            .unwrap();
        answers.push(client.send_request(req, true).unwrap().0);
    }
    (client, answers)
}

async fn h2c_shut_window(addr: std::net::SocketAddr, path: &str, n: usize) -> Held {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    shut_window(tcp, &format!("http://{addr}"), path, n).await
}

/// The answers of that kind so far, any status (an app's 503: given up before its
/// head, for want of room).
fn answers(s: &Site, kind: &str) -> u64 {
    ["2xx", "4xx", "5xx"]
        .iter()
        .map(|c| {
            let name = format!("ferricorn_requests_total{{kind=\"{kind}\",status=\"{c}\"}}");
            s.metric(&name)
        })
        .sum()
}

fn app_answers(s: &Site) -> u64 {
    answers(s, "app")
}

/// Waits until the worker answered the attack's `streams` (`base`: the app's 2xx
/// answers before it), then for it to have handed over every byte of them (its one
/// thread runs requests in order: a request sent after them is answered after them).
fn attack_handed_over(s: &Site, base: u64, streams: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while app_answers(s) < base + streams {
        if Instant::now() > deadline {
            s.server.fail(&format!("{} answers", app_answers(s) - base));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .get(s.server.url("/pid"))
        .send();
    let status = r.map(|r| r.status().as_u16());
    if status.as_ref().ok() != Some(&200) {
        s.server
            .fail(&format!("/pid behind the attack: {status:?}"));
    }
}

/// Finding 10: 4 h2c connections x 100 streams of a 1 MB view, windows shut.
/// Before: the master grew by ~521 MiB (1 MiB per stream). Now the responses it
/// holds in memory stay within `response_memory` (16 MiB here), the rest went to
/// spool files, and other clients are served.
#[test]
fn shut_http2_windows_hold_at_most_response_memory() {
    let s = site("response_memory = 16777216\n", None, &["--threads", "1"]);
    s.others_are_served();
    let before = rss_kib(s.server.pid());
    let base = app_answers(&s);
    let rt = runtime();
    let _attack: Vec<Held> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(h2c_shut_window(s.server.addr, "/big?n=1000000", 100).await);
        }
        all
    });
    attack_handed_over(&s, base, 400);
    let grown = rss_kib(s.server.pid()).saturating_sub(before);
    eprintln!("400 shut streams of 1 MB: master +{} MiB", grown / 1024);
    // The budget, plus the chunk each stream's writer holds (16 KiB read back
    // from a spool file past the budget), plus hyper's and h2's per-stream state.
    assert!(grown < 64 * 1024, "the master grew by {grown} KiB");
    let held = s.metric("ferricorn_response_memory_bytes");
    let files = s.metric("ferricorn_response_files");
    eprintln!("{} MiB counted in memory, {files} spool files", held >> 20);
    assert!(held <= (16 << 20) + 400 * 64 * 1024, "{held} bytes held");
    assert_eq!(files as usize, s.open_spool_files());
    s.others_are_served();
}

/// Over TLS the same, with both bounds small: 2 connections x 100 streams of a
/// 1 MB view hold at most `response_memory` in memory and `response_files` files;
/// the responses that found neither were cut (counted), and the server serves on.
#[test]
fn over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let s = site(
        "response_memory = 8388608\nresponse_files = 20\n",
        None,
        &["--threads", "1", "--certfile", &cert, "--keyfile", &key],
    );
    let rt = runtime();
    let addr = s.server.addr;
    let get = |path: &str| rt.block_on(tls_get(addr, &cert, path));
    assert_eq!(get("/pid").0, 200);
    let before = rss_kib(s.server.pid());
    let origin = format!("https://{addr}");
    let base = app_answers(&s);
    let _attack: Vec<Held> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..2 {
            let io = h2_tls(addr, &cert).await;
            all.push(shut_window(io, &origin, "/big?n=1000000", 100).await);
        }
        all
    });
    wait_until("the attack answered", Duration::from_secs(120), || {
        app_answers(&s) >= base + 200
    });
    let pid = get("/pid");
    if pid.0 != 200 {
        s.server.fail(&format!("/pid after the attack: {pid:?}"));
    }
    let grown = rss_kib(s.server.pid()).saturating_sub(before);
    let held = s.metric("ferricorn_response_memory_bytes");
    eprintln!(
        "200 shut TLS streams of 1 MB: master +{} MiB, {} MiB counted in memory",
        grown / 1024,
        held >> 20
    );
    assert!(held <= (8 << 20) + 200 * 64 * 1024, "{held} bytes held");
    assert!(grown < 48 * 1024, "the master grew by {grown} KiB");
    assert!(s.metric("ferricorn_response_files") <= 20);
    assert!(s.open_spool_files() <= 20);
    let cut = s.metric("ferricorn_responses_cut_total{why=\"no_room\"}")
        + s.metric("ferricorn_responses_cut_total{why=\"stalled\"}");
    assert!(cut > 0, "nothing was cut");
    // One line for all of them.
    assert!(s.server.log().matches("responses cut").count() <= 2);
    assert_eq!(get("/big?n=3000000"), (200, 3_000_000));
    assert_eq!(get("/big?n=100000"), (200, 100_000));
    assert_eq!(get("/static/index.html").0, 200);
}

/// GET `path` over a TLS h2 connection that reads as it should: status, body length.
async fn tls_get(addr: std::net::SocketAddr, cert: &str, path: &str) -> (u16, usize) {
    let io = h2_tls(addr, cert).await;
    let (mut client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    client = client.ready().await.unwrap();
    let req = http::Request::get(format!("https://{addr}{path}"))
        .body(())
        .unwrap();
    let resp = client.send_request(req, true).unwrap().0;
    let resp = tokio::time::timeout(Duration::from_secs(120), resp)
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut len = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, len)
}

/// Finding 01, under a 400-descriptor limit (response_files: 400 / 8 = 50): 4 h2c
/// connections x 100 streams of a 5 MB static file, windows shut. Before: the
/// descriptors ran out (accept failed, every other client timed out). Now 50 are
/// held open; the other streams wait `body_spool_wait`, then get 503; other
/// clients' static and app requests are served; and the attackers' leaving gives
/// every file back.
#[test]
fn shut_http2_windows_hold_at_most_response_files_of_static_files() {
    let s = site(
        "body_spool_wait = 1\n",
        Some("400:400"),
        &["--threads", "1"],
    );
    let base = answers(&s, "static");
    let rt = runtime();
    let _attack: Vec<Held> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(h2c_shut_window(s.server.addr, "/files/big.bin", 100).await);
        }
        all
    });
    wait_until("the attack answered", Duration::from_secs(30), || {
        answers(&s, "static") >= base + 400
    });
    let fds = s.fds();
    eprintln!("400 shut streams of a 5 MB static file: {fds} descriptors");
    s.others_are_served();
    assert!(fds < 100, "{fds} descriptors");
    assert_eq!(s.metric("ferricorn_response_files"), 50);
    assert_eq!(s.metric("ferricorn_static_file_slot_refused_total"), 350);
    s.server
        .wait_for_log("responses hold at most 50 files", Duration::from_secs(1));
    assert!(!s.server.log().contains("Too many open files"));
    drop(rt);
    s.wait_metric("ferricorn_response_files", Duration::from_secs(30), |n| {
        n == 0
    });
    let r = client().get(s.server.url("/files/big.bin")).send().unwrap();
    assert_eq!(r.bytes().unwrap().len(), 5_000_000);
}

/// The same with 4 x 100 streams of a 3 MB view (each past response_buffer_size
/// needs a spool file) and response_memory at 8 MiB: at most 50 spool files are
/// held, the responses that found no room are cut, and a client that reads takes
/// the room of streams whose clients took nothing for longest: its 3 MB
/// download comes whole.
#[test]
fn shut_http2_windows_hold_at_most_response_files_of_spooled_responses() {
    let s = site(
        "response_memory = 8388608\n",
        Some("400:400"),
        &["--threads", "1"],
    );
    let base = app_answers(&s);
    let rt = runtime();
    let _attack: Vec<Held> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(h2c_shut_window(s.server.addr, "/big?n=3000000", 100).await);
        }
        all
    });
    attack_handed_over(&s, base, 400);
    let fds = s.fds();
    s.others_are_served();
    let files = s.metric("ferricorn_response_files");
    eprintln!("400 shut streams of a 3 MB view: {fds} descriptors, {files} spool files");
    assert!(fds < 100, "{fds} descriptors");
    assert!(files <= 50, "{files}");
    assert!(s.open_spool_files() <= 50);
    let cut = s.metric("ferricorn_responses_cut_total{why=\"no_room\"}")
        + s.metric("ferricorn_responses_cut_total{why=\"stalled\"}");
    assert!(cut > 0, "nothing was cut");
    // The first attackers' streams (those holding files) took nothing for seconds
    // while the worker made the rest.
    let r = client().get(s.server.url("/big?n=3000000")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), 3_000_000);
    assert!(s.metric("ferricorn_responses_cut_total{why=\"stalled\"}") > 0);
    s.others_are_served();
    assert!(!s.server.log().contains("Too many open files"));
    drop(rt);
    s.wait_metric("ferricorn_response_files", Duration::from_secs(30), |n| {
        n == 0
    });
    assert_eq!(s.open_spool_files(), 0);
    s.wait_metric(
        "ferricorn_response_memory_bytes",
        Duration::from_secs(30),
        |n| n == 0,
    );
}
