//! The one launcher every integration test uses: starts the real `ferricorn` binary on
//! port 0, reads the bound address from its "Listening at:" line, waits for its
//! "Ready" line, and keeps its output for assertions and failure reports.
#![allow(dead_code)]

mod asgi;
mod http2;
mod load;
mod tmpfs;
mod websocket;
#[allow(unused_imports)] // the ASGI suites only
pub use asgi::*;
#[allow(unused_imports)] // not every suite speaks HTTP/2
pub use http2::*;
#[allow(unused_imports)] // not every suite watches workers
pub use load::*;
#[allow(unused_imports)]
pub use tmpfs::SmallTmpfs;
#[allow(unused_imports)] // the WebSocket suites only
pub use websocket::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferricorn");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test virtualenv made by `tests/run-all.sh` (Flask, Django). Missing is a
/// failure, never a skip: CI must not pass without the apps under test.
pub fn venv() -> PathBuf {
    let v = repo().join("target/test-venv");
    assert!(
        v.join("bin/python").exists(),
        "test venv {} is missing: run `bash tests/run-all.sh` (it creates it)",
        v.display()
    );
    v
}

pub fn apps_dir() -> PathBuf {
    repo().join("tests/apps")
}

/// A launcher for `app` (`MODULE:CALLABLE` of `tests/apps`) with `extra` flags.
pub fn test_app(app: &str, extra: &[&str]) -> Launch {
    let apps = apps_dir().to_str().unwrap().to_owned();
    let mut args: Vec<String> = vec!["--chdir".into(), apps];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(app.into());
    Server::launch(args)
}

#[derive(Default)]
struct Output {
    text: String,
    closed: usize,
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    output: Arc<(Mutex<Output>, Condvar)>,
    args: Vec<String>,
}

pub struct Launch {
    cmd: Command,
    args: Vec<String>,
    wait_ready: bool,
}

impl Launch {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::program(BIN, args)
    }

    /// `program ARGS` instead of the binary just built: an installed `ferricorn`,
    /// or a wrapper that runs one (tests/pythons/in-chroot.sh). It must exec, so the
    /// child's pid is the master's.
    pub fn program<I, S>(program: impl AsRef<std::ffi::OsStr>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
            )
            .env("LANG", "C.UTF-8")
            // As if the test venv were activated: its python, with the worker module
            // tests/run-all.sh installed from the wheel, runs the workers.
            .env("VIRTUAL_ENV", venv())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Launch {
            cmd,
            args,
            wait_ready: true,
        }
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// The child's stdin (a socket a test passes on, say).
    pub fn stdin(mut self, fd: std::os::fd::OwnedFd) -> Self {
        self.cmd.stdin(Stdio::from(fd));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Do not wait for "Ready" (for servers expected to fail at start-up).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(mut self) -> Server {
        let mut child = self.cmd.spawn().expect("spawn ferricorn");
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let (lock, cv) = &*output;
                            lock.lock()
                                .unwrap()
                                .text
                                .push_str(&String::from_utf8_lossy(&line));
                            cv.notify_all();
                        }
                    }
                }
                let (lock, cv) = &*output;
                lock.lock().unwrap().closed += 1;
                cv.notify_all();
            });
        }
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            output,
            args: self.args,
        };
        if self.wait_ready {
            let line = server.wait_for_log("Listening at: http", Duration::from_secs(60));
            let addr = line
                .split("Listening at: ")
                .nth(1)
                .and_then(|s| s.split("://").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| server.fail("no address in the Listening line"));
            server.addr = addr.parse().unwrap_or_else(|_| server.fail("bad address"));
            server.wait_for_log("Ready", Duration::from_secs(90));
        }
        server
    }
}

