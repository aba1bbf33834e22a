//! Faults that must cost a request at most, never the server: a full disk, broken
//! workers, signal bursts, hostile HTTP/2 clients, apps that misbehave.

mod common;
use common::*;
use std::time::Duration;

fn sup_app(extra: &[&str]) -> Launch {
    test_app("sup_app:app", extra)
}

/// The claim page of a worker replaced after TMPDIR filled up used to be sparse:
/// the master's first store into it was a SIGBUS that took the whole server down.
#[test]
fn a_full_tmpdir_fails_a_worker_start_and_the_master_retries() {
    let tmp = SmallTmpfs::mount("4m");
    let mut server = sup_app(&["-w", "1"]).env("TMPDIR", tmp.path()).start();
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    // Held open, the old worker's claim page keeps its blocks after the master
    // removes it, so its replacement finds the disk as full as the test left it.
    let _old_page = std::fs::File::open(claim_page(tmp.path())).unwrap();
    tmp.fill();
    let from = server.log_len();
    kill(pid.parse().unwrap(), "KILL");
    let line = server.wait_for_log_after(from, "worker failed to start", Duration::from_secs(20));
    assert!(
        line.contains("No space left on device") && line.contains(".claims"),
        "the error names the file and the cause: {line}"
    );
    // Still retrying, and still alive.
    server.wait_for_log_after(from + 1, "failures=2", Duration::from_secs(20));
    assert!(server.alive(), "{}", server.log());
    tmp.free();
    server.wait_for_log_after(from, "Booted worker", Duration::from_secs(40));
    assert_eq!(get(&server.url("/pid")).0, 200);
}

fn claim_page(tmpdir: &std::path::Path) -> std::path::PathBuf {
    let runtime = std::fs::read_dir(tmpdir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("ferricorn-"))
        .expect("the runtime directory in TMPDIR")
        .path();
    std::fs::read_dir(runtime)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "claims"))
        .expect("a claim page")
        .path()
}

