//! Recycling by memory and age (`--max-memory`, `--max-lifetime`): a worker over
//! either limit is replaced, its successor ready before it leaves, with no failed
//! request under load, a restart reason in /metrics and a log line with the figure.

mod common;

use common::{check_config_toml, free_port, get, metric, test_app, wait_until, Load};
use std::collections::HashSet;
use std::time::Duration;

const APP: &str = "sup_app:app";

#[test]
fn a_worker_over_max_memory_is_replaced_without_failures() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        APP,
        &["-w", "1", "--max-memory", "100MiB", "--admin-bind", &admin],
    )
    .start();
    let (_, first) = get(&server.url("/pid"));
    let load = Load::start(server.url("/pid"), 3);
    // 150 MiB written into the worker: over the limit at the next check.
    let (status, grown) = get(&server.url("/grow?mb=150"));
    assert_eq!((status, &grown), (200, &first));
    let line = server.wait_for_log("worker over max_memory", Duration::from_secs(20));
    assert!(line.contains(&format!("pid={first}")), "{line}");
    assert!(line.contains("max_memory_mib=100.0"), "{line}");
    let rss: f64 = line
        .split("rss_mib=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| server.fail("no rss_mib in the line"));
    assert!(rss > 150.0, "{line}");
    wait_until("a new worker serving", Duration::from_secs(30), || {
        get(&server.url("/pid")).1 != first
    });
    load.finish_without_failures();
    let reason = "ferricorn_worker_restarts_total{reason=\"max-memory\"}";
    assert_eq!(metric(&admin, reason), 1);
    // The successor is small again: it is not replaced in turn.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(metric(&admin, reason), 1, "{}", server.log());
}

/// A `max_memory` below what a worker weighs as it becomes ready replaced the whole
/// pool every second, silently. It is said once, with both figures, and such
/// workers stay (their successors would be as big).
#[test]
fn max_memory_below_a_fresh_worker_is_warned_about_once_and_churns_nothing() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        APP,
        &["-w", "2", "--max-memory", "1MiB", "--admin-bind", &admin],
    )
    .start();
    let line = server.wait_for_log("below a fresh worker", Duration::from_secs(10));
    assert!(line.contains("max_memory_mib=1.0"), "{line}");
    assert!(line.contains("rss_mib="), "{line}");
    let first: HashSet<i32> = common::children(server.pid()).into_iter().collect();
    assert_eq!(first.len(), 2, "{}", server.log());
    // Memory is checked once a second: over three checks, nobody is replaced.
    let reason = "ferricorn_worker_restarts_total{reason=\"max-memory\"}";
    let until = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < until {
        assert_eq!(get(&server.url("/pid")).0, 200);
        let now: HashSet<i32> = common::children(server.pid()).into_iter().collect();
        assert_eq!(now, first, "{}", server.log());
        assert_eq!(metric(&admin, reason), 0, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.log().matches("below a fresh worker").count(), 1);
    assert!(!server.log().contains("worker over max_memory"));
}

#[test]
fn workers_past_max_lifetime_are_replaced_one_by_one_without_failures() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        APP,
        &["-w", "2", "--max-lifetime", "2", "--admin-bind", &admin],
    )
    .start();
    let first: HashSet<i32> = common::children(server.pid()).into_iter().collect();
    let load = Load::start(server.url("/pid"), 4);
    server.wait_for_log("worker reached max_lifetime", Duration::from_secs(20));
    wait_until(
        "both first workers replaced",
        Duration::from_secs(30),
        || {
            let now: HashSet<i32> = common::children(server.pid()).into_iter().collect();
            now.len() == 2 && now.is_disjoint(&first)
        },
    );
    let results = load.finish_without_failures();
    let seen: HashSet<&String> = results.iter().map(|(_, pid)| pid).collect();
    assert!(seen.len() >= 3, "pids that answered: {seen:?}");
    let reason = "ferricorn_worker_restarts_total{reason=\"max-lifetime\"}";
    assert!(metric(&admin, reason) >= 2);
    let line = server.wait_for_log("max_lifetime_s=2", Duration::from_secs(1));
    assert!(line.contains("lived_s="), "{line}");
}

#[test]
fn the_config_file_takes_sizes_with_units_and_refuses_others() {
    let check = |toml: &str| check_config_toml(toml, APP);
    let out = check("[workers]\nmax_memory = \"512MiB\"\nmax_lifetime = 3600\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("max_memory = 536870912"), "{text}");
    assert!(text.contains("max_lifetime = 3600"), "{text}");

    let out = check("[workers]\nmax_memory = \"lots\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("f.toml:2:"), "{err}");
    assert!(err.contains("\"lots\" is not a size"), "{err}");
}
