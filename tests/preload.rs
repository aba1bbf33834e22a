//! Preload (`--preload`): one zygote imports the app once and forks the workers,
//! which the master adopts. Respawns, max-requests and HUP work as without it (HUP
//! starts a new zygote, which imports the new code); an import failure is the same
//! exit 3 with one traceback; and the Django site's process tree takes less memory.

mod common;

use common::{children, client, get, kill, test_app, wait_until, DjangoSite, Load, Server};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const APP: &str = "preload_app:app";

/// The pids that imported the app so far, one line each.
fn imports(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// `/who`: (the pid that imported the module, the worker's pid).
fn who(server: &Server) -> (u32, u32) {
    let (status, body) = get(&server.url("/who"));
    assert_eq!(status, 200, "{body}");
    let mut parts = body.split(' ').map(|p| p.parse().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

fn preloaded(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--preload"];
    args.extend_from_slice(extra);
    test_app(APP, &args)
        .env("PRELOAD_IMPORTS", dir.join("imports"))
        .start()
}

#[test]
fn workers_are_forked_from_one_import_and_adopted_by_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let server = preloaded(dir.path(), &["-w", "2"]);
    let imported = imports(&dir.path().join("imports"));
    assert_eq!(
        imported.len(),
        1,
        "one import for two workers: {imported:?}"
    );
    let zygote = imported[0];
    // Two slow requests at once: one single-threaded worker each.
    let answers: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/sleep");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let mut workers = HashSet::new();
    for a in answers {
        let (status, body) = a.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let pids: Vec<u32> = body.split(' ').map(|p| p.parse().unwrap()).collect();
        assert_eq!(pids[0], zygote, "the module was imported by the zygote");
        assert_ne!(pids[1], zygote);
        workers.insert(pids[1]);
    }
    assert_eq!(workers.len(), 2, "{workers:?}");
    // The master's children: the zygote and the two adopted workers.
    let kids: HashSet<u32> = children(server.pid())
        .into_iter()
        .map(|p| p as u32)
        .collect();
    assert!(kids.contains(&zygote), "{kids:?}");
    assert!(workers.is_subset(&kids), "{workers:?} adopted? {kids:?}");
    server.wait_for_log("preload: the app is imported", Duration::from_secs(1));
}

#[test]
fn a_dead_worker_is_forked_again_without_a_new_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = preloaded(dir.path(), &["-w", "1", "--max-requests", "20"]);
    let (_, first) = who(&server);
    // A crash mid-request: the worker goes, its replacement is forked.
    let (status, _) = get(&server.url("/crash"));
    assert_eq!(status, 502);
    server.wait_for_log("worker died; replacing it", Duration::from_secs(10));
    let mut seen = HashSet::from([first]);
    // max-requests: more forks.
    let load = Load::start(server.url("/who"), 2);
    wait_until(
        "workers replaced by max-requests",
        Duration::from_secs(30),
        || {
            seen.insert(who(&server).1);
            seen.len() >= 4
        },
    );
    load.finish_without_failures();
    assert_eq!(imports(&dir.path().join("imports")).len(), 1, "{seen:?}");
    let dead = format!("pid={first}");
    let line = server.wait_for_log("worker died", Duration::from_secs(1));
    assert!(
        line.contains(&dead),
        "the crash is reported with its pid: {line}"
    );
}

#[test]
fn hup_starts_a_new_zygote_that_imports_the_new_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = preloaded(dir.path(), &["-w", "2"]);
    let file = dir.path().join("imports");
    let old_zygote = imports(&file)[0];
    let load = Load::start(server.url("/who"), 3);
    let from = server.log_len();
    kill(server.pid(), "HUP");
    server.wait_for_log_after(from, "reload complete", Duration::from_secs(30));
    let new_zygote = imports(&file)[1];
    wait_until("the new generation serves", Duration::from_secs(30), || {
        who(&server).0 == new_zygote
    });
    load.finish_without_failures();
    assert_eq!(imports(&file).len(), 2);
    wait_until("the old zygote gone", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{old_zygote}")).exists()
    });
}

#[test]
fn an_app_that_does_not_import_exits_3_with_one_traceback() {
    let mut server = test_app("raises_on_import:app", &["--preload", "-w", "2"])
        .no_wait()
        .start();
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{}", server.log());
    let log = server.log();
    assert_eq!(
        log.matches("Traceback (most recent call last)").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: the app refuses to import"),
        "{log}"
    );
    assert!(!log.contains("Listening at"), "{log}");
}

#[test]
fn a_thread_started_at_import_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = test_app(APP, &["--preload", "-w", "1"])
        .env("PRELOAD_IMPORTS", dir.path().join("imports"))
        .env("PRELOAD_THREAD", "1")
        .start();
    server.wait_for_log(
        "the app started 1 thread(s) at import",
        Duration::from_secs(10),
    );
    assert_eq!(who(&server).0, imports(&dir.path().join("imports"))[0]);
}

/// The sum of PSS over the master and its descendants, in KiB.
fn tree_pss_kib(root: i32) -> u64 {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all.iter()
        .map(|pid| {
            let rollup =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The Django site with 4 workers, each having served the admin's login page:
/// forked from one import, the tree's proportional memory is lower.
#[test]
fn the_django_sites_workers_share_memory_with_preload() {
    let site = DjangoSite::prepare();
    let measure = |extra: &[&str]| {
        let mut args = vec!["-w", "4"];
        args.extend_from_slice(extra);
        let server = site.serve_with(&args);
        let c = client();
        for _ in 0..200 {
            let resp = c.get(server.url("/admin/login/")).send().unwrap();
            assert_eq!(resp.status(), 200);
        }
        let pss = tree_pss_kib(server.pid());
        let procs = 1 + children(server.pid()).len();
        (pss, procs)
    };
    let (without, procs_without) = measure(&[]);
    let (with, procs_with) = measure(&["--preload"]);
    let _ = writeln!(
        std::io::stderr(),
        "preload: Django site, 4 workers, tree PSS {:.1} MiB without ({procs_without} processes), \
         {:.1} MiB with --preload ({procs_with} processes, the zygote included): {:.0}% less",
        without as f64 / 1024.0,
        with as f64 / 1024.0,
        100.0 * (1.0 - with as f64 / without as f64)
    );
    assert!(with < without, "preload {with} KiB, without {without} KiB");
}
