//! ferricorn installed from its wheel into venvs of the newer CPythons: Debian sid's
//! 3.13 and 3.14 (and 3.15 when sid has it), in a chroot that tests/pythons/setup.sh
//! makes under target/. Every server runs there as the unprivileged user `ferri`,
//! started as the venv's own `bin/ferricorn` with a clean environment, so the
//! interpreter is found the way an installed ferricorn finds it (the `python` beside
//! it). A missing chroot is a failure, never a skip.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

fn root() -> PathBuf {
    let root = repo().join("target/chroot-sid");
    assert!(
        root.join("opt/pythons.txt").exists(),
        "the chroot {} is missing: run `bash tests/run-all.sh` (tests/pythons/setup.sh makes it)",
        root.display()
    );
    root
}

/// The Pythons the chroot has venvs for; 3.13 and 3.14 at least.
fn pythons() -> Vec<String> {
    let list = std::fs::read_to_string(root().join("opt/pythons.txt")).unwrap();
    let versions: Vec<String> = list.split_whitespace().map(str::to_string).collect();
    for must in ["3.13", "3.14"] {
        assert!(
            versions.iter().any(|v| v == must),
            "no {must} in {versions:?}"
        );
    }
    versions
}

/// `/opt/venv-VERSION/bin/ferricorn ARGS -b 127.0.0.1:0` in the chroot, as `ferri`.
fn serve(version: &str, args: &[&str]) -> Server {
    let root = root();
    let ferricorn = format!("/opt/venv-{version}/bin/ferricorn");
    let mut all = vec![root.to_str().unwrap(), "ferri", &ferricorn];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-b", "127.0.0.1:0"]);
    Launch::program(repo().join("tests/pythons/in-chroot.sh"), all).start()
}

/// The real uid of a process, from /proc.
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ferri_uid() -> u32 {
    let passwd = std::fs::read_to_string(root().join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("ferri:")).unwrap();
    line.split(':').nth(2).unwrap().parse().unwrap()
}

#[test]
fn each_python_runs_the_workers_of_its_own_venv_as_an_unprivileged_user() {
    for v in pythons() {
        let server = serve(&v, &["--chdir", "/opt/apps", "-w", "2", "probe:app"]);
        let info = get_json(&server.url("/pyinfo"));
        let venv = format!("/opt/venv-{v}");
        assert!(
            info["version"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{v}.")),
            "{v}: {info}"
        );
        assert_eq!(info["executable"], format!("{venv}/bin/python"), "{v}");
        assert_eq!(info["prefix"], venv, "{v}");
        assert_ne!(info["base_prefix"], venv, "{v}: not a venv");
        let log = server.log();
        assert!(log.contains("chosen_by=beside ferricorn"), "{log}");
        assert!(log.contains(&format!("python=cpython {v}.")), "{log}");
        let uid = ferri_uid();
        assert_ne!(uid, 0);
        assert_eq!(uid_of(server.pid()), uid, "the master");
        let workers = children(server.pid());
        assert_eq!(workers.len(), 2, "{v}: {workers:?}");
        for w in workers {
            assert_eq!(uid_of(w), uid, "worker {w}");
        }
    }
}

#[test]
fn each_python_passes_the_pep_3333_validator() {
    for v in pythons() {
        let server = serve(&v, &["--chdir", "/opt/apps", "probe:app"]);
        let resp = client()
            .post(server.url("/validated"))
            .body("first line\nthe rest")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{v}");
        assert_eq!(
            resp.text().unwrap(),
            "w:line=first line\nrest=the rest",
            "{v}"
        );
        server.wait_for_log("validated app ran", Duration::from_secs(10));
        let log = server.log();
        for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
            assert!(!log.contains(bad), "{v}: {bad} in the log:\n{log}");
        }
    }
}

#[test]
fn each_python_replaces_a_crashed_worker_and_reloads_under_load_without_failures() {
    for v in pythons() {
        let server = serve(&v, &["--chdir", "/opt/apps", "-w", "2", "sup_app:app"]);
        let (status, _) = get(&server.url("/crash"));
        assert_eq!(status, 502, "{v}: the crashing request");
        wait_until(
            "the crashed worker replaced",
            Duration::from_secs(30),
            || server.log().matches("Booted worker").count() == 3,
        );
        assert_eq!(get(&server.url("/pid")).0, 200, "{v}");

        let before = children(server.pid());
        let load = Load::start(server.url("/pid"), 4);
        let from = server.log_len();
        server.signal(libc_sig("HUP"));
        server.wait_for_log_after(from, "reload complete", Duration::from_secs(60));
        wait_until("old workers gone", Duration::from_secs(30), || {
            let now = children(server.pid());
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        let results = load.finish_without_failures();
        assert!(results.len() > 20, "{v}: only {} requests", results.len());
    }
}

#[test]
fn django_6_1_startproject_site_on_3_14_serves_its_admin_login() {
    let server = serve(
        "3.14",
        &[
            "--chdir",
            "/home/ferri/mysite",
            "-w",
            "2",
            "mysite.wsgi:application",
        ],
    );
    django_admin_login(&server, "admin", DJANGO_ADMIN_PASSWORD);
    let page = client().get(server.url("/admin/login/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        server.log().contains("python=cpython 3.14."),
        "{}",
        server.log()
    );
}

/// Debian's PyPy: a real Python that cannot load a CPython extension module.
#[test]
fn an_interpreter_that_is_not_cpython_is_one_line_and_exit_2() {
    let root = root();
    let out = std::process::Command::new(repo().join("tests/pythons/in-chroot.sh"))
        .arg(&root)
        .args([
            "ferri",
            "/opt/venv-3.14/bin/ferricorn",
            "--python",
            "/usr/bin/pypy3",
        ])
        .args(["--chdir", "/opt/apps", "-b", "127.0.0.1:0", "probe:app"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("ferricorn: /usr/bin/pypy3 is pypy 3."),
        "{text}"
    );
    assert!(
        text.contains("ferricorn's workers need CPython 3.9 or newer"),
        "{text}"
    );
}
