//! Binary upgrade on USR2: the master starts the binary again on its listening
//! sockets (and admin socket); the new master's workers serve before the old master
//! drains and exits 0, and a steady load sees no failed request throughout.

mod common;

use common::{children, client, free_port, get, kill, test_app, wait_until, Load};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Kills the new master however the test ends.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn usr2_hands_the_sockets_to_a_new_master_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let admin = format!("127.0.0.1:{}", free_port());
    let mut server = test_app(
        "sup_app:app",
        &[
            "-w",
            "2",
            "--admin-bind",
            &admin,
            "-p",
            pidfile.to_str().unwrap(),
        ],
    )
    .start();
    let old = server.pid();
    let old_workers: HashSet<i32> = children(old).into_iter().collect();
    let load = Load::start(server.url("/pid"), 4);
    kill(old, "USR2");
    let line = server.wait_for_log(
        "binary upgrade: new master started",
        Duration::from_secs(10),
    );
    let new: i32 = line
        .split("pid=")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| server.fail("no pid in the line"));
    let _reap = Reap(new);
    server.wait_for_log("asking the old master to drain", Duration::from_secs(60));
    let status = server.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", server.log());

    // The new master serves on the same port, with its own workers.
    wait_until(
        "the new master's workers answer",
        Duration::from_secs(10),
        || {
            let (status, pid) = get(&server.url("/pid"));
            status == 200 && children(new).contains(&pid.parse().unwrap_or(0))
        },
    );
    let results = load.finish_without_failures();
    assert!(results.len() > 20, "{} requests", results.len());
    let served: HashSet<i32> = results.iter().filter_map(|(_, p)| p.parse().ok()).collect();
    assert!(
        !served.is_disjoint(&old_workers),
        "the old workers served first"
    );
    let health = client()
        .get(format!("http://{admin}/healthz"))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200, "the admin socket moved too");
    let written = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(
        written.trim(),
        new.to_string(),
        "the pid file names the new master"
    );

    kill(new, "TERM");
    wait_until("the new master stopped", Duration::from_secs(30), || {
        !Path::new(&format!("/proc/{new}")).exists()
            || std::fs::read_to_string(format!("/proc/{new}/stat"))
                .is_ok_and(|s| s.split(' ').nth(2) == Some("Z"))
    });
}

/// The ferricorn masters alive whose command line names `pidfile` (one per test):
/// the old one, and every new one a USR2 started.
fn masters_of(pidfile: &Path) -> Vec<i32> {
    let needle = pidfile.to_str().unwrap().as_bytes();
    let bin = std::fs::canonicalize(common::BIN).unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.starts_with(" Z")));
        if exe == bin && !zombie && cmdline.split(|&b| b == 0).any(|a| a == needle) {
            out.push(pid);
        }
    }
    out
}

/// Kills, however the test ends, every master naming `pidfile` (a failed test may
/// leave new masters behind).
struct ReapMasters(std::path::PathBuf);

impl Drop for ReapMasters {
    fn drop(&mut self) {
        for pid in masters_of(&self.0) {
            drop(Reap(pid));
        }
    }
}

fn pid_in(pidfile: &Path) -> String {
    std::fs::read_to_string(pidfile)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("(no pid file: {e})"))
}

/// The pid in a "binary upgrade: new master started" line.
fn new_master_pid(server: &common::Server, from: usize) -> i32 {
    let line = server.wait_for_log_after(
        from,
        "binary upgrade: new master started",
        Duration::from_secs(10),
    );
    line.split("pid=")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| server.fail("no pid in the line"))
}

/// `/master-env` answered by a worker of `master`: the master-only variables the
/// app sees (must be none).
fn master_env_seen_by_a_worker_of(server: &common::Server, master: i32) -> String {
    let mut seen = String::new();
    wait_until(
        "a worker of the master answers",
        Duration::from_secs(30),
        || {
            let (status, pid) = get(&server.url("/pid"));
            if status != 200 || !children(master).contains(&pid.parse().unwrap_or(0)) {
                return false;
            }
            seen = get(&server.url("/master-env")).1;
            true
        },
    );
    seen
}

#[test]
fn a_second_usr2_during_an_upgrade_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let hold = dir.path().join("hold-import");
    let mut server = test_app(
        "ops_app:app",
        &["-w", "1", "--preload", "-p", pidfile.to_str().unwrap()],
    )
    .env("OPS_APP_HOLD_IF", &hold)
    .start();
    let _reap = ReapMasters(pidfile.clone());
    let old = server.pid();
    // The new master's import waits until the test lets it go: the second USR2
    // surely comes while the upgrade is under way.
    std::fs::write(&hold, "").unwrap();
    kill(old, "USR2");
    let new = new_master_pid(&server, 0);
    // Sent once the first was taken (two signals sent at once may arrive as one).
    let from = server.log_len();
    kill(old, "USR2");
    server.wait_for_log_after(
        from,
        "USR2 refused: a binary upgrade is already under way",
        Duration::from_secs(10),
    );
    std::fs::remove_file(&hold).unwrap();
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert_eq!(masters_of(&pidfile), vec![new], "one new master serves");
    assert_eq!(pid_in(&pidfile), new.to_string());
    assert_eq!(master_env_seen_by_a_worker_of(&server, new), "{}");
}