/// Started on a full TMPDIR: a clear error and a non-zero exit, never "Ready"
/// followed by a crash on the first request.
#[test]
fn starting_on_a_full_tmpdir_is_an_error_naming_the_file() {
    let tmp = SmallTmpfs::mount("1m");
    tmp.fill();
    let mut server = sup_app(&["-w", "1"])
        .env("TMPDIR", tmp.path())
        .no_wait()
        .start();
    let status = server.wait_exit(Duration::from_secs(30));
    let log = server.log();
    assert!(!status.success(), "{log}");
    assert!(!log.contains("Ready"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
}

fn misbehave(extra: &[&str]) -> Launch {
    test_app("misbehave:app", extra)
}

/// A 17 MiB header used to break the wire protocol: 502, and the master dropped
/// the worker's connection without replacing the worker, so with `-w 1` every
/// later request waited for a 503.
#[test]
fn an_oversized_response_head_is_the_apps_error_and_the_worker_keeps_serving() {
    let server = misbehave(&["-w", "1"]).start();
    let (_, pid) = get(&server.url("/pid"));
    let (status, _) = get(&server.url("/big-header?n=17825792"));
    assert_eq!(status, 500, "{}", server.log());
    server.wait_for_log("response headers exceed", Duration::from_secs(10));
    let (status, again) = get(&server.url("/pid"));
    assert_eq!((status, again.as_str()), (200, pid.as_str()));
    // A large head below the limit still passes.
    assert_eq!(get(&server.url("/big-header?n=200000")).0, 200);
}

/// Whatever closes a worker's connection (here the app writes garbage on it), the
/// worker is killed and replaced; its request fails, later ones are served.
#[test]
fn a_worker_that_breaks_the_wire_is_replaced() {
    let server = misbehave(&["-w", "1"]).start();
    let (_, pid) = get(&server.url("/pid"));
    let (status, _) = get(&server.url("/break-wire"));
    assert_eq!(status, 502);
    server.wait_for_log("killing and replacing the worker", Duration::from_secs(10));
    let (status, new_pid) = get(&server.url("/pid"));
    assert_eq!(status, 200, "{}", server.log());
    assert_ne!(new_pid, pid);
    let pid: i32 = pid.parse().unwrap();
    wait_until("the old worker gone", Duration::from_secs(10), || {
        !children(server.pid()).contains(&pid)
    });
}

#[test]
fn a_status_outside_200_to_599_is_the_apps_error() {
    let server = misbehave(&["-w", "1"]).start();
    for bad in [
        "999%20X",
        "600%20X",
        "100%20Continue",
        "099%20X",
        "2000%20OK",
        "20%20OK",
    ] {
        let (status, _) = get(&server.url(&format!("/status?s={bad}")));
        assert_eq!(status, 500, "{bad}");
    }
    server.wait_for_log("invalid status \"999 X\"", Duration::from_secs(10));
    assert_eq!(get(&server.url("/status?s=599%20Edge")).0, 599);
    assert_eq!(get(&server.url("/status?s=204%20No%20Content")).0, 204);
}

/// RFC 9112 §3.2.2: the authority of an absolute-form target wins over Host, as in
/// nginx; the app sees it in HTTP_HOST and SERVER_NAME.
#[test]
fn an_absolute_form_target_names_the_host() {
    let server = misbehave(&["-w", "1"]).start();
    let answer = server.raw(
        b"GET http://a.example:8080/host HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("a.example:8080 a.example"), "{answer}");
    let origin_form = server.raw(
        b"GET /host HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(
        origin_form.ends_with("b.example b.example"),
        "{origin_form}"
    );
    // Userinfo is accepted, as gunicorn's corpus has it, but never taken for the host.
    let userinfo = server.raw(
        b"GET http://b.example@a.example/host HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(userinfo.ends_with("a.example a.example"), "{userinfo}");
}

/// A burst of HUPs used to leave every half-booted generation running (6-11
/// workers for `-w 2`). Each reload supersedes the one still booting, and the pool
/// settles at its target, with and without load.
#[test]
fn a_burst_of_hups_settles_at_the_target() {
    let server = sup_app(&["-w", "2"]).start();
    for under_load in [true, false] {
        let load = under_load.then(|| Load::start(server.url("/pid"), 4));
        for _ in 0..10 {
            kill(server.pid(), "HUP");
            std::thread::sleep(Duration::from_millis(30));
        }
        if let Some(load) = load {
            load.finish_without_failures();
        }
        wait_until("two workers", Duration::from_secs(60), || {
            children(server.pid()).len() == 2
        });
        // One more reload, seen to its end: nothing straggles in afterwards.
        let from = server.log_len();
        kill(server.pid(), "HUP");
        server.wait_for_log_after(from, "reload complete", Duration::from_secs(60));
        wait_until(
            "two workers after the last reload",
            Duration::from_secs(30),
            || children(server.pid()).len() == 2,
        );
        assert_eq!(get(&server.url("/pid")).0, 200);
    }
}

fn slow_import(extra: &[&str]) -> Launch {
    test_app("slow_import:app", extra).no_wait()
}

/// TERM, INT and QUIT used to wait until a slow import ended. They act at once,
/// and no worker is left behind.
#[test]
fn stop_signals_act_while_the_app_imports() {
    for sig in ["TERM", "INT", "QUIT"] {
        let mut server = slow_import(&["-w", "2"]).start();
        server.wait_for_log("Booting workers", Duration::from_secs(30));
        wait_until("two workers importing", Duration::from_secs(30), || {
            children(server.pid()).len() == 2
        });
        let workers = children(server.pid());
        kill(server.pid(), sig);
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{sig}: {status}\n{}", server.log());
        assert!(server.log().contains("while booting"), "{}", server.log());
        for pid in workers {
            wait_until("the worker gone", Duration::from_secs(10), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
            });
        }
    }
}

/// `--boot-timeout`: an import that takes longer fails the boot with a message that
/// names the app and the seconds, after the stack of where it hung.
#[test]
fn a_boot_timeout_names_the_app_and_shows_where_it_hung() {
    let mut server = slow_import(&["-w", "1", "--boot-timeout", "2"]).start();
    let status = server.wait_exit(Duration::from_secs(30));
    let log = server.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("did not finish importing slow_import:app within 2 s"),
        "{log}"
    );
    assert!(
        log.contains("slow_import.py"),
        "the stack of the hang: {log}"
    );
    assert!(!log.contains("Ready"), "{log}");
}

/// An exception in the app is one ERROR event: the whole traceback, the request id,
/// method and path; one JSON object in JSON mode; shown at `--log-level error`.
#[test]
fn an_app_exception_is_one_error_event_with_the_request() {
    // At this level the launcher's "Listening at" is not printed: a known port.
    let bind = free_bind();
    let mut server = Launch::new([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "1",
        "--log-format",
        "json",
        "--log-level",
        "error",
        "-b",
        &bind,
        "misbehave:app",
    ])
    .no_wait()
    .start();
    server.addr = bind.parse().unwrap();
    wait_until("the server answers", Duration::from_secs(30), || {
        get(&server.url("/pid")).0 == 200
    });
    let resp = client().get(server.url("/raise?x=1")).send().unwrap();
    assert_eq!(resp.status(), 500);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let line = server.wait_for_log("the app failed on purpose", Duration::from_secs(10));
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!("{e}: {line}");
    });
    assert_eq!(event["level"], "ERROR", "{event}");
    assert_eq!(event["request_id"], id.as_str(), "{event}");
    assert_eq!(event["method"], "GET", "{event}");
    assert_eq!(event["path"], "/raise", "{event}");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("error handling request\nTraceback (most recent call last):"),
        "{message}"
    );
    assert!(message.contains("misbehave.py"), "{message}");
    let log = server.log();
    assert_eq!(log.matches("Traceback").count(), 1, "{log}");
    // At --log-level error the workers' INFO records stay out.
    assert!(!log.contains("booted: app"), "{log}");
}

