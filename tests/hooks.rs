//! Server hooks (`--hooks`), on the Django site with prometheus_client in
//! multiprocess mode: each hook runs where gunicorn runs it (the master's in a
//! helper interpreter), a hook that raises is logged with its traceback and the
//! server carries on, and an exited worker's prometheus files are marked dead,
//! with a hooks file or without one. `on_starting` returns before any worker
//! starts; a hook's traceback is one ERROR record of the error log.

mod common;

use common::{apps_dir, client, test_app, wait_until, DjangoSite, Server};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const APP: &str = "prom_wsgi:application";

/// The lines of the hooks log: (hook, pid of the process that ran it, detail).
fn hook_lines(log: &Path) -> Vec<(String, u32, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next().unwrap().to_string();
            let pid = parts.next().unwrap().parse().unwrap();
            (name, pid, parts.next().unwrap_or("").to_string())
        })
        .collect()
}

fn pids_of(lines: &[(String, u32, String)], hook: &str) -> HashSet<u32> {
    lines
        .iter()
        .filter(|(n, _, _)| n == hook)
        .map(|(_, p, _)| *p)
        .collect()
}

/// The pids with a live-gauge file in the multiprocess directory.
fn live_gauge_pids(dir: &Path) -> HashSet<u32> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_prefix("gauge_livesum_")?
                .strip_suffix(".db")?
                .parse()
                .ok()
        })
        .collect()
}

fn serve(site: &DjangoSite, tmp: &Path, hooks: bool) -> Server {
    let prom = tmp.join("prom");
    std::fs::create_dir_all(&prom).unwrap();
    let hooks_file = apps_dir().join("hooks_conf.py");
    let mut extra = vec!["-w", "2", "--max-requests", "10"];
    if hooks {
        extra.extend(["--hooks", hooks_file.to_str().unwrap()]);
    }
    site.launch(&extra, APP)
        .env("PROMETHEUS_MULTIPROC_DIR", &prom)
        .env("HOOKS_LOG", tmp.join("hooks.log"))
        .start()
}

/// Requests until every first worker was recycled by max-requests.
fn recycle_all(server: &Server, first: &HashSet<u32>, current: impl Fn() -> HashSet<u32>) {
    let c = client();
    wait_until(
        "the first workers recycled",
        Duration::from_secs(60),
        || {
            let resp = c.get(server.url("/admin/login/")).send().unwrap();
            assert_eq!(resp.status(), 200);
            current().is_disjoint(first)
        },
    );
}

#[test]
fn hooks_run_where_gunicorn_runs_them_and_a_raising_one_is_only_logged() {
    let site = DjangoSite::prepare();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&site, tmp.path(), true);
    let log = tmp.path().join("hooks.log");
    server.wait_for_log("hook when_ready raised", Duration::from_secs(20));
    server.wait_for_log(
        "RuntimeError: when_ready refuses, on purpose",
        Duration::from_secs(5),
    );

    let resp = client().get(server.url("/admin/login/")).send().unwrap();
    assert_eq!(resp.status(), 200, "the server carries on after the raise");
    wait_until("the request hooks", Duration::from_secs(10), || {
        let lines = hook_lines(&log);
        lines
            .iter()
            .any(|(n, _, d)| n == "post_request" && d == "GET /admin/login/ 200")
    });
    let lines = hook_lines(&log);
    let master = server.pid() as u32;
    // The master's hooks ran in one helper, not in the master nor in a worker.
    let helper = pids_of(&lines, "on_starting");
    assert_eq!(helper, pids_of(&lines, "when_ready"), "{lines:?}");
    assert!(!helper.contains(&master), "{lines:?}");
    let on_starting = lines.iter().find(|(n, _, _)| n == "on_starting").unwrap();
    assert_eq!(on_starting.2, format!("master={master}"));
    // The workers' hooks ran in the workers.
    let workers = pids_of(&lines, "post_fork");
    assert_eq!(workers.len(), 2, "{lines:?}");
    assert_eq!(workers, pids_of(&lines, "post_worker_init"), "{lines:?}");
    assert!(workers.is_disjoint(&helper));
    assert!(
        pids_of(&lines, "pre_request").is_subset(&workers),
        "{lines:?}"
    );

    // Recycled workers: worker_exit in each, child_exit for each in the helper.
    let first = workers.clone();
    recycle_all(&server, &first, || {
        let lines = hook_lines(&log);
        let started = pids_of(&lines, "post_fork");
        let exited: HashSet<u32> = lines
            .iter()
            .filter(|(n, _, _)| n == "child_exit")
            .filter_map(|(_, _, d)| d.strip_prefix("worker=")?.parse().ok())
            .collect();
        started.difference(&exited).copied().collect()
    });
    let lines = hook_lines(&log);
    assert!(
        first.is_subset(&pids_of(&lines, "worker_exit")),
        "{lines:?}"
    );
    for (n, pid, _) in &lines {
        if n == "child_exit" {
            assert!(
                helper.contains(pid),
                "child_exit ran in the helper: {lines:?}"
            );
        }
    }
    let prom = tmp.path().join("prom");
    wait_until(
        "the first workers' gauges marked dead",
        Duration::from_secs(10),
        || live_gauge_pids(&prom).is_disjoint(&first),
    );
}

