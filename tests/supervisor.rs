//! The supervisor against the real binary: crash recovery, timeouts, recycling,
//! signals (TERM, QUIT, HUP, TTIN, TTOU), hot reload and the pidfile.

mod common;

use common::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn sup_server(extra: &[&str]) -> Server {
    let apps = apps_dir();
    let mut args = vec!["--chdir", apps.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("sup_app:app");
    Server::start(args)
}

#[test]
fn killed_worker_is_replaced_and_only_its_requests_fail() {
    let server = sup_server(&["-w", "2"]);
    let workers = children(server.pid());
    assert_eq!(workers.len(), 2, "{workers:?}");
    let load = Load::start(server.url("/pid"), 4);
    thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    let from = server.log_len();
    assert!(std::process::Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap()
        .success());
    server.wait_for_log_after(from, "Booted worker", Duration::from_secs(30));
    let replaced_in = killed_at.elapsed();
    thread::sleep(Duration::from_millis(300));
    let results = load.finish();
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    // Only requests that were on the dead worker may fail (at most its one slot).
    assert!(failed.len() <= 1, "failed: {failed:?}");
    assert!(failed.iter().all(|(s, _)| *s == 502), "{failed:?}");
    assert!(results.len() > 50, "too few requests: {}", results.len());
    let now = children(server.pid());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&workers[0]));
    eprintln!("worker replaced in {replaced_in:?}");
}

#[test]
fn crash_mid_request_is_502_for_that_request_only() {
    let server = sup_server(&["-w", "1"]);
    let (status, _) = get(&server.url("/crash"));
    assert_eq!(status, 502);
    // With the only worker down, the next request waits for its replacement.
    let (status, _) = get(&server.url("/pid"));
    assert_eq!(status, 200);
}

#[test]
fn hung_request_gets_504_near_the_timeout_and_others_are_served() {
    let server = sup_server(&["-w", "2", "-t", "2"]);
    let slow = {
        let url = server.url("/sleep?s=60");
        thread::spawn(move || {
            let started = Instant::now();
            let r = get(&url);
            (r, started.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        assert_eq!(get(&server.url("/pid")).0, 200);
    }
    let ((status, _), took) = slow.join().unwrap();
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // faulthandler dumped the hung thread's stack into the error log.
    server.wait_for_log("sup_app.py", Duration::from_secs(5));
    server.wait_for_log("WORKER TIMEOUT", Duration::from_secs(1));
    wait_until("replacement worker", Duration::from_secs(20), || {
        children(server.pid()).len() == 2
    });
}

#[test]
fn max_requests_recycles_workers_without_failures() {
    let server = sup_server(&[
        "-w",
        "2",
        "--max-requests",
        "25",
        "--max-requests-jitter",
        "5",
    ]);
    let load = Load::start(server.url("/pid"), 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pids = Arc::new(Mutex::new(HashSet::new()));
    while Instant::now() < deadline {
        let (s, body) = get(&server.url("/pid"));
        assert_eq!(s, 200);
        pids.lock().unwrap().insert(body);
        if pids.lock().unwrap().len() >= 5 {
            break;
        }
    }
    let results = load.finish_without_failures();
    let mut all: HashSet<String> = results.into_iter().map(|(_, b)| b).collect();
    all.extend(pids.lock().unwrap().iter().cloned());
    assert!(all.len() >= 5, "workers seen: {all:?}");
}

#[test]
fn hup_under_load_replaces_workers_with_zero_failures() {
    let server = sup_server(&["-w", "2"]);
    let before: HashSet<i32> = children(server.pid()).into_iter().collect();
    let load = Load::start(server.url("/pid"), 4);
    thread::sleep(Duration::from_millis(300));
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    server.wait_for_log_after(from, "reload complete", Duration::from_secs(30));
    wait_until("old workers gone", Duration::from_secs(30), || {
        let now: HashSet<i32> = children(server.pid()).into_iter().collect();
        now.len() == 2 && now.is_disjoint(&before)
    });
    thread::sleep(Duration::from_millis(300));
    load.finish_without_failures();
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    assert!(
        !before.contains(&pid.parse::<i32>().unwrap()),
        "served by an old worker"
    );
}

#[test]
fn ttin_and_ttou_change_the_process_tree() {
    let server = sup_server(&["-w", "1"]);
    assert_eq!(children(server.pid()).len(), 1);
    server.signal(libc_sig("TTIN"));
    wait_until("a second worker", Duration::from_secs(20), || {
        children(server.pid()).len() == 2
    });
    server.signal(libc_sig("TTOU"));
    wait_until("back to one worker", Duration::from_secs(20), || {
        children(server.pid()).len() == 1
    });
    assert_eq!(get(&server.url("/pid")).0, 200);
}

#[test]
fn term_lets_the_request_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let mut server = sup_server(&["-w", "1", "--pid", pidfile.to_str().unwrap()]);
    let written: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, server.pid());
    let slow = {
        let url = server.url("/sleep?s=1.5");
        thread::spawn(move || get(&url))
    };
    thread::sleep(Duration::from_millis(400));
    server.signal(libc_sig("TERM"));
    let (status, body) = slow.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "slept"));
    let code = server.wait_exit(Duration::from_secs(20));
    assert_eq!(code.code(), Some(0), "{}", server.log());
    assert!(!pidfile.exists(), "pidfile left behind");
}

