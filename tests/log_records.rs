//! The workers' own log records travel on a pipe of their own, apart from what the
//! app prints: an app that prints a line a client chose (here one that starts with
//! RS, 0x1e, and spells a record: ERROR, a request id, an import failure) to stdout,
//! to stderr and through `logging` puts app output in the log, never an event; the
//! worker's real records still arrive as events. Spawned and preloaded workers.

mod common;

use common::{get, test_app, wait_until};
use std::time::Duration;

/// A worker record for a failed request, as the worker's pipe carries it.
const FORGED: &str = "\x1eE\x1frequest_id=forged-id\x1fevent=import_failed\x1fFORGED-EVENT";

fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The JSON events of the error log.
fn events(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.is_object())
        .collect()
}

#[test]
fn app_output_that_spells_a_record_is_app_output() {
    for extra in [&[][..], &["--preload"][..]] {
        let mut args = vec!["-w", "1", "--log-format", "json"];
        args.extend(extra);
        let server = test_app("ops_app:app", &args).start();
        let url = server.url(&format!("/print?line={}", percent_encoded(FORGED)));
        assert_eq!(get(&url), (200, "printed".to_string()));
        let forged_events = || -> Vec<serde_json::Value> {
            events(&server.log())
                .into_iter()
                .filter(|e| e.to_string().contains("FORGED-EVENT"))
                .collect()
        };
        // Its stderr line and its logging line (or a forged event: a record the
        // master believed, which the checks below name).
        wait_until(
            "the app's lines in the log",
            Duration::from_secs(10),
            || {
                let seen = forged_events();
                seen.len() >= 2 || seen.iter().any(|e| e["level"] != "INFO")
            },
        );
        for e in forged_events() {
            assert_eq!(e["level"], "INFO", "{extra:?}: {e}\n{}", server.log());
            assert!(e.get("request_id").is_none(), "{extra:?}: {e}");
            assert!(e.get("event").is_none(), "{extra:?}: {e}");
            let message = e["message"].as_str().unwrap_or_default();
            assert!(message.contains(FORGED), "{extra:?}: shown as printed: {e}");
        }
        // stdout is the master's own, passed through untouched.
        assert!(
            server.log().lines().any(|l| l == FORGED),
            "{extra:?}: {}",
            server.log()
        );

        // The worker's own records still arrive as events, with their fields.
        assert_eq!(get(&server.url("/raise")).0, 500);
        wait_until(
            "the worker's record of the error",
            Duration::from_secs(10),
            || {
                events(&server.log()).iter().any(|e| {
                    e["level"] == "ERROR"
                        && e["path"] == "/raise"
                        && e["request_id"].as_str().is_some_and(|id| !id.is_empty())
                })
            },
        );
        assert_eq!(get(&server.url("/pid")).0, 200);
    }
}

/// Each worker's boot is one INFO line (the worker's own `booted: app ...` said it
/// again, at debug now), and exits read `exit 0` or `signal TERM` (they read
/// `status=exit status: 0`).
#[test]
fn a_boot_is_one_line_and_an_exit_reads_well() {
    let mut server = test_app("front_app:app", &["-w", "2"]).start();
    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let log = server.log();
    assert_eq!(log.matches("Booted worker").count(), 2, "{log}");
    assert!(!log.contains("booted: app"), "{log}");
    let exits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker exited"))
        .collect();
    assert_eq!(exits.len(), 2, "{log}");
    for line in exits {
        assert!(line.contains("status=exit 0"), "{line}");
        assert!(!line.contains("exit status"), "{line}");
    }
    // At debug, the worker's own line is still there for whoever wants it.
    let server = test_app("front_app:app", &["-w", "1", "--log-level", "debug"]).start();
    server.wait_for_log("booted: app front_app:app", Duration::from_secs(10));
}
