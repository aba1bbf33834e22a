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