#[test]
fn quit_stops_at_once() {
    let mut server = sup_server(&["-w", "1"]);
    let started = Instant::now();
    server.signal(libc_sig("QUIT"));
    let code = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn write_app(dir: &Path, body: &str) {
    let tmp = dir.join("reload_app.py.tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join("reload_app.py")).unwrap();
}

/// ferricorn serving `reload_app:app` from `dir` (written with `write_app`).
fn reload_app_server(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--chdir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("reload_app:app");
    Server::start(args)
}

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn app_source(version: &str) -> String {
    format!(
        "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'{version}']\n"
    )
}

/// Polls until GET / answers `want` (status, body substring); returns the time it took.
fn wait_for_response(server: &Server, status: u16, needle: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (s, body) = get(&server.url("/"));
        if s == status && body.contains(needle) {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(20) {
            server.fail(&format!(
                "never got {status} with {needle:?}; last: {s} {body}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_serves_edits_shows_syntax_errors_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &app_source("v1"));
    let server = reload_app_server(dir.path(), &["-w", "2", "--reload"]);
    assert_eq!(get(&server.url("/")), (200, "v1".to_string()));

    write_app(dir.path(), &app_source("v2"));
    let took = wait_for_response(&server, 200, "v2");
    eprintln!("save → new code served in {took:?}");

    write_app(dir.path(), "def app(environ, start_response:\n    pass\n");
    wait_for_response(&server, 500, "SyntaxError");

    write_app(dir.path(), &app_source("v3"));
    wait_for_response(&server, 200, "v3");
}

#[test]
fn hup_with_code_that_does_not_import_keeps_the_old_workers() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &app_source("v1"));
    let server = reload_app_server(dir.path(), &["-w", "1"]);
    write_app(dir.path(), "import no_such_module_here\n");
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    server.wait_for_log_after(from, "reload failed", Duration::from_secs(30));
    assert_eq!(get(&server.url("/")), (200, "v1".to_string()));
    assert!(server.log()[from..].contains("No module named 'no_such_module_here'"));
}

#[test]
fn orphans_the_app_leaves_behind_are_reaped() {
    let server = sup_server(&["-w", "1"]);
    let (status, body) = get(&server.url("/orphan"));
    assert_eq!(status, 200);
    let orphan: i32 = body.trim().parse().unwrap();
    // It is re-parented to the master (a subreaper, like PID 1 in a container)...
    wait_until("re-parenting to the master", Duration::from_secs(5), || {
        children(server.pid()).contains(&orphan) || !Path::new(&format!("/proc/{orphan}")).exists()
    });
    // ...and once it exits, reaped rather than left as a zombie.
    wait_until("the orphan to be reaped", Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });
    assert_eq!(get(&server.url("/pid")).0, 200);
}

#[test]
fn start_failures_back_off_requests_wait_and_a_fix_recovers() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &app_source("v1"));
    let server = reload_app_server(dir.path(), &["-w", "1"]);
    let worker = children(server.pid())[0];
    // The code on disk stops importing; then the only worker dies.
    write_app(dir.path(), "raise RuntimeError('config missing')\n");
    let from = server.log_len();
    kill9(worker);
    server.wait_for_log_after(from, "failures=3", Duration::from_secs(20));
    let log = server.log()[from..].to_string();
    assert!(
        log.contains("config missing"),
        "the reason is not logged: {log}"
    );
    // A request now waits in the queue instead of failing at once...
    let waiting = {
        let url = server.url("/");
        thread::spawn(move || get(&url))
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "the request failed at once");
    // ...and is served once the code imports again.
    write_app(dir.path(), &app_source("v2"));
    assert_eq!(waiting.join().unwrap(), (200, "v2".to_string()));
}

/// A GET running in its own thread: its status, body and latency.
type TimedGet = thread::JoinHandle<((u16, String), Duration)>;

/// Starts `n` concurrent GETs of `path`.
fn concurrent_gets(server: &Server, path: &str, n: usize) -> Vec<TimedGet> {
    (0..n)
        .map(|_| {
            let url = server.url(path);
            thread::spawn(move || {
                let started = Instant::now();
                let r = get(&url);
                (r, started.elapsed())
            })
        })
        .collect()
}

#[test]
fn requests_sent_ahead_of_a_slow_one_are_served_by_the_other_worker() {
    // The sleeping worker never counts as stalled here, so it is sent requests
    // ahead (16 at once: the least-loaded pick alternates); the other worker, once
    // idle, must take them back.
    let (server, _dir) = patient_workers("2", &[]);
    let slow = concurrent_gets(&server, "/sleep?s=6", 1);
    thread::sleep(Duration::from_millis(300));
    let fast = concurrent_gets(&server, "/pid", 16);
    let mut pids = HashSet::new();
    for h in fast {
        let ((status, pid), took) = h.join().unwrap();
        assert_eq!(status, 200, "{pid}");
        assert!(
            took < Duration::from_secs(4),
            "waited {took:?} behind the slow request"
        );
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 1, "only the free worker served: {pids:?}");
    let ((status, _), _) = slow.into_iter().next().unwrap().join().unwrap();
    assert_eq!(status, 200);
}

/// Workers that never count as stalled, so requests sent ahead stay queued at them
/// until a free worker takes them back.
fn patient_workers(count: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "[workers]\nlook_ahead_stall_ms = 600000\n").unwrap();
    let mut args = vec!["-w", count, "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    (sup_server(&args), dir)
}

/// A slow request, then `n` requests queued behind it at the same worker.
fn slow_then_queued(server: &Server, slow: &str, n: usize) -> (TimedGet, Vec<TimedGet>) {
    let slow = concurrent_gets(server, slow, 1).pop().unwrap();
    thread::sleep(Duration::from_millis(300));
    let queued = concurrent_gets(server, "/pid", n);
    thread::sleep(Duration::from_millis(300));
    (slow, queued)
}

#[test]
fn a_killed_worker_fails_only_the_request_it_was_running_not_those_queued_at_it() {
    let (server, _dir) = patient_workers("1", &[]);
    let worker = children(server.pid())[0];
    let (slow, queued) = slow_then_queued(&server, "/sleep?s=30", 5);
    kill9(worker);
    assert_eq!(slow.join().unwrap().0 .0, 502);
    for h in queued {
        let ((status, pid), _) = h.join().unwrap();
        assert_eq!(status, 200, "{pid}");
        assert_ne!(pid, worker.to_string(), "served by the replacement");
    }
}

#[test]
fn a_timed_out_worker_gives_504_only_to_the_hung_request() {
    let (server, _dir) = patient_workers("1", &["-t", "2"]);
    let worker = children(server.pid())[0];
    let (slow, queued) = slow_then_queued(&server, "/sleep?s=60", 3);
    assert_eq!(slow.join().unwrap().0 .0, 504);
    for h in queued {
        let ((status, pid), _) = h.join().unwrap();
        assert_eq!(status, 200, "{pid}");
        assert_ne!(pid, worker.to_string());
    }
}

#[test]
fn requests_queued_at_a_stalled_worker_go_back_to_the_queue_under_load() {
    // 40 clients keep the queue non-empty, so only the stall rule can move the
    // requests sent ahead to the worker that sleeps.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "[workers]\nlook_ahead_stall_ms = 300\n").unwrap();
    let server = sup_server(&["-w", "2", "-c", conf.to_str().unwrap()]);
    let slow = concurrent_gets(&server, "/sleep?s=8", 1).pop().unwrap();
    thread::sleep(Duration::from_millis(200));
    let until = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let url = server.url("/pid");
            thread::spawn(move || {
                let c = client();
                let mut slowest = Duration::ZERO;
                while Instant::now() < until {
                    let started = Instant::now();
                    let status = c.get(&url).send().map(|r| r.status().as_u16());
                    assert_eq!(status.ok(), Some(200));
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    for c in clients {
        let slowest = c.join().unwrap();
        assert!(
            slowest < Duration::from_secs(4),
            "a request waited {slowest:?}"
        );
    }
    assert_eq!(slow.join().unwrap().0 .0, 200);
}

/// A GET of `/wait?for=FLAG` or `/drip?until=FLAG` (sup_app), returned once the
/// view is running (it touched `FLAG.started`).
fn blocked_get(server: &Server, view: &str, flag: &Path) -> TimedGet {
    let key = if view == "/wait" { "for" } else { "until" };
    let h = concurrent_gets(server, &format!("{view}?{key}={}", flag.display()), 1)
        .pop()
        .unwrap();
    let started = flag.with_extension("started");
    wait_until("the view to start", Duration::from_secs(20), || {
        started.exists()
    });
    h
}

/// `/drip?until=FLAG` read as it arrives: its status and body at the end, and the
/// bytes received so far.
fn streamed_get(
    server: &Server,
    flag: &Path,
) -> (thread::JoinHandle<(u16, String)>, Arc<AtomicUsize>) {
    use std::io::Read;
    let received = Arc::new(AtomicUsize::new(0));
    let url = server.url(&format!("/drip?until={}", flag.display()));
    let count = received.clone();
    let h = thread::spawn(move || {
        let mut r = client().get(&url).send().unwrap();
        let status = r.status().as_u16();
        let (mut body, mut buf) = (Vec::new(), [0u8; 64]);
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    count.fetch_add(n, Ordering::SeqCst);
                }
                Err(e) => {
                    body.extend_from_slice(format!(" [cut: {e}]").as_bytes());
                    break;
                }
            }
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    let started = flag.with_extension("started");
    wait_until("the view to start", Duration::from_secs(20), || {
        started.exists()
    });
    (h, received)
}

#[test]
fn a_timeout_on_one_thread_costs_only_its_request_the_worker_drains_then_dies() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = sup_server(&[
        "-w",
        "1",
        "--threads",
        "2",
        "-t",
        "2",
        "--admin-bind",
        &admin,
    ]);
    let old = children(server.pid())[0];
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // A stays silent past its timeout; B, on the worker's other thread, is alive
    // (it sends a byte every 0.2 s) until the test lets it end.
    let hung = blocked_get(&server, "/wait", &a);
    let (alive, received) = streamed_get(&server, &b);
    let ((status, _), took) = hung.join().unwrap();
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    server.wait_for_log("WORKER TIMEOUT", Duration::from_secs(5));
    // While B runs on the old worker, new requests go to its replacement.
    for _ in 0..3 {
        let (status, pid) = get(&server.url("/pid"));
        assert_eq!(status, 200, "{pid}");
        assert_ne!(
            pid,
            old.to_string(),
            "the draining worker was sent a request"
        );
    }
    // B goes on well past A's timeout (2 s more of its bytes) on the old worker.
    let after = received.load(Ordering::SeqCst);
    wait_until(
        "B's bytes 2 s after A's 504",
        Duration::from_secs(10),
        || received.load(Ordering::SeqCst) >= after + 10 || alive.is_finished(),
    );
    assert!(!alive.is_finished(), "B ended early: {}", server.log());
    assert!(
        children(server.pid()).contains(&old),
        "killed before B ended"
    );
    // A's late answer is dropped; B completes.
    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, "").unwrap();
    let (status, body) = alive.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("done"), "{body}");
    wait_until("the old worker killed", Duration::from_secs(10), || {
        !children(server.pid()).contains(&old)
    });
    server.wait_for_log("killing the timed-out worker", Duration::from_secs(5));
    let reason = "ferricorn_worker_restarts_total{reason=\"timeout\"}";
    assert_eq!(metric(&admin, reason), 1);
    assert_eq!(get(&server.url("/pid")).0, 200);
}

#[test]
fn a_condemned_workers_other_requests_get_504_at_their_own_timeouts_not_502() {
    let server = sup_server(&["-w", "1", "--threads", "2", "-t", "2"]);
    let old = children(server.pid())[0];
    let dir = tempfile::tempdir().unwrap();
    let first = blocked_get(&server, "/wait", &dir.path().join("a"));
    // The second starts a while after the first: it must outlive the first's timeout.
    thread::sleep(Duration::from_millis(800));
    let second = blocked_get(&server, "/wait", &dir.path().join("b"));
    let ((status, _), _) = first.join().unwrap();
    assert_eq!(status, 504);
    let ((status, body), _) = second.join().unwrap();
    assert_eq!(status, 504, "{body}");
    wait_until("the old worker killed", Duration::from_secs(10), || {
        !children(server.pid()).contains(&old)
    });
}

#[test]
fn a_condemned_worker_is_killed_at_the_end_of_its_grace_whatever_still_streams() {
    let server = sup_server(&[
        "-w",
        "1",
        "--threads",
        "2",
        "-t",
        "2",
        "--graceful-timeout",
        "3",
    ]);
    let old = children(server.pid())[0];
    let dir = tempfile::tempdir().unwrap();
    let hung = blocked_get(&server, "/wait", &dir.path().join("a"));
    // Never told to end: it streams until the worker is killed.
    let endless = blocked_get(&server, "/drip", &dir.path().join("b"));
    assert_eq!(hung.join().unwrap().0 .0, 504);
    let ((_, body), took) = endless.join().unwrap();
    assert!(!body.ends_with("done"), "{body}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    server.wait_for_log("grace is over", Duration::from_secs(5));
    wait_until("the old worker killed", Duration::from_secs(10), || {
        !children(server.pid()).contains(&old)
    });
}

#[test]
fn no_more_condemned_workers_than_the_pool_the_next_timeout_kills_at_once() {
    let server = sup_server(&["-w", "1", "--threads", "2", "-t", "2"]);
    let first = children(server.pid())[0];
    let dir = tempfile::tempdir().unwrap();
    let flag = |name: &str| dir.path().join(name);
    let hung = blocked_get(&server, "/wait", &flag("a"));
    let alive = blocked_get(&server, "/drip", &flag("b"));
    assert_eq!(hung.join().unwrap().0 .0, 504);
    // The first worker is condemned (B runs on); its replacement gets C and D.
    let from = server.log_len();
    let hung = blocked_get(&server, "/wait", &flag("c"));
    let second = children(server.pid())
        .into_iter()
        .find(|p| *p != first)
        .unwrap();
    let other = blocked_get(&server, "/wait", &flag("d"));
    assert_eq!(hung.join().unwrap().0 .0, 504);
    let ((status, body), _) = other.join().unwrap();
    assert_eq!(status, 504, "{body}");
    server.wait_for_log_after(from, "killing the worker", Duration::from_secs(5));
    wait_until("the second worker killed", Duration::from_secs(10), || {
        !children(server.pid()).contains(&second)
    });
    assert!(children(server.pid()).contains(&first), "B's worker killed");
    std::fs::write(flag("b"), "").unwrap();
    let ((status, body), _) = alive.join().unwrap();
    assert_eq!((status, body.ends_with("done")), (200, true), "{body}");
}

/// `sup_app:app` (or the app `conf` names) from tests/apps, its settings from the
/// config file `conf`, which names the app too, so that a HUP can change it.
fn conf_launch(conf: &Path, extra: &[&str]) -> Launch {
    let apps = apps_dir();
    let mut args = vec![
        "--chdir",
        apps.to_str().unwrap(),
        "-c",
        conf.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::launch(args)
}

/// Writes `conf`, sends HUP and waits until the reload failed: its log line.
fn hup_that_fails(server: &Server, conf: &Path, toml: &str) -> String {
    std::fs::write(conf, toml).unwrap();
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    server.wait_for_log_after(from, "reload failed", Duration::from_secs(30))
}

/// A failed reload leaves the server as it was: here a HUP to `interface = "asgi"`
/// fails (the app is WSGI), and the worker killed next is replaced by one that
/// boots with the settings before the HUP, and serves. Before the fix the
/// replacement got the failed settings, failed at every start, and the pool stayed
/// empty.
#[test]
fn after_a_reload_to_the_other_interface_failed_a_dead_worker_is_replaced_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "app = \"sup_app:app\"\n[workers]\nthreads = 2\n").unwrap();
    let server = conf_launch(&conf, &["-w", "1"]).start();
    let toml = "app = \"sup_app:app\"\n[workers]\ninterface = \"asgi\"\n";
    let line = hup_that_fails(&server, &conf, toml);
    assert!(line.contains("other interface"), "{line}");
    let old = children(server.pid())[0];
    let from = server.log_len();
    kill9(old);
    server.wait_for_log_after(from, "worker died", Duration::from_secs(10));
    server.wait_for_log_after(from, "Booted worker", Duration::from_secs(30));
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200, "{pid}");
    assert_ne!(pid, old.to_string());
    let log = &server.log()[from..];
    assert!(!log.contains("failed to start"), "{log}");
}

