//! systemd integration, with the test playing systemd's part: a `$NOTIFY_SOCKET`
//! datagram socket that receives sd_notify states (READY, RELOADING, STOPPING,
//! STATUS), and listening sockets passed as fd 3 with `$LISTEN_FDS`/`$LISTEN_PID`
//! (socket activation), TCP and Unix, and named by `fd://3`.

mod common;

use common::{apps_dir, free_port, kill, Launch, Server};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// The next sd_notify message, within `timeout`.
fn next_state(sock: &UnixDatagram, timeout: Duration) -> String {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("an sd_notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Messages until one contains `needle` (which is returned).
fn wait_state(sock: &UnixDatagram, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {needle:?} in {seen:?}");
        let state = next_state(sock, left);
        seen.push(state.clone());
        if state.contains(needle) {
            return state;
        }
    }
}

#[test]
fn notify_says_ready_reloading_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut server = common::test_app("sup_app:app", &["-w", "2"])
        .env("NOTIFY_SOCKET", &path)
        .start();
    let mut seen = Vec::new();
    let ready = wait_state(&sock, "READY=1", &mut seen);
    assert!(ready.contains("STATUS=Ready: 2 worker(s)"), "{ready}");
    kill(server.pid(), "HUP");
    let reloading = wait_state(&sock, "RELOADING=1", &mut seen);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    wait_state(&sock, "READY=1", &mut seen);
    server.wait_for_log("reload complete", Duration::from_secs(5));
    assert!(
        seen.iter()
            .any(|s| s.contains("STATUS=2 worker(s) serving")),
        "{seen:?}"
    );
    kill(server.pid(), "TERM");
    wait_state(&sock, "STOPPING=1", &mut seen);
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

/// A `$NOTIFY_SOCKET` whose receive queue is full (a stale socket nobody reads, or a
/// wedged manager): the master must not wait for it. It serves, drops the STATUS
/// messages, keeps READY=1 for when the manager reads again, and stops on TERM.
#[test]
fn a_notify_socket_nobody_reads_does_not_freeze_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut filled = 0;
    while filler.send_to(b"X=filler", &path).is_ok() {
        filled += 1;
        assert!(filled < 100_000, "the queue never filled");
    }
    let mut server = common::test_app("sup_app:app", &["-w", "2"])
        .env("NOTIFY_SOCKET", &path)
        .start();
    // Served while the queue is still full: the master is not stuck in a send.
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = quick
        .get(server.url("/pid"))
        .send()
        .unwrap_or_else(|e| server.fail(&format!("no answer with a full $NOTIFY_SOCKET: {e}")));
    assert_eq!(resp.status(), 200);
    // The manager reads again: the fillers, then READY=1 (the STATUS-only
    // messages sent meanwhile were dropped, not queued).
    let mut seen = Vec::new();
    let ready = wait_state(&sock, "READY=1", &mut seen);
    assert!(ready.contains("STATUS=Ready: 2 worker(s)"), "{ready}");
    assert_eq!(
        seen.iter().filter(|s| s.as_str() == "X=filler").count(),
        filled,
        "{seen:?}"
    );
    // Full again before the stop: TERM is still obeyed.
    let mut refilled = 0;
    while filler.send_to(b"X=filler", &path).is_ok() {
        refilled += 1;
        assert!(refilled < 100_000, "the queue never filled");
    }
    kill(server.pid(), "TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    server.wait_for_log("Shutdown complete", Duration::from_secs(1));
}

/// Starts ferricorn as systemd would: `socket` as fd 3, `LISTEN_FDS=1` and
/// `LISTEN_PID` its own pid (set by the shell that execs it).
fn activated(socket: OwnedFd, args: &[&str]) -> Server {
    let mut all = vec![
        "-c".to_string(),
        r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#.to_string(),
        common::BIN.to_string(),
        "--chdir".to_string(),
        apps_dir().display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all.push("sup_app:app".into());
    Launch::program("sh", all).stdin(socket).start()
}

#[test]
fn a_tcp_socket_systemd_passed_replaces_bind() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let unused = format!("127.0.0.1:{}", free_port());
    let server = activated(listener.into(), &["-w", "1", "-b", &unused]);
    server.wait_for_log("socket activation", Duration::from_secs(5));
    assert_eq!(server.addr, addr, "Listening at the passed socket");
    let resp = common::client().get(server.url("/pid")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        std::net::TcpStream::connect(&unused).is_err(),
        "bind {unused} must not be bound"
    );
}

#[test]
fn a_unix_socket_systemd_passed_is_named_by_fd_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // fd://3 is systemd's socket; the TCP bind beside it is bound as usual.
    let mut server = activated(
        listener.into(),
        &["-w", "1", "-b", "fd://3", "-b", "127.0.0.1:0"],
    );
    server.wait_for_log(
        &format!("Listening at: unix:{}", path.display()),
        Duration::from_secs(5),
    );
    assert_eq!(common::status_over_unix_socket(&path, "/pid"), "200");
    kill(server.pid(), "TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    // The socket file is systemd's: it stays.
    assert!(Path::new(&path).exists());
}

#[test]
fn fd_binds_without_socket_activation_are_an_error() {
    let out = common::run([
        "-b",
        "fd://3",
        "--chdir",
        apps_dir().to_str().unwrap(),
        "sup_app:app",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("fd://3"), "{err}");
}
