//! Queue time: the app sees `HTTP_X_REQUEST_START` (`t=` microseconds since the
//! epoch, when the front received the head; a trusted proxy's is kept, a client's
//! replaced), and the time a request waited for a worker's Python thread is in
//! `ferricorn_request_queue_seconds` and the access log's `queue_ms`.

mod common;

use common::{client, free_port, metric, test_app};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const APP: &str = "sup_app:app";

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The app's `HTTP_X_REQUEST_START` for a GET with `sent` as the client's header.
fn request_start(url: &str, sent: Option<&str>) -> String {
    let mut req = client().get(url);
    if let Some(v) = sent {
        req = req.header("x-request-start", v);
    }
    let env: serde_json::Value = req.send().unwrap().json().unwrap();
    env["HTTP_X_REQUEST_START"]
        .as_str()
        .unwrap_or_else(|| panic!("no HTTP_X_REQUEST_START in {env}"))
        .to_string()
}

#[test]
fn the_app_sees_when_the_front_received_the_request() {
    // The test client (127.0.0.1) is not a trusted proxy here.
    let server = test_app(APP, &["-w", "1", "--forwarded-allow-ips", "10.1.2.3"]).start();
    let url = server.url("/environ");
    let before = micros_now();
    let start = request_start(&url, None);
    let after = micros_now();
    let t: u128 = start
        .strip_prefix("t=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not t=MICROS: {start}"));
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    // A client cannot choose it.
    let forged = request_start(&url, Some("t=1"));
    assert_ne!(forged, "t=1");
    assert!(
        forged.starts_with("t=17") || forged.starts_with("t=18"),
        "{forged}"
    );
}

#[test]
fn a_trusted_proxys_request_start_is_kept() {
    // The default trusts local proxies, as gunicorn's forwarded_allow_ips does.
    let server = test_app(APP, &["-w", "1"]).start();
    let nginx_style = "t=1796429587.224";
    assert_eq!(
        request_start(&server.url("/environ"), Some(nginx_style)),
        nginx_style
    );
}

/// Two requests at once on one single-threaded worker: whichever runs second waited
/// for the first (0.6 s), look-ahead or not, and both logs say so.
#[test]
fn queue_time_is_measured_until_a_python_thread_starts_the_request() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        APP,
        &[
            "-w",
            "1",
            "--threads",
            "1",
            "--admin-bind",
            &admin,
            "--access-logfile",
            "-",
            "--access-log-format",
            "json",
        ],
    )
    .start();
    let requests: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/sleep?s=0.6");
            std::thread::spawn(move || client().get(url).send().unwrap().status())
        })
        .collect();
    for r in requests {
        assert_eq!(r.join().unwrap(), 200);
    }
    let mut queued: Vec<f64> = Vec::new();
    common::wait_until("two access lines", Duration::from_secs(10), || {
        let log = server.log();
        queued = log
            .lines()
            .filter(|l| l.contains("\"/sleep\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|e| e["queue_ms"].as_f64().expect("queue_ms is a number"))
            .collect();
        queued.len() == 2
    });
    queued.sort_by(f64::total_cmp);
    assert!(
        queued[0] < 100.0,
        "the first waited for nothing: {queued:?}"
    );
    assert!(
        queued[1] >= 500.0,
        "the second waited for the first: {queued:?}"
    );
    assert!(queued[1] < 5000.0, "{queued:?}");

    let count = metric(&admin, "ferricorn_request_queue_seconds_count");
    assert_eq!(count, 2);
    let quick = metric(&admin, "ferricorn_request_queue_seconds_bucket{le=\"0.1\"}");
    let slow = metric(&admin, "ferricorn_request_queue_seconds_bucket{le=\"0.5\"}");
    assert_eq!(
        (quick, slow),
        (1, 1),
        "one waited under 0.1 s, none 0.1–0.5 s"
    );
}