/// Likewise after a HUP to an app that does not import, for a worker that leaves
/// at `max_requests`: its successor imports the app the server ran before, and the
/// requests after the quota are served.
#[test]
fn after_a_reload_to_an_app_that_does_not_import_a_recycled_worker_is_replaced_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(
        &conf,
        "app = \"sup_app:app\"\n[workers]\nmax_requests = 3\n",
    )
    .unwrap();
    let server = conf_launch(&conf, &["-w", "1"]).start();
    let old = children(server.pid())[0];
    let toml = "app = \"raises_on_import:app\"\n[workers]\nmax_requests = 3\n";
    let line = hup_that_fails(&server, &conf, toml);
    assert!(line.contains("does not import"), "{line}");
    let from = server.log_len();
    for _ in 0..3 {
        assert_eq!(get(&server.url("/pid")), (200, old.to_string()));
    }
    server.wait_for_log_after(from, "reached max-requests", Duration::from_secs(10));
    server.wait_for_log_after(from, "Booted worker", Duration::from_secs(30));
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200, "{pid}");
    assert_ne!(pid, old.to_string());
    let log = &server.log()[from..];
    assert!(!log.contains("refuses to import"), "{log}");
}

/// A timeout acts on what the running worker serves, not on what the settings now
/// say: here a HUP to 1 thread is under way (the new worker's import waits on a
/// file the test holds back) while the old worker, on 2 threads, serves on. Its
/// request past the timeout must condemn it (its other thread's stream ends), as
/// on 2 threads; a master counting the worker's slots from the new settings (1)
/// kills it at once, cutting the stream.
#[test]
fn a_timeout_counts_the_running_workers_threads_not_the_reloaded_settings() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    let gate = dir.path().join("gate");
    std::fs::write(&conf, "app = \"sup_app:app\"\n[workers]\nthreads = 2\n").unwrap();
    let server = conf_launch(&conf, &["-w", "1", "-t", "2"])
        .env("GATED_IMPORT", &gate)
        .start();
    let old = children(server.pid())[0];
    let reload = "app = \"gated_import:app\"\n[workers]\nthreads = 1\n";
    std::fs::write(&conf, reload).unwrap();
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    wait_until("the new worker's import", Duration::from_secs(30), || {
        gate.with_extension("started").exists()
    });
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let hung = blocked_get(&server, "/wait", &a);
    let (alive, _received) = streamed_get(&server, &b);
    assert_eq!(hung.join().unwrap().0 .0, 504);
    let line = server.wait_for_log_after(from, "WORKER TIMEOUT", Duration::from_secs(5));
    assert!(line.contains("is sent nothing more"), "{line}");
    assert!(children(server.pid()).contains(&old), "killed at once");
    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, "").unwrap();
    let (status, body) = alive.join().unwrap();
    assert_eq!((status, body.ends_with("done")), (200, true), "{body}");
    // Let go, the new worker ends the reload and serves.
    std::fs::write(&gate, "").unwrap();
    server.wait_for_log_after(from, "reload complete", Duration::from_secs(30));
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200, "{pid}");
    assert_ne!(pid, old.to_string());
}