/// Start-up: no "Listening at" before a failed import, the traceback once however
/// many workers hit it, and a last line that names the app and the error.
#[test]
fn a_failed_import_is_told_once_without_listening_first() {
    let mut server = Server::launch([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "3",
        "raises_on_import:app",
    ])
    .no_wait()
    .start();
    let status = server.wait_exit(Duration::from_secs(30));
    let log = server.log();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(!log.contains("Listening at"), "{log}");
    assert_eq!(
        log.matches("Traceback (most recent call last)").count(),
        1,
        "{log}"
    );
    let last = log.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("ferricorn: failed to import app \"raises_on_import:app\": RuntimeError"),
        "{log}"
    );
    assert!(!log.contains("traceback above"), "{log}");
}

/// Paths that cannot be written are set-up errors named before any worker starts.
#[test]
fn unwritable_pidfile_and_logs_are_named_before_workers_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/file");
    let missing = missing.to_str().unwrap();
    for flag in ["--pid", "--access-logfile", "--error-logfile"] {
        let mut server = sup_app(&[flag, missing]).no_wait().start();
        let status = server.wait_exit(Duration::from_secs(30));
        let log = server.log();
        assert_eq!(status.code(), Some(2), "{flag}: {log}");
        assert!(log.contains(missing), "{flag}: the path is named: {log}");
        assert!(!log.contains("Booting workers"), "{flag}: {log}");
    }
}

