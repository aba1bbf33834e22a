//! Running ferricorn: flags and config errors, --check-config, static-only mode,
//! graceful stop, the runtime directory of worker sockets.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_flag_exits_2_with_one_message() {
    let out = run(["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
}

#[test]
fn bad_toml_reports_file_line_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nkeep_alive = 5\nbogus_key = 1\n").unwrap();
    let out = run(["-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:3:1:", path.display())), "{err}");
    assert!(err.contains("bogus_key"), "{err}");

    std::fs::write(&path, "[workers]\ncount = \"many\"\n").unwrap();
    let err = stderr(&run(["-c", path.to_str().unwrap()]));
    assert!(err.contains(&format!("{}:2:9:", path.display())), "{err}");
}

#[test]
fn bad_values_exit_2() {
    for args in [
        vec!["-b", "not-an-address"],
        vec!["--static", "nodir"],
        vec!["--static", "/s/=/definitely/not/here"],
        vec!["--log-level", "loud"],
        vec!["-w", "0", "a:b"],
        vec!["no_colon_app"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, "[workers]\ncount = 3\nthreads = 4\n").unwrap();
    let out = run(["-c", path.to_str().unwrap(), "-w", "5", "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("count = 5"), "{text}");
    assert!(text.contains("threads = 4"), "{text}");
    assert!(text.contains("bind = [\"127.0.0.1:8000\"]"), "{text}");
}

#[test]
fn check_config_imports_the_app() {
    let apps = apps_dir();
    let ok = run([
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        "sup_app:app",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let bad = run([
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        "sup_app:nope",
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
}

#[test]
fn every_shipped_example_config_validates() {
    for name in ["ferricorn.example.toml", "demo.toml"] {
        let out = std::process::Command::new(BIN)
            .current_dir(repo())
            .args(["-c", &format!("conf/{name}"), "--check-config"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }
}

#[test]
fn address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(["-b", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn static_only_mode_answers_404_off_the_mounts() {
    let server = Server::start([
        "--static",
        &format!("/s/={}", repo().join("conf").display()),
    ]);
    let r = client().get(server.url("/anything")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "404 Not Found\n");
}

#[test]
fn term_stops_gracefully_with_exit_0() {
    let mut server = Server::start([
        "--static",
        &format!("/s/={}", repo().join("conf").display()),
    ]);
    server.signal(15);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn unix_socket_bind_serves() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("f.sock");
    let server = Launch::new([
        "-b".to_string(),
        format!("unix:{}", sock.display()),
        "-b".to_string(),
        "127.0.0.1:0".to_string(),
    ])
    .start();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&sock)
        .arg("http://localhost/x")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    drop(server);
}

#[test]
fn worker_sockets_live_in_a_private_directory_removed_on_exit() {
    let runtime = tempfile::tempdir().unwrap();
    let mut server = Server::launch([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "1",
        "sup_app:app",
    ])
    .env("XDG_RUNTIME_DIR", runtime.path())
    .start();
    let dirs: Vec<_> = std::fs::read_dir(runtime.path())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1);
    let meta = dirs[0].metadata().unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let socks: Vec<_> = std::fs::read_dir(dirs[0].path())
        .unwrap()
        .flatten()
        .collect();
    assert!(!socks.is_empty());
    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert!(!dirs[0].path().exists(), "runtime dir left behind");
}
