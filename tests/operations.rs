//! Running ferricorn: flags and config errors, --check-config, static-only mode,
//! graceful stop, the runtime directory of worker sockets.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_flag_exits_2_with_one_message() {
    let out = run(["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
}

#[test]
fn bad_toml_reports_file_line_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nkeep_alive = 5\nbogus_key = 1\n").unwrap();
    let out = run(["-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:3:1:", path.display())), "{err}");
    assert!(err.contains("bogus_key"), "{err}");

    std::fs::write(&path, "[workers]\ncount = \"many\"\n").unwrap();
    let err = stderr(&run(["-c", path.to_str().unwrap()]));
    assert!(err.contains(&format!("{}:2:9:", path.display())), "{err}");
}

#[test]
fn bad_values_exit_2() {
    for args in [
        vec!["-b", "not-an-address"],
        vec!["--static", "nodir"],
        vec!["--static", "/s/=/definitely/not/here"],
        vec!["--log-level", "loud"],
        vec!["-w", "0", "a:b"],
        vec!["--front-threads", "0", "a:b"],
        vec![":no_module"],
        vec!["no_callable:"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, "[workers]\ncount = 3\nthreads = 4\n").unwrap();
    let out = run([
        "-c",
        path.to_str().unwrap(),
        "-w",
        "5",
        "--check-config",
        "--chdir",
        apps_dir().to_str().unwrap(),
        "sup_app:app",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("count = 5"), "{text}");
    assert!(text.contains("threads = 4"), "{text}");
    assert!(text.contains("bind = [\"127.0.0.1:8000\"]"), "{text}");
    // Half the cores go to the front by default, the rest to the workers.
    let cores = std::thread::available_parallelism().unwrap().get();
    let front = format!("front_threads = {}", (cores / 2).max(1));
    assert!(text.contains(&front), "{front} in {text}");
}

#[test]
fn check_config_imports_the_app() {
    let apps = apps_dir();
    let ok = run([
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        "sup_app:app",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let bad = run([
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        "sup_app:nope",
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
}

#[test]
fn every_shipped_example_config_validates() {
    for name in ["ferricorn.example.toml", "demo.toml"] {
        let out = std::process::Command::new(BIN)
            .current_dir(repo())
            // The example leaves the app out; a static mount makes it servable.
            .args([
                "-c",
                &format!("conf/{name}"),
                "--check-config",
                "--static",
                "/s/=conf",
            ])
            .env("VIRTUAL_ENV", venv())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }
}

#[test]
fn address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(["-b", &addr, "--static", "/s/=."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn static_only_mode_answers_404_off_the_mounts() {
    let server = Server::start([
        "--static",
        &format!("/s/={}", repo().join("conf").display()),
    ]);
    let r = client().get(server.url("/anything")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "404 Not Found\n");
}

#[test]
fn term_stops_gracefully_with_exit_0() {
    let mut server = Server::start([
        "--static",
        &format!("/s/={}", repo().join("conf").display()),
    ]);
    server.signal(15);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn unix_socket_bind_serves() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("f.sock");
    let server = Launch::new([
        "-b".to_string(),
        format!("unix:{}", sock.display()),
        "-b".to_string(),
        "127.0.0.1:0".to_string(),
        "--static".to_string(),
        format!("/s/={}", dir.path().display()),
    ])
    .start();
    assert_eq!(status_over_unix_socket(&sock, "/x"), "404");
    drop(server);
}

#[test]
fn worker_sockets_live_in_a_private_directory_removed_on_exit() {
    let runtime = tempfile::tempdir().unwrap();
    let mut server = Server::launch([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "1",
        "sup_app:app",
    ])
    .env("XDG_RUNTIME_DIR", runtime.path())
    .start();
    let dirs: Vec<_> = std::fs::read_dir(runtime.path())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1);
    let meta = dirs[0].metadata().unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let socks: Vec<_> = std::fs::read_dir(dirs[0].path())
        .unwrap()
        .flatten()
        .collect();
    assert!(!socks.is_empty());
    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert!(!dirs[0].path().exists(), "runtime dir left behind");
}

fn sup_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["--chdir".into(), apps_dir().to_str().unwrap().into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("sup_app:app".into());
    args
}

#[test]
fn admin_health_readiness_and_metrics() {
    let admin = format!("127.0.0.1:{}", free_port());
    let static_dir = format!("/static/={}", repo().join("static_fixtures").display());
    let mut server = Server::start(sup_args(&[
        "-w",
        "1",
        "--admin-bind",
        &admin,
        "--static",
        &static_dir,
    ]));
    let c = client();
    let get = |path: &str| c.get(format!("http://{admin}{path}")).send().unwrap();
    assert_eq!(get("/healthz").status(), 200);
    assert_eq!(get("/readyz").status(), 200);

    assert_eq!(c.get(server.url("/pid")).send().unwrap().status(), 200);
    assert_eq!(
        c.get(server.url("/static/index.html"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(server.url("/static/missing"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let metrics = get("/metrics").text().unwrap();
    for line in [
        "ferricorn_requests_total{kind=\"app\",status=\"2xx\"} 1",
        "ferricorn_requests_total{kind=\"static\",status=\"2xx\"} 1",
        "ferricorn_requests_total{kind=\"static\",status=\"4xx\"} 1",
        "ferricorn_workers{state=\"serving\"} 1",
        "ferricorn_request_duration_seconds_count 3",
        "ferricorn_requests_queued 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }

    // TERM with a request in flight: /readyz turns 503 at once, the request completes.
    let slow = {
        let url = server.url("/sleep?s=1.5");
        std::thread::spawn(move || client().get(url).send().unwrap().status())
    };
    std::thread::sleep(Duration::from_millis(300));
    server.signal(15);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        if get("/readyz").status() == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still 200 after TERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(slow.join().unwrap(), 200);
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn worker_restarts_are_counted_by_reason() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = Server::start(sup_args(&["-w", "1", "-t", "1", "--admin-bind", &admin]));
    let c = client();
    assert_eq!(c.get(server.url("/crash")).send().unwrap().status(), 502);
    assert_eq!(
        c.get(server.url("/sleep?s=30")).send().unwrap().status(),
        504
    );
    let metrics = c
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("ferricorn_worker_restarts_total{reason=\"crash\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferricorn_worker_restarts_total{reason=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn access_log_combined_and_json_with_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let combined = dir.path().join("access.log");
    let json = dir.path().join("access.json");
    let static_dir = format!("/static/={}", repo().join("static_fixtures").display());
    let c = client();
    for (path, format) in [(&combined, "combined"), (&json, "json")] {
        let server = Server::start(sup_args(&[
            "-w",
            "1",
            "--static",
            &static_dir,
            "--access-logfile",
            path.to_str().unwrap(),
            "--access-log-format",
            format,
            "--forwarded-allow-ips",
            "10.9.9.9",
        ]));
        let app = c
            .get(server.url("/pid?x=1"))
            .header("user-agent", "probe/1.0")
            .header("referer", "http://example.com/")
            .header("x-request-id", "client-chosen")
            .send()
            .unwrap();
        let id = app.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(
            id, "client-chosen",
            "an untrusted client chose the request id"
        );
        let pid = app.text().unwrap();
        c.get(server.url("/static/index.html")).send().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= 2 {
                break text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "access log has {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines: Vec<&str> = text.lines().collect();
        if format == "combined" {
            assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
            assert!(
                lines[0].contains("] \"GET /pid?x=1 HTTP/1.1\" 200 ")
                    && lines[0].ends_with(" \"http://example.com/\" \"probe/1.0\""),
                "{}",
                lines[0]
            );
            assert!(
                lines[1].contains("\"GET /static/index.html HTTP/1.1\" 200 "),
                "{}",
                lines[1]
            );
        } else {
            let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(v["method"], "GET");
            assert_eq!(v["path"], "/pid");
            assert_eq!(v["query"], "x=1");
            assert_eq!(v["status"], 200);
            assert_eq!(v["request_id"], id.as_str());
            assert_eq!(v["worker_pid"].to_string(), pid);
            assert!(v["upstream_ms"].is_number());
            assert_eq!(v["user_agent"], "probe/1.0");
            let s: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
            assert_eq!(s["path"], "/static/index.html");
            assert!(s["worker_pid"].is_null());
        }
    }
}

/// The conformance corpus's echo app, which answers the request's environ as JSON.
fn echo_server(extra: &[&str]) -> Server {
    let conformance = repo().join("tests/conformance");
    let mut args = vec!["--chdir", conformance.to_str().unwrap(), "-w", "1"];
    args.extend_from_slice(extra);
    args.push("echo_app:app");
    Server::start(args)
}

#[test]
fn the_app_sees_the_request_id_the_client_gets() {
    // 127.0.0.1 is not a trusted proxy here.
    let server = echo_server(&["--forwarded-allow-ips", "10.9.9.9"]);
    let r = client()
        .get(server.url("/x"))
        .header("x-request-id", "forged")
        .send()
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().unwrap();
    assert!(
        body.contains(&format!("\"HTTP_X_REQUEST_ID\": \"{id}\"")),
        "{body}"
    );
    assert!(!body.contains("forged"), "{body}");
}

#[test]
fn error_log_file_json_and_reopen_on_usr1() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("error.log");
    let server = Server::launch(sup_args(&[
        "-w",
        "1",
        "--error-logfile",
        log.to_str().unwrap(),
        "--log-format",
        "json",
    ]))
    .no_wait()
    .start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let read_lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    while !read_lines(&log).iter().any(|v| v["message"] == "Ready") {
        assert!(
            std::time::Instant::now() < deadline,
            "no Ready in {:?}",
            read_lines(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Worker output arrives in the same file, as JSON too.
    assert!(
        read_lines(&log).iter().any(|v| v["pid"].is_number()),
        "{:?}",
        read_lines(&log)
    );
    std::fs::rename(&log, dir.path().join("error.log.1")).unwrap();
    server.signal(10); // USR1
    while !read_lines(&log).iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("reopened"))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing written to the reopened log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_trusted_proxy_chooses_the_request_id() {
    // 127.0.0.1 is trusted by default.
    let server = echo_server(&[]);
    let r = client()
        .get(server.url("/x"))
        .header("x-request-id", "lb-1234")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-1234");
    assert!(r
        .text()
        .unwrap()
        .contains("\"HTTP_X_REQUEST_ID\": \"lb-1234\""));
}

#[test]
fn the_readme_demo_serves_its_app_and_static_fixtures() {
    // README: `bash deploy/demo.sh` runs `ferricorn -c conf/demo.toml` (paths relative to the repo).
    let server = Server::launch(["-c", "conf/demo.toml"])
        .current_dir(repo())
        .start();
    let c = client();
    let page = c.get(server.url("/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("ferricorn demo"));
    let css = c.get(server.url("/static/css/site.css")).send().unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
    assert_eq!(
        c.get(server.url("/hello")).send().unwrap().text().unwrap(),
        "Hello, World!"
    );
    // The app's docstring names these commands (it named `cargo run --release -- -c
    // conf/demo.toml`, which exits 2: no venv there has the worker module).
    let doc = std::fs::read_to_string(repo().join("conf/demo/demo_app.py")).unwrap();
    assert!(doc.contains("`bash deploy/demo.sh`"), "{doc}");
    assert!(doc.contains("`ferricorn -c conf/demo.toml`"), "{doc}");
    assert!(!doc.contains("cargo run"), "{doc}");
    let script = std::fs::read_to_string(repo().join("deploy/demo.sh")).unwrap();
    assert!(
        script.contains("/bin/ferricorn\" -c conf/demo.toml"),
        "{script}"
    );
}

/// The lines of the README code block titled `title`.
fn readme_lines(title: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("title=\"{title}\""))
        .unwrap_or_else(|| panic!("no README block {title}"));
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()]
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_using_it_command_in_the_readme_serves() {
    let lines = readme_lines("using-it");
    assert_eq!(lines.len(), 4);
    for line in lines {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.remove(0), "ferricorn", "{line}");
        // The launcher binds a free port instead of the line's address.
        let mut args = Vec::new();
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            if w == "-b" {
                it.next();
            } else {
                args.push(w);
            }
        }
        let server = Server::launch(args.clone()).current_dir(repo()).start();
        let status = client().get(server.url("/")).send().unwrap().status();
        assert_eq!(status, 200, "{line}");
    }
}

#[test]
fn per_request_detail_only_at_debug() {
    let static_dir = format!("/s/={}", repo().join("static_fixtures").display());
    let quiet = Server::start(["--static", &static_dir]);
    client().get(quiet.url("/s/index.html")).send().unwrap();
    let loud = Server::start(["--static", &static_dir, "--log-level", "debug"]);
    let id = client()
        .get(loud.url("/s/index.html"))
        .send()
        .unwrap()
        .headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = loud.wait_for_log(&id, Duration::from_secs(5));
    assert!(
        line.contains("status=200") && line.contains("route=\"static\""),
        "{line}"
    );
    assert!(!quiet.log().contains("request_id"), "{}", quiet.log());
}

#[test]
fn the_access_log_shows_the_client_a_trusted_proxy_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // 127.0.0.1 (this test) is a trusted proxy by default.
    let server = echo_server(&["--access-logfile", log.to_str().unwrap()]);
    client()
        .get(server.url("/x"))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "nothing logged");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.starts_with("203.0.113.7 - - ["), "{text}");
}

/// The value of one series (`name{labels}`) in a `/metrics` scrape.
fn series(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {name:?} in\n{metrics}"))
}

#[test]
fn every_front_thread_accepts_and_serves_requests() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = Server::start(sup_args(&[
        "-w",
        "2",
        "--front-threads",
        "2",
        "--admin-bind",
        &admin,
    ]));
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap())
        .map(|comm| comm.trim().to_string())
        .collect();
    assert!(threads.iter().any(|t| t == "front-1"), "{threads:?}");
    assert!(!threads.iter().any(|t| t == "front-2"), "{threads:?}");

    // Connections arriving together: each front thread takes some of them.
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let url = server.url("/pid");
            std::thread::spawn(move || {
                let c = client();
                for _ in 0..20 {
                    assert_eq!(c.get(&url).send().unwrap().status(), 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let metrics = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let per_thread = [0, 1].map(|i| {
        series(
            &metrics,
            &format!("ferricorn_front_thread_requests_total{{thread=\"{i}\"}}"),
        )
    });
    assert_eq!(per_thread.iter().sum::<u64>(), 32 * 20, "{metrics}");
    assert!(per_thread.iter().all(|&n| n > 0), "{per_thread:?}");
}

#[test]
fn nothing_to_serve_is_a_usage_error() {
    let out = run(["-b", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to serve"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// Asks for a TLS 1.2 renegotiation (openssl's `R`) and waits for the server's
/// refusal to reach the client.
fn attempt_renegotiation(server: &Server) {
    use std::io::{BufRead, Write};
    let mut client = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect", &server.addr.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    client.stdin.as_mut().unwrap().write_all(b"R\n").unwrap();
    let refused = std::io::BufReader::new(client.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("no renegotiation"));
    let _ = client.kill();
    let _ = client.wait();
    assert!(refused, "the server did not refuse the renegotiation");
}

/// One h2c connection sending 30 requests each reset at once (CVE-2023-44487's
/// pattern), until the server's GOAWAY.
fn rapid_reset(server: &Server) {
    use std::io::{Read, Write};
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    let mut block = Vec::new();
    for (name, value) in [(":method", "GET"), (":scheme", "http"), (":path", "/")] {
        block.extend([0, name.len() as u8]);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    for i in 0..30 {
        out.extend(frame(1, 0x5, 2 * i + 1, &block));
        out.extend(frame(3, 0, 2 * i + 1, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&out).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let mut types = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(types.contains(&7), "no GOAWAY: {types:?}");
}

/// A client cannot write to the error log at its connection rate: rustls's WARN on
/// a TLS 1.2 renegotiation attempt and h2's on a rapid-reset connection stay out
/// below `--log-level debug` (the refusals themselves still happen).
#[test]
fn clients_cannot_write_warnings_into_the_error_log() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let statics = format!("/static/={}", dir.path().display());
    let tls = Server::start(["--static", &statics, "--certfile", &cert, "--keyfile", &key]);
    let plain = Server::start(["--static", &statics]);
    attempt_renegotiation(&tls);
    rapid_reset(&plain);
    rapid_reset(&plain);
    for server in [&tls, &plain] {
        // Events are written in order: once this one is out, any before it is too.
        let from = server.log_len();
        server.signal(10); // USR1
        server.wait_for_log_after(from, "log files reopened", Duration::from_secs(10));
        let log = server.log();
        assert!(!log.contains("NoRenegotiation"), "{log}");
        assert!(!log.contains("recv_reset"), "{log}");
    }
}
