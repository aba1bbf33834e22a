//! Memory bounded by configuration, not by clients: what a slow app, a full disk or
//! many slow uploads cost the master. Figures are peaks (VmHWM) of the master alone.

mod common;
use common::*;
use std::time::Duration;

fn misbehave(extra: &[&str]) -> Launch {
    let mut args = vec!["--chdir", apps_dir().to_str().unwrap().to_owned().leak()];
    args.extend_from_slice(extra);
    args.push("misbehave:app");
    Server::launch(args)
}

/// A 50 MiB upload to an app that reads it slowly used to be read whole from its
/// spool file into the master's memory; it streams with back-pressure now.
#[test]
fn a_spooled_upload_streams_to_a_slow_app() {
    let server = misbehave(&["-w", "1"]).start();
    assert_eq!(get(&server.url("/pid")).0, 200);
    let before = peak_rss_kib(server.pid());
    let body = vec![b'u'; 50 * 1024 * 1024];
    let resp = client()
        .post(server.url("/slow-read?chunk=1048576&pause=0.04"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), (50 * 1024 * 1024).to_string());
    let grown = peak_rss_kib(server.pid()) - before;
    eprintln!("master peak grew by {grown} KiB for a 50 MiB upload");
    assert!(grown < 16 * 1024, "the master's peak grew by {grown} KiB");
}