#[test]
fn a_failed_upgrade_leaves_the_old_master_serving_and_named_by_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let fail = dir.path().join("fail-import");
    let mut server = test_app("ops_app:app", &["-w", "1", "-p", pidfile.to_str().unwrap()])
        .env("OPS_APP_FAIL_IF", &fail)
        .start();
    let old = server.pid();
    std::fs::write(&fail, "").unwrap();
    kill(old, "USR2");
    let new = new_master_pid(&server, 0);
    let _reap = Reap(new);
    server.wait_for_log(
        "binary upgrade: the new master exited; still serving",
        Duration::from_secs(60),
    );
    assert!(server.alive());
    assert_eq!(pid_in(&pidfile), old.to_string(), "{}", server.log());
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    assert!(children(old).contains(&pid.parse().unwrap_or(0)));

    // The next USR2, with code that imports, upgrades.
    std::fs::remove_file(&fail).unwrap();
    let from = server.log_len();
    kill(old, "USR2");
    let new = new_master_pid(&server, from);
    let _reap = Reap(new);
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert_eq!(pid_in(&pidfile), new.to_string());
}

/// TERM to the old master while the new one boots: the old one stops (the pid file,
/// which named it until then, goes with it); the new one, no longer its child, sends
/// no TERM to that pid, serves on and names itself in the pid file.
#[test]
fn term_during_an_upgrade_leaves_the_new_master_serving_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let hold = dir.path().join("hold-import");
    let mut server = test_app("ops_app:app", &["-w", "1", "-p", pidfile.to_str().unwrap()])
        .env("OPS_APP_HOLD_IF", &hold)
        .start();
    let old = server.pid();
    std::fs::write(&hold, "").unwrap();
    let from = server.log_len();
    kill(old, "USR2");
    let new = new_master_pid(&server, from);
    let _reap = Reap(new);
    server.wait_for_log_after(from, "Booting workers", Duration::from_secs(30));
    assert_eq!(
        pid_in(&pidfile),
        old.to_string(),
        "the pid file names the serving master while the new one boots"
    );
    kill(old, "TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    std::fs::remove_file(&hold).unwrap();
    server.wait_for_log(
        "the old master is no longer our parent",
        Duration::from_secs(60),
    );
    assert_eq!(master_env_seen_by_a_worker_of(&server, new), "{}");
    assert_eq!(pid_in(&pidfile), new.to_string());
}

/// Under systemd (socket activation, `$NOTIFY_SOCKET`) and after a USR2, the app's
/// `os.environ` has none of the variables meant for the master, nor have the
/// master's hooks helper and the workers' hooks.
#[test]
fn the_app_sees_no_variable_meant_for_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let _notify = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let pidfile = dir.path().join("ferricorn.pid");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let args = vec![
        "-c".to_string(),
        r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web WATCHDOG_USEC=30000000 WATCHDOG_PID=$$ exec "$0" "$@""#.to_string(),
        common::BIN.to_string(),
        "--chdir".to_string(),
        common::apps_dir().display().to_string(),
        "-w".to_string(),
        "1".to_string(),
        "--admin-bind".to_string(),
        admin,
        "-p".to_string(),
        pidfile.to_str().unwrap().to_string(),
        "--hooks".to_string(),
        "ops_hooks.py".to_string(),
        "ops_app:app".to_string(),
    ];
    let hooks_out = dir.path().join("hooks");
    let mut server = common::Launch::program("sh", args)
        .stdin(listener.into())
        .env("NOTIFY_SOCKET", &notify)
        .env("OPS_HOOKS_OUT", &hooks_out)
        .start();
    let old = server.pid();
    assert_eq!(master_env_seen_by_a_worker_of(&server, old), "{}");
    let hooks_saw = |hook: &str| -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!("hooks.{hook}.")) && !name.ends_with(".tmp")
            })
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    };
    wait_until("when_ready ran", Duration::from_secs(30), || {
        !hooks_saw("when_ready").is_empty()
    });
    assert_eq!(hooks_saw("when_ready"), ["{}"], "the hooks helper");
    assert!(!hooks_saw("post_fork").is_empty());
    assert!(
        hooks_saw("post_fork").iter().all(|s| s == "{}"),
        "a worker's hooks: {:?}",
        hooks_saw("post_fork")
    );
    kill(old, "USR2");
    let new = new_master_pid(&server, 0);
    let _reap = Reap(new);
    assert_eq!(server.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert_eq!(master_env_seen_by_a_worker_of(&server, new), "{}");
}
