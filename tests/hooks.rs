//! Server hooks (`--hooks`), on the Django site with prometheus_client in
//! multiprocess mode: each hook runs where gunicorn runs it (the master's in a
//! helper interpreter), a hook that raises is logged with its traceback and the
//! server carries on, and an exited worker's prometheus files are marked dead,
//! with a hooks file or without one.

mod common;

use common::{apps_dir, client, wait_until, DjangoSite, Server};
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
