//! Installing ferricorn the way a Python team does, and every way the interpreter
//! can be wrong: the wheel tests/run-all.sh built (deploy/build-wheel.sh), installed
//! by pip and by uv into fresh venvs; the front binary linking no libpython; static
//! files served with no Python at all; and a clear line with exit 2, before any port
//! answers, for a venv without the worker module, a worker module of another
//! ferricorn, and a --venv that is not a venv.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The wheel of this run.
fn wheel() -> PathBuf {
    let dir = repo().join("target/wheels");
    let wheels: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `bash tests/run-all.sh`", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel expected in {}", dir.display());
    wheels[0].clone()
}

/// The venv tests/run-all.sh made and installed the wheel into.
fn test_venv() -> PathBuf {
    venv()
}

/// A fresh venv of the test venv's interpreter, without pip (fast).
fn fresh_venv(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let python = test_venv().join("bin/python");
    let out = Command::new(python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert_success("python -m venv", &out);
    venv
}

fn site_packages(venv: &Path) -> PathBuf {
    let lib = std::fs::read_dir(venv.join("lib")).unwrap().next().unwrap();
    lib.unwrap().path().join("site-packages")
}

/// `ferricorn ARGS` from `venv`'s bin/, as after `. venv/bin/activate`.
fn start_installed(venv: &Path, args: &[&str]) -> Server {
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["-b", "127.0.0.1:0"]);
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Launch::program(venv.join("bin/ferricorn"), all)
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv)
        .start()
}

fn hello_is_served_by(venv: &Path) {
    let server = start_installed(
        venv,
        &["--chdir", apps_dir().to_str().unwrap(), "probe:app"],
    );
    let info = get_json(&server.url("/pyinfo"));
    assert_eq!(
        info["executable"],
        venv.join("bin/python").to_str().unwrap()
    );
}

/// `pip install WHEEL` into `venv` (pip from the test venv, `--python`).
fn pip_install_wheel(venv: &Path) {
    let out = Command::new(test_venv().join("bin/python"))
        .args(["-m", "pip", "-q", "--disable-pip-version-check", "--python"])
        .arg(venv.join("bin/python"))
        .args(["install", "--no-index"])
        .arg(wheel())
        .output()
        .unwrap();
    assert_success("pip install", &out);
}

#[test]
fn pip_install_of_the_wheel_puts_a_working_ferricorn_on_the_venv_path() {
    let dir = tempfile::tempdir().unwrap();
    let venv = fresh_venv(dir.path());
    pip_install_wheel(&venv);
    let version = Command::new(venv.join("bin/ferricorn"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(assert_success("ferricorn --version", &version).contains(env!("CARGO_PKG_VERSION")));
    hello_is_served_by(&venv);
}

#[test]
fn uv_pip_install_of_the_wheel_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let uv = test_venv().join("bin/uv");
    assert!(
        uv.exists(),
        "uv is missing from the test venv (tests/requirements.txt)"
    );
    let out = Command::new(&uv)
        .args(["venv", "-q", "--python"])
        .arg(test_venv().join("bin/python"))
        .arg(&venv)
        .env("UV_NO_CACHE", "1")
        .output()
        .unwrap();
    assert_success("uv venv", &out);
    let out = Command::new(&uv)
        .args(["pip", "install", "-q", "--offline", "--python"])
        .arg(venv.join("bin/python"))
        .arg(wheel())
        .env("UV_NO_CACHE", "1")
        .output()
        .unwrap();
    assert_success("uv pip install", &out);
    hello_is_served_by(&venv);
}

#[test]
fn the_front_links_no_libpython() {
    // The worker module must not either: the interpreter that imports it provides
    // the symbols, also when it is linked statically (pyenv's default, Docker's).
    let module = std::fs::read_dir(site_packages(&test_venv()).join("ferricorn"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "so"))
        .expect("the worker module in the test venv");
    for bin in [
        PathBuf::from(BIN),
        test_venv().join("bin/ferricorn"),
        module,
    ] {
        let out = Command::new("readelf")
            .arg("-d")
            .arg(&bin)
            .output()
            .unwrap();
        let dynamic = assert_success("readelf -d", &out);
        assert!(dynamic.contains("(NEEDED)"), "{}: {dynamic}", bin.display());
        for bad in ["libpython", "RPATH", "RUNPATH"] {
            assert!(
                !dynamic.contains(bad),
                "{}: {bad} in\n{dynamic}",
                bin.display()
            );
        }
    }
}

#[test]
fn static_files_need_no_python_at_all() {
    let empty = tempfile::tempdir().unwrap();
    let fixtures = repo().join("static_fixtures");
    let server = Launch::new([
        "--static",
        &format!("/s/={}", fixtures.display()),
        "-b",
        "127.0.0.1:0",
    ])
    .env("PATH", empty.path())
    .env("VIRTUAL_ENV", empty.path())
    .start();
    let name = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().unwrap().is_file())
        .unwrap()
        .file_name();
    let url = server.url(&format!("/s/{}", name.to_str().unwrap()));
    assert_eq!(client().get(url).send().unwrap().status(), 200);
}

