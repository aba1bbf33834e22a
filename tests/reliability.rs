//! Faults that must cost a request at most, never the server: a full disk, broken
//! workers, signal bursts, hostile HTTP/2 clients, apps that misbehave.

mod common;
use common::*;
use std::time::Duration;

fn sup_app(extra: &[&str]) -> Launch {
    let mut args = vec!["--chdir", apps_dir().to_str().unwrap().to_owned().leak()];
    args.extend_from_slice(extra);
    args.push("sup_app:app");
    Server::launch(args)
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
    let mut args = vec!["--chdir", apps_dir().to_str().unwrap().to_owned().leak()];
    args.extend_from_slice(extra);
    args.push("misbehave:app");
    Server::launch(args)
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
    let mut args = vec!["--chdir", apps_dir().to_str().unwrap().to_owned().leak()];
    args.extend_from_slice(extra);
    args.push("slow_import:app");
    Server::launch(args).no_wait()
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