/// prometheus_client's docs ask gunicorn users for a `child_exit` hook that calls
/// `mark_process_dead`; here `PROMETHEUS_MULTIPROC_DIR` alone does it.
#[test]
fn an_exited_workers_prometheus_files_are_marked_dead_without_a_hook() {
    let site = DjangoSite::prepare();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&site, tmp.path(), false);
    let prom = tmp.path().join("prom");
    let c = client();
    let mut first = HashSet::new();
    wait_until("both workers' gauges", Duration::from_secs(20), || {
        let resp = c.get(server.url("/admin/login/")).send().unwrap();
        assert_eq!(resp.status(), 200);
        first = live_gauge_pids(&prom);
        first.len() == 2
    });
    recycle_all(&server, &first, || live_gauge_pids(&prom));
    let metrics = c
        .get(server.url("/metrics-from-workers"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("djsite_workers 2.0") || metrics.contains("djsite_workers 1.0"),
        "only live workers count: {metrics}"
    );
    assert!(!std::fs::exists(tmp.path().join("hooks.log")).unwrap());
}

/// gunicorn runs `on_starting` before it spawns a worker (a hook that migrates or
/// warms a cache counts on it): a slow one holds the workers back until it returns.
#[test]
fn on_starting_returns_before_any_worker_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let hooks = tmp.path().join("slow_start.py");
    std::fs::write(
        &hooks,
        r#"import os, time

def _log(line):
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(line + "\n")

def _workers(master):
    # The master's children other than this helper, from /proc.
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found += ppid == master and int(pid) != os.getpid()
    return found

def on_starting(server):
    _log("on_starting begins")
    time.sleep(1.5)  # a slow one: migrations, a warm-up
    _log(f"on_starting ends workers={_workers(server.pid)}")

def post_fork(server, worker):
    _log("post_fork")
"#,
    )
    .unwrap();
    let log = tmp.path().join("hooks.log");
    let server = test_app(
        "sup_app:app",
        &["-w", "2", "--hooks", hooks.to_str().unwrap()],
    )
    .env("HOOKS_LOG", &log)
    .start();
    assert_eq!(common::get(&server.url("/pid")).0, 200);
    wait_until("both post_fork lines", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            == 4
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "on_starting begins",
            "on_starting ends workers=0",
            "post_fork",
            "post_fork"
        ],
        "{}",
        server.log()
    );
}

/// What a hook raises is one ERROR event with its traceback, in the master's
/// helper and in a worker alike, not one INFO line per line of traceback.
#[test]
fn a_raising_hooks_traceback_is_one_error_record() {
    let tmp = tempfile::tempdir().unwrap();
    let hooks = tmp.path().join("raising.py");
    std::fs::write(
        &hooks,
        "def when_ready(server):\n    raise RuntimeError('when_ready refuses, on purpose')\n\n\
         def post_worker_init(worker):\n    raise ValueError('post_worker_init refuses, on purpose')\n",
    )
    .unwrap();
    let error_log = tmp.path().join("error.log");
    let _server = test_app(
        "sup_app:app",
        &[
            "-w",
            "1",
            "--hooks",
            hooks.to_str().unwrap(),
            "--error-logfile",
            error_log.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    )
    .no_wait()
    .start();
    let events = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&error_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let about = |events: &[serde_json::Value], what: &str| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(what)))
            .cloned()
            .collect()
    };
    wait_until("both reports", Duration::from_secs(30), || {
        let all = events();
        !about(&all, "when_ready refuses").is_empty()
            && !about(&all, "post_worker_init refuses").is_empty()
    });
    let all = events();
    for (hook, error) in [
        ("when_ready", "RuntimeError: when_ready refuses, on purpose"),
        (
            "post_worker_init",
            "ValueError: post_worker_init refuses, on purpose",
        ),
    ] {
        let found = about(&all, &format!("{hook} refuses"));
        assert_eq!(found.len(), 1, "one event: {all:#?}");
        let event = &found[0];
        assert_eq!(event["level"], "ERROR", "{event}");
        let message = event["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("hook {hook} raised:\n")),
            "{message}"
        );
        assert_eq!(
            message.matches("Traceback (most recent call last)").count(),
            1,
            "{message}"
        );
        assert_eq!(message.matches(error).count(), 1, "{message}");
        assert!(event["pid"].is_number(), "{event}");
    }
    assert!(about(&all, "Traceback").len() == 2, "{all:#?}");
}