impl Server {
    /// Starts `ferricorn ARGS -b 127.0.0.1:0` and waits until it is ready.
    pub fn start<I, S>(args: I) -> Server
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::launch(args).start()
    }

    /// A launcher with `-b 127.0.0.1:0` appended, for extra env or cwd.
    /// (`test_app` for an app of `tests/apps`.)
    pub fn launch<I, S>(args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
        args.push("-b".into());
        args.push("127.0.0.1:0".into());
        Launch::new(args)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        self.output.0.lock().unwrap().text.clone()
    }

    /// Waits until a log line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Like `wait_for_log`, looking only at output after byte `from` of the log.
    pub fn wait_for_log_after(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.output;
        let mut out = lock.lock().unwrap();
        loop {
            if let Some(line) = out
                .text
                .get(from..)
                .and_then(|t| t.lines().find(|l| l.contains(needle)))
            {
                return line.to_string();
            }
            let now = Instant::now();
            if now >= deadline || out.closed == 2 {
                drop(out);
                self.fail(&format!("no log line containing {needle:?}"));
            }
            out = cv.wait_timeout(out, deadline - now).unwrap().0;
        }
    }

    pub fn log_len(&self) -> usize {
        self.output.0.lock().unwrap().text.len()
    }

    /// The master has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: `kill` via the command keeps tests free of unsafe code.
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // let the reader threads drain the pipes
                let (lock, cv) = &*self.output;
                let mut out = lock.lock().unwrap();
                while out.closed < 2 {
                    let (o, t) = cv.wait_timeout(out, Duration::from_secs(5)).unwrap();
                    out = o;
                    if t.timed_out() {
                        break;
                    }
                }
                return status;
            }
            if Instant::now() >= deadline {
                self.fail("server did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the command line and everything the server printed.
    pub fn fail(&self, why: &str) -> ! {
        // The text is copied first: panicking with the lock held would poison it
        // for the threads still reading the server's output.
        let output = self.log();
        panic!(
            "{why}\n--- command: {BIN} {}\n--- output:\n{output}",
            self.args.join(" ")
        );
    }

    /// Sends raw bytes on a new connection and returns everything read until the
    /// server closes or `timeout` passes.
    pub fn raw(&self, bytes: &[u8], timeout: Duration) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.write_all(bytes).unwrap();
        read_to_close(&mut s, timeout)
    }
}

