//! What gunicorn users type, and what it does here: `module` without `:callable`,
//! `--access-logformat` with gunicorn's `%(h)s` codes, `--log-level warn`, `-k sync`
//! and `-k gthread`, and `bind = "host:port"` as a plain string in the TOML.

mod common;

use common::{apps_dir, client, run, test_app};
use std::time::Duration;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--check-config` with `args`, its stdout (which must be a success).
fn effective(args: &[&str]) -> String {
    let apps = apps_dir();
    let mut all = vec!["--chdir", apps.to_str().unwrap(), "--check-config"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_module_alone_means_its_application_callable() {
    let text = effective(&["sup_app"]);
    assert!(text.contains("app = \"sup_app:application\""), "{text}");
    let server = test_app("sup_app", &["-w", "1"]).start();
    let resp = client().get(server.url("/pid")).send().unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn log_level_warn_and_the_sync_and_gthread_classes_are_accepted() {
    let text = effective(&["--log-level", "warn", "-k", "sync", "sup_app:app"]);
    assert!(text.contains("level = \"warning\""), "{text}");
    let text = effective(&["--worker-class", "gthread", "--threads", "4", "sup_app:app"]);
    assert!(text.contains("threads = 4"), "{text}");
}

#[test]
fn other_worker_classes_are_refused_in_one_line() {
    for class in ["gevent", "eventlet", "tornado"] {
        let out = run(["-k", class, "sup_app:app"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(class) && err.contains("--threads"), "{err}");
    }
}

#[test]
fn gunicorns_access_log_format_is_translated() {
    let gunicorn = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s"#;
    let server = test_app(
        "sup_app:app",
        &[
            "-w",
            "1",
            "--access-logfile",
            "-",
            "--access-logformat",
            gunicorn,
        ],
    )
    .start();
    let resp = client()
        .get(server.url("/pid?x=1"))
        .header("user-agent", "probe/2")
        .send()
        .unwrap();
    let pid = resp.text().unwrap();
    let line = server.wait_for_log("\"GET /pid?x=1 HTTP/1.1\"", Duration::from_secs(10));
    let expected_tail = format!(
        " \"GET /pid?x=1 HTTP/1.1\" 200 {} \"-\" \"probe/2\" ",
        pid.len()
    );
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains(" +0000] "), "{line}");
    assert!(line.contains(&expected_tail), "{line}");
    let micros: u64 = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(micros > 0, "{line}");
}

/// gunicorn's default format quotes the referer and the user agent: a client's `"`
/// cannot close them to forge the status and size after, over HTTP/1, and C1
/// controls and bidi overrides go out as `\xHH` bytes, over HTTP/2, as in
/// `combined` (nginx's escaping).
#[test]
fn client_text_cannot_forge_fields_in_gunicorns_format() {
    let gunicorn = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
    let server = test_app(
        "sup_app:app",
        &[
            "-w",
            "1",
            "--access-logfile",
            "-",
            "--access-logformat",
            gunicorn,
        ],
    )
    .start();
    let forged = "GET /pid?h1 HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla\" 200 1 \"-\" \"-\r\nConnection: close\r\n\r\n";
    assert!(server
        .raw(forged.as_bytes(), Duration::from_secs(10))
        .contains(" 200 "));
    let line = server.wait_for_log("/pid?h1 ", Duration::from_secs(10));
    assert!(
        line.ends_with(r#" "-" "Mozilla\x22 200 1 \x22-\x22 \x22-""#),
        "{line}"
    );
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
        .args(["-A", "x\u{9b}31mRED", "-e", "ref\u{202e}evil"])
        .arg(server.url("/pid?h2"))
        .status()
        .unwrap();
    assert!(curl.success());
    let line = server.wait_for_log("/pid?h2 ", Duration::from_secs(10));
    assert!(
        line.ends_with(r#" "ref\xE2\x80\xAEevil" "x\xC2\x9B31mRED""#),
        "{line}"
    );
}

#[test]
fn gunicorn_codes_without_an_equivalent_are_refused_in_one_line() {
    let out = run(["--access-logformat", "%({x-real-ip}i)s", "sup_app:app"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("%({x-real-ip}i)s is not supported"), "{err}");
}

#[test]
fn bind_may_be_a_plain_string_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("g.toml");
    std::fs::write(&conf, "[server]\nbind = \"127.0.0.1:8123\"\n").unwrap();
    let text = effective(&["-c", conf.to_str().unwrap(), "sup_app:app"]);
    assert!(text.contains("bind = [\"127.0.0.1:8123\"]"), "{text}");
}