fn free_bind() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The master's stderr is a pipe nobody reads while the app writes to its stderr:
/// requests are still served (gunicorn's behaviour), the log drops what it cannot
/// hold and says so once it can write again.
#[test]
fn a_stalled_error_log_does_not_stall_serving() {
    let bind = free_bind();
    let mut child = std::process::Command::new(BIN)
        .args([
            "--chdir",
            apps_dir().to_str().unwrap(),
            "-w",
            "1",
            "-b",
            &bind,
        ])
        .arg("misbehave:app")
        .env("VIRTUAL_ENV", venv())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stalled = child.stderr.take().unwrap();
    let url = |p: &str| format!("http://{bind}{p}");
    wait_until("the server answers", Duration::from_secs(30), || {
        get(&url("/pid")).0 == 200
    });
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    // 12.5 MiB of lines: far past the pipe (64 KiB) and the log's queue (4 MiB).
    for i in 0..200 {
        let r = quick.get(url("/stderr?n=65536&nl=1")).send();
        assert!(
            r.is_ok_and(|r| r.status() == 200),
            "request {i} was not served"
        );
    }
    // Reading again: the log catches up and tells what it dropped.
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stalled)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("events were dropped"))
    });
    let _ = get(&url("/pid"));
    let said = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(said.is_some_and(|l| l.contains("dropped=")));
}

/// One 100 MiB line without a newline used to add 100 MiB to the master.
#[test]
fn a_line_without_end_costs_the_master_a_bounded_amount() {
    let server = misbehave(&["-w", "1"]).start();
    assert_eq!(get(&server.url("/stderr?n=10&nl=1")).0, 200);
    let before = rss_kib(server.pid());
    assert_eq!(get(&server.url("/stderr?n=104857600")).0, 200);
    // The app's next newline ends the line; the relay says it cut it.
    assert_eq!(get(&server.url("/stderr?n=1&nl=1")).0, 200);
    server.wait_for_log("[line cut at 262144 bytes]", Duration::from_secs(30));
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 32 * 1024, "the master grew by {grown} KiB");
}

/// A streamed response is logged when its last byte went out, with the bytes sent;
/// it used to be logged at its head (0.27 ms, bytes "-").
#[test]
fn the_access_log_has_the_time_to_the_last_byte_and_the_bytes_sent() {
    let server = misbehave(&[
        "-w",
        "1",
        "--access-logfile",
        "-",
        "--access-log-format",
        "json",
    ])
    .start();
    let body = client()
        .get(server.url("/stream?n=5&pause=0.2"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(body.len(), 5000);
    let line = server.wait_for_log("\"/stream\"", Duration::from_secs(10));
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["bytes"], 5000, "{entry}");
    let ms = entry["duration_ms"].as_f64().unwrap();
    assert!(ms >= 800.0, "{entry}");
    // A client that leaves early: logged with what it got.
    let from = server.log_len();
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::{Read, Write};
    raw.write_all(b"GET /stream?n=50&pause=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 512];
    let _ = raw.read(&mut first).unwrap();
    drop(raw);
    let line = server.wait_for_log_after(from, "\"/stream\"", Duration::from_secs(20));
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(entry["bytes"].as_u64().unwrap() < 50_000, "{entry}");
}

/// `--umask` / `[server] umask` sets a unix bind socket's mode, as in gunicorn.
#[test]
fn umask_sets_the_unix_socket_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let statics = dir.path().to_str().unwrap().to_owned();
    for (how, expected) in [("flag", 0o770), ("file", 0o700)] {
        let sock = dir.path().join(format!("{how}.sock"));
        let conf = dir.path().join("f.toml");
        std::fs::write(&conf, "[server]\numask = 0o077\n").unwrap();
        let mut args = vec![
            "-b".to_string(),
            format!("unix:{}", sock.display()),
            "-b".into(),
            "127.0.0.1:0".into(),
            "--static".into(),
            format!("/s/={statics}"),
        ];
        match how {
            "flag" => args.extend(["--umask".into(), "007".into()]),
            _ => args.extend(["-c".into(), conf.to_str().unwrap().into()]),
        }
        let _server = Launch::new(args).start();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected, "{how}: {mode:o}");
    }
    let bad = run(["--umask", "0o1000", "--static", &format!("/s/={statics}")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--umask"));
}