/// `ferricorn ARGS probe:app` that must refuse to start: its exit status and the
/// lines it printed. Nothing may listen first.
fn refused(args: &[&str], virtual_env: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--chdir", apps_dir().to_str().unwrap(), "-b", "127.0.0.1:0"])
        .arg("probe:app")
        .env_remove("VIRTUAL_ENV")
        .stdin(Stdio::null());
    if let Some(v) = virtual_env {
        cmd.env("VIRTUAL_ENV", v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Listening at"), "it listened first:\n{text}");
    assert!(!text.contains("Booting workers"), "{text}");
    (out.status.code(), text)
}

#[test]
fn a_venv_without_the_worker_module_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let venv = fresh_venv(dir.path());
    let (code, text) = refused(&[], Some(&venv));
    assert_eq!(code, Some(2), "{text}");
    let python = venv.join("bin/python");
    let line = text.lines().last().unwrap();
    assert!(
        line.starts_with(&format!("ferricorn: {} (CPython ", python.display())),
        "{text}"
    );
    assert!(
        line.contains("has no ferricorn worker module (ModuleNotFoundError"),
        "{text}"
    );
    assert!(
        line.contains(&format!("{} -m pip install ferricorn==", python.display())),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// A stand-in for an older release's module: what the master reads of it is
/// `__version__` and `PROTOCOL`, as a real one would answer.
#[test]
fn a_worker_module_of_another_ferricorn_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let venv = fresh_venv(dir.path());
    let pkg = site_packages(&venv).join("ferricorn");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("__init__.py"), "").unwrap();
    std::fs::write(
        pkg.join("_worker.py"),
        "__version__ = '0.0.1'\nPROTOCOL = 1\n",
    )
    .unwrap();
    let (code, text) = refused(&["--venv", venv.to_str().unwrap()], None);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("has the worker module of ferricorn 0.0.1 (protocol 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "this server is ferricorn {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn a_bad_venv_or_python_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = refused(&["--venv", dir.path().to_str().unwrap()], None);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("--venv ") && text.contains("bin/python does not exist"),
        "{text}"
    );
    let (code, text) = refused(&[], Some(dir.path()));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("$VIRTUAL_ENV "), "{text}");
    let (code, text) = refused(&["--python", "/nonexistent/python3"], None);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("--python /nonexistent/python3: no such file"),
        "{text}"
    );
    // Not Python at all: it cannot answer the probe.
    let (code, text) = refused(&["--python", "/bin/true"], None);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("the Python interpreter /bin/true (--python) did not answer"),
        "{text}"
    );
}

/// `-w 1` of sup_app on a fresh venv with the wheel, and the pid of its worker.
fn serving_from_a_fresh_venv(dir: &Path) -> (PathBuf, Server, String) {
    let venv = fresh_venv(dir);
    pip_install_wheel(&venv);
    let apps = apps_dir();
    let server = Server::launch(["--chdir", apps.to_str().unwrap(), "-w", "1", "sup_app:app"])
        .env("VIRTUAL_ENV", &venv)
        .start();
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    (venv, server, pid)
}

/// HUP after the venv changed under the server: the log line with `needle`, and
/// the old worker (`pid`) must still be the one serving.
fn hup_keeps_the_old_worker(server: &Server, pid: &str, needle: &str) -> String {
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    let line = server.wait_for_log_after(from, needle, std::time::Duration::from_secs(30));
    assert_eq!(
        get(&server.url("/pid")),
        (200, pid.to_string()),
        "the old worker serves on"
    );
    line
}

/// The venv is upgraded under a running server to a release whose worker speaks
/// another protocol (stood in for by a worker entry point that sends such a Ready
/// frame, as a real one would): HUP must keep the old workers, not lose the pool.
#[test]
fn a_reload_onto_a_worker_of_another_protocol_keeps_the_old_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (venv, server, pid) = serving_from_a_fresh_venv(dir.path());
    let other = ferricorn_wire::PROTOCOL + 1;
    let entry = format!(
        r#"import os, socket, struct, sys, time
path = sys.argv[sys.argv.index("--socket") + 1]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
words = [b"cpython", b"3.11.0", b"x", b"y"]
payload = struct.pack(">II", {other}, os.getpid()) + b"".join(struct.pack(">I", len(w)) + w for w in words)
frame = struct.pack(">BI", 1, 0) + payload
s.sendall(struct.pack(">I", len(frame)) + frame)
time.sleep(60)
"#
    );
    std::fs::write(site_packages(&venv).join("ferricorn/worker.py"), entry).unwrap();
    let line = hup_keeps_the_old_worker(&server, &pid, "reload failed");
    assert!(
        line.contains(&format!("the worker speaks protocol {other}")),
        "{line}"
    );
}

/// The venv's worker module is replaced under a running server by another
/// release's (stood in for by a module that answers the probe as 0.0.1): HUP asks
/// the interpreter again and refuses, and the old worker serves on.
#[test]
fn a_reload_onto_a_worker_module_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (venv, server, pid) = serving_from_a_fresh_venv(dir.path());
    let pkg = site_packages(&venv).join("ferricorn");
    for entry in std::fs::read_dir(&pkg).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "so") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(
        pkg.join("_worker.py"),
        "__version__ = '0.0.1'\nPROTOCOL = 1\n",
    )
    .unwrap();
    let from = server.log_len();
    let line = hup_keeps_the_old_worker(&server, &pid, "reload refused");
    assert!(
        line.contains("has the worker module of ferricorn 0.0.1"),
        "{line}"
    );
    assert!(
        !server.log()[from..].contains("Booted worker"),
        "{}",
        server.log()
    );
}