/// The pid in a log line's `pid=N`.
fn logged_pid(line: &str) -> i32 {
    let pid = line
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next());
    pid.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

/// A HUP that restarts a reload under way and fails puts back the settings before
/// both: the worker the first reload had started (it runs settings given up) is
/// replaced by one of the app served before, and the old worker that reload had
/// set to go serves on. Before the fix the failed settings stayed: the first
/// reload's worker served on, and its replacements failed for ever.
#[test]
fn a_failed_reload_that_restarted_one_under_way_puts_back_the_settings_before_both() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    let gate = dir.path().join("gate");
    std::fs::write(&conf, "app = \"sup_app:app\"\n").unwrap();
    // At debug, each worker's own "booted: app ..." line names the app it runs.
    let server = conf_launch(&conf, &["-w", "2", "--log-level", "debug"])
        .env("GATED_IMPORT", &gate)
        .start();
    // The first reload's first worker imports at once, its second waits.
    std::fs::write(&gate, "").unwrap();
    std::fs::write(&conf, "app = \"gated_import:app\"\n").unwrap();
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    let first = server.wait_for_log_after(from, "Booted worker", Duration::from_secs(30));
    let first = logged_pid(&first);
    wait_until(
        "the second new worker's import",
        Duration::from_secs(30),
        || gate.with_extension("started").exists(),
    );
    let toml = "app = \"raises_on_import:app\"\n";
    let line = hup_that_fails(&server, &conf, toml);
    assert!(line.contains("does not import"), "{line}");
    let from = server.log_len();
    // The held import ends: its worker, of a reload given up, stops at once.
    std::fs::write(&gate, "").unwrap();
    server.wait_for_log_after(from, "superseded reload", Duration::from_secs(30));
    // Its successor runs the app served before both reloads.
    server.wait_for_log_after(from, "booted: app sup_app:app", Duration::from_secs(30));
    wait_until(
        "the first reload's worker gone",
        Duration::from_secs(30),
        || !children(server.pid()).contains(&first),
    );
    assert_eq!(children(server.pid()).len(), 2);
    for _ in 0..4 {
        let (status, pid) = get(&server.url("/pid"));
        assert_eq!(status, 200, "{pid}");
        assert_ne!(pid, first.to_string());
    }
    let log = &server.log()[from..];
    assert!(!log.contains("failed to start"), "{log}");
}
