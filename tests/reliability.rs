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