/// Everything read from `s` until the server closes it or `timeout` passes.
pub fn read_to_close(s: &mut TcpStream, timeout: Duration) -> String {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Server {
    fn drop(&mut self) {
        // Quietly: a server that already exited has no pid to kill.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for --check-config, bad flags, ...), with the
/// test venv activated.
pub fn run<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .args(args)
        .env("VIRTUAL_ENV", venv())
        .stdin(Stdio::null())
        .output()
        .expect("run ferricorn")
}

/// The status code of `GET PATH` over the Unix socket `sock` (curl).
pub fn status_over_unix_socket(sock: &Path, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(sock)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--check-config` of `app` (in tests/apps) with `toml` as the config file `f.toml`.
pub fn check_config_toml(toml: &str, app: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, toml).unwrap();
    let apps = apps_dir();
    run([
        "-c",
        conf.to_str().unwrap(),
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        app,
    ])
}

/// `METHOD target HTTP/1.1` with `body`, sent byte for byte on a connection of its
/// own (curl and reqwest would resolve dot segments first): the status and the
/// whole answer.
pub fn h1_request(server: &Server, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let answer = server.raw(&req, Duration::from_secs(30));
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no status line in {answer:?}"));
    (status, answer)
}

/// A blocking HTTP client that never follows redirects or decompresses.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Asserts that a finished command succeeded, showing all it printed if not;
/// returns its stdout.
pub fn assert_success(what: &str, out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GET `url`, which must answer JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    let resp = client().get(url).send().unwrap();
    let text = resp.text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// The value `name=...` of a Set-Cookie in `resp` (without attributes).
pub fn cookie(resp: &reqwest::blocking::Response, name: &str) -> String {
    cookie_in(resp.headers(), name)
}

/// The value `name=...` of a Set-Cookie among `headers` (without attributes).
pub fn cookie_in(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"))
        .to_string()
}

/// Logs in to a Django admin with the CSRF dance a browser does; returns the cookie
/// header of the logged-in session after checking it sees "Site administration".
pub fn django_admin_login(server: &Server, user: &str, password: &str) -> String {
    let c = client();
    let login = c
        .get(server.url("/admin/login/?next=/admin/"))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    let csrf = cookie(&login, "csrftoken");
    let page = login.text().unwrap();
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the login form")
        .to_string();
    let posted = c
        .post(server.url("/admin/login/?next=/admin/"))
        .header("cookie", &csrf)
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", user),
            ("password", password),
            ("next", "/admin/"),
        ])
        .send()
        .unwrap();
    assert_eq!(
        posted.status(),
        302,
        "{}",
        posted.text().unwrap_or_default()
    );
    assert_eq!(posted.headers()["location"], "/admin/");
    let cookies = format!("{csrf}; {}", cookie(&posted, "sessionid"));
    let admin = c
        .get(server.url("/admin/"))
        .header("cookie", &cookies)
        .send()
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin.text().unwrap().contains("Site administration"));
    cookies
}

/// tests/apps/djsite prepared in a temp dir (database migrated, static files
/// collected, superuser `admin` / `DJANGO_ADMIN_PASSWORD`), ready to serve.
pub struct DjangoSite {
    pub tmp: tempfile::TempDir,
    pub db: PathBuf,
    pub static_root: PathBuf,
}

pub const DJANGO_ADMIN_PASSWORD: &str = "s3cret-pass";

impl DjangoSite {
    pub fn prepare() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let site = DjangoSite {
            db: tmp.path().join("db.sqlite3"),
            static_root: tmp.path().join("staticfiles"),
            tmp,
        };
        site.manage(&["migrate", "--noinput"]);
        site.manage(&["collectstatic", "--noinput"]);
        site.manage(&[
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.com",
        ]);
        site
    }

    fn manage(&self, args: &[&str]) {
        let out = Command::new(venv().join("bin/python"))
            .arg(apps_dir().join("djsite/manage.py"))
            .args(args)
            .env("DJSITE_DB", &self.db)
            .env("DJSITE_STATIC_ROOT", &self.static_root)
            .env("DJANGO_SUPERUSER_PASSWORD", DJANGO_ADMIN_PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "manage.py {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// ferricorn serving the site with 2 workers and its static files on /static/.
    pub fn serve(&self) -> Server {
        self.serve_with(&["-w", "2"])
    }

    /// The same with `extra` flags instead of `-w 2`.
    pub fn serve_with(&self, extra: &[&str]) -> Server {
        self.launch(extra, "djsite.wsgi:application").start()
    }

    /// A launcher for `app` (of tests/apps/djsite) with `extra` flags, for more env.
    pub fn launch(&self, extra: &[&str], app: &str) -> Launch {
        let mut args: Vec<String> = vec![
            "--chdir".into(),
            apps_dir().join("djsite").to_str().unwrap().into(),
            "--venv".into(),
            venv().to_str().unwrap().into(),
            "--static".into(),
            format!("/static/={}", self.static_root.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(app.into());
        Server::launch(args)
            .env("DJSITE_DB", &self.db)
            .env("DJSITE_STATIC_ROOT", &self.static_root)
    }
}

/// A self-signed certificate for 127.0.0.1 (openssl), as (cert, key) paths in `dir`.
pub fn certificate(dir: &std::path::Path) -> (String, String) {
    self_signed(dir, "cert.pem", "key.pem", &[])
}

/// A self-signed certificate for 127.0.0.1 that is no CA (rustls refuses a CA as
/// a server's certificate), and its key.
pub fn leaf_certificate(dir: &std::path::Path) -> (String, String) {
    self_signed(
        dir,
        "leaf.pem",
        "leaf.key",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    )
}

/// `openssl req -x509` for 127.0.0.1 into `dir/cert` and `dir/key`, with `extra` args.
fn self_signed(dir: &std::path::Path, cert: &str, key: &str, extra: &[&str]) -> (String, String) {
    let (cert, key) = (dir.join(cert), dir.join(key));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.to_str().unwrap().into(), key.to_str().unwrap().into())
}
