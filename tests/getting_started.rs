//! The README's "Getting started" (Django, Flask, WebSockets with Flask-Sock and
//! Flask-SocketIO, ASGI with Django Channels and FastAPI), "Development mode", "TLS" and "Migrating from gunicorn + nginx"
//! sections, run word for word: the commands come out of the README's code
//! blocks marked ```` ```sh title="NAME" ````, so README and test cannot drift apart.
//! Setup blocks run in bash in a temp dir; only the two commands that would reach the
//! network are stood in for by the pinned test venv (`python3 -m venv .venv` links it,
//! `pip install X` checks that X imports, a path or `git+` URL standing for ferricorn
//! itself). `ferricorn ...` lines run the real binary
//! (with `-b 127.0.0.1:0` appended) in the directory the setup block ended in.

mod common;

use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// The body of the README code block whose opening fence has `title="NAME"`.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let tag = format!("title=\"{name}\"");
    let mut lines = readme.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("```") && l.contains(&tag))
        .unwrap_or_else(|| panic!("README.md has no code block {tag}"));
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    body.join("\n") + "\n"
}

/// The arguments of the one `ferricorn ...` command in a README block.
fn ferricorn_args(name: &str) -> Vec<String> {
    let block = readme_block(name);
    let cmds: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(cmds.len(), 1, "block {name}: one command expected: {block}");
    let mut words = cmds[0].split_whitespace().map(String::from);
    assert_eq!(words.next().as_deref(), Some("ferricorn"), "block {name}");
    words.collect()
}

/// Runs a README setup block with bash in `dir`; returns the directory it ended in.
fn run_setup(name: &str, dir: &Path) -> PathBuf {
    let venv = venv();
    let end = dir.join(".final-dir");
    let script = format!(
        "set -eo pipefail\n\
         python3() {{ if [ \"$*\" = '-m venv .venv' ]; then ln -s \"$TEST_VENV\" .venv; else command python3 \"$@\"; fi; }}\n\
         pip() {{ [ \"$1\" = install ] || return 1; shift; for p in \"$@\"; do case $p in /*|git+*|.) p=ferricorn;; esac; python -c \"import $p\"; done; }}\n\
         {}\npwd > \"$FINAL_DIR\"\n",
        readme_block(name)
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env_remove("VIRTUAL_ENV")
        .env("TEST_VENV", &venv)
        .env("FINAL_DIR", &end)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README block {name} failed:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(std::fs::read_to_string(&end).unwrap().trim())
}

/// `ferricorn ARGS` as the README shows it, in `dir`, with the activated venv.
fn serve(args: &[String], dir: &Path) -> Server {
    Server::launch(args)
        .env("VIRTUAL_ENV", venv())
        .current_dir(dir)
        .start()
}

fn check_config(args: &[String], dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--check-config")
        .current_dir(dir)
        .env("VIRTUAL_ENV", venv())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?} --check-config in {}:\n{stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn get(server: &Server, path: &str) -> reqwest::blocking::Response {
    client().get(server.url(path)).send().unwrap()
}

fn header<'a>(r: &'a reqwest::blocking::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// GETs `path` until `ok` holds for the response, or fails at the deadline.
fn poll(server: &Server, path: &str, ok: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = get(server, path);
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        if ok(status, &body) {
            return body;
        }
        if Instant::now() >= deadline {
            server.fail(&format!("{path}: still {status} {body:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The hashed name `collectstatic` gave `name`, from staticfiles/staticfiles.json.
fn manifest_name(project: &Path, name: &str) -> String {
    let manifest = std::fs::read_to_string(project.join("staticfiles/staticfiles.json"))
        .expect("ManifestStaticFilesStorage wrote staticfiles.json");
    let json: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let hashed = json["paths"][name].as_str().unwrap().to_string();
    assert_ne!(hashed, name);
    hashed
}

/// The guide's protected download: its view, its URL, its mount, a file.
fn protected_download(project: &Path, args: &[String]) {
    std::fs::write(
        project.join("mysite/views.py"),
        readme_block("django-protected-view"),
    )
    .unwrap();
    run_setup("django-protected-setup", project);
    let toml = project.join("django.toml");
    let mut conf = std::fs::read_to_string(&toml).unwrap();
    conf += &format!("\n{}", readme_block("django-protected-mount"));
    std::fs::write(&toml, conf).unwrap();
    let pdf = b"%PDF-1.4 a report only staff may read\n";
    std::fs::write(project.join("protected/report.pdf"), pdf).unwrap();

    let server = serve(args, project);
    let anonymous = get(&server, "/report/");
    assert_eq!(
        anonymous.status(),
        302,
        "the view sends strangers to log in"
    );
    let login = header(&anonymous, "location").unwrap().to_string();
    assert_eq!(login, "/admin/login/?next=/report/");
    assert_eq!(get(&server, &login).status(), 200, "a login page is there");
    assert_eq!(get(&server, "/protected/report.pdf").status(), 404);
    let cookies = django_admin_login(&server, "admin", "change-me");
    let c = client();
    let report = c
        .get(server.url("/report/"))
        .header("cookie", &cookies)
        .send()
        .unwrap();
    assert_eq!(report.status(), 200);
    assert_eq!(header(&report, "content-type"), Some("application/pdf"));
    assert_eq!(
        header(&report, "content-disposition"),
        Some("attachment; filename=\"report.pdf\"")
    );
    assert!(header(&report, "etag").is_some(), "served by the front");
    assert_eq!(report.bytes().unwrap().as_ref(), pdf);
    let part = c
        .get(server.url("/report/"))
        .header("cookie", &cookies)
        .header("range", "bytes=0-7")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.text().unwrap(), "%PDF-1.4");
}

#[test]
fn readme_django_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-django", tmp.path());
    assert!(project.join("staticfiles/admin/css/base.css").is_file());

    // Production-like: admin served, its CSS from the front with an ETag.
    {
        let server = serve(&ferricorn_args("run-django"), &project);
        let css = get(&server, "/static/admin/css/base.css");
        assert_eq!(css.status(), 200);
        assert!(header(&css, "content-type")
            .unwrap()
            .starts_with("text/css"));
        assert!(header(&css, "etag").is_some(), "not served by the front");
        // `--static` gets a mount's default Cache-Control, as conf/django.toml does.
        assert_eq!(header(&css, "cache-control"), Some("public, max-age=3600"));
        django_admin_login(&server, "admin", "change-me");
        assert!(
            !server.log().contains("Press Ctrl-C"),
            "banner printed without a terminal"
        );
    }

    // conf/django.toml, copied next to manage.py.
    std::fs::copy(repo().join("conf/django.toml"), project.join("django.toml")).unwrap();
    let args = ferricorn_args("run-django-config");
    let effective = check_config(&args, &project);
    for section in ["[server]", "[workers]", "[[static]]", "[limits]", "[log]"] {
        assert!(effective.contains(section), "{section}: {effective}");
    }
    {
        let server = serve(&args, &project);
        let css = get(&server, "/static/admin/css/base.css");
        assert_eq!(css.status(), 200);
        assert_eq!(header(&css, "cache-control"), Some("public, max-age=3600"));
        // The manifest's hashed copy never revalidates (immutable = "manifest").
        let hashed = manifest_name(&project, "admin/css/base.css");
        let css = get(&server, &format!("/static/{hashed}"));
        assert_eq!(css.status(), 200);
        assert_eq!(
            header(&css, "cache-control"),
            Some("max-age=31536000, public, immutable")
        );
        assert_eq!(get(&server, "/admin/login/").status(), 200);
    }

    protected_download(&project, &args);

    // Development: static files no-cache, an edited urls.py served without a restart.
    let server = serve(&ferricorn_args("run-django-dev"), &project);
    let css = get(&server, "/static/admin/css/base.css");
    assert_eq!(header(&css, "cache-control"), Some("no-cache"));
    assert_eq!(get(&server, "/edited/").status(), 404);
    let urls = project.join("mysite/urls.py");
    let mut text = std::fs::read_to_string(&urls).unwrap();
    text += "\nfrom django.http import HttpResponse\n\
             urlpatterns.append(path('edited/', lambda r: HttpResponse('edited')))\n";
    std::fs::write(&urls, text).unwrap();
    let body = poll(&server, "/edited/", |s, _| s == 200);
    assert_eq!(body, "edited");
}

#[test]
fn readme_flask_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-flask", tmp.path());
    std::fs::write(project.join("app.py"), readme_block("app.py")).unwrap();

    {
        let server = serve(&ferricorn_args("run-flask"), &project);
        let page = get(&server, "/");
        assert_eq!(page.status(), 200);
        assert!(page.text().unwrap().contains("Hello from Flask"));
        let css = get(&server, "/static/site.css");
        assert_eq!(css.status(), 200);
        assert!(header(&css, "etag").is_some(), "not served by the front");
        assert!(css.text().unwrap().contains("font-family"));
    }

    std::fs::copy(repo().join("conf/flask.toml"), project.join("flask.toml")).unwrap();
    let args = ferricorn_args("run-flask-config");
    check_config(&args, &project);
    let server = serve(&args, &project);
    assert!(get(&server, "/")
        .text()
        .unwrap()
        .contains("Hello from Flask"));
    assert_eq!(
        header(&get(&server, "/static/site.css"), "cache-control"),
        Some("public, max-age=3600")
    );
}

/// Until a release, `pip install ferricorn` cannot work: every block installs from a
/// clone instead, as the text before them says.
#[test]
fn the_blocks_install_what_works_before_a_release() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let installs: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("pip install "))
        .collect();
    assert!(installs.len() >= 6, "{installs:?}");
    for line in installs {
        // Until a release, ferricorn comes from its source (a path, a git URL, an
        // sdist): never a bare requirement, which pip would look up on PyPI.
        let command = line.split('#').next().unwrap();
        for word in command.split_whitespace().skip(2) {
            let name = word.trim_matches('"');
            let bare = name.split(['=', '<', '>', '~', '[', ';']).next().unwrap();
            assert_ne!(bare, "ferricorn", "{line}");
        }
        assert!(command.contains("/path/to/ferricorn"), "{line}");
    }
    assert!(readme.contains("pip install .` inside it"));
    assert!(readme.contains("pip install \"git+https://"));
}

/// The README's TLS section: its self-signed certificate, then the Flask project over
/// TLS with the port-80 redirect (both binds on free ports), reached with curl.
#[test]
fn readme_tls_with_the_http_redirect() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-flask", tmp.path());
    std::fs::write(project.join("app.py"), readme_block("app.py")).unwrap();
    run_setup("tls-certificate", &project);
    let line = readme_block("run-tls")
        .replace("0.0.0.0:443", "127.0.0.1:0")
        .replace("0.0.0.0:80", "127.0.0.1:0");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("ferricorn"));
    let server = Launch::new(words).current_dir(&project).start();
    let port = server.addr.port();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "--cacert", "cert.pem"])
            .args(args)
            .current_dir(&project)
            .output()
            .unwrap();
        assert_success("curl", &out)
    };
    let https = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let page = curl(&["--resolve", &resolve, "-w", "\n%{http_version}", &https]);
    assert!(page.contains("Hello from Flask"), "{page}");
    assert!(page.ends_with("\n2"), "HTTP/2 by ALPN: {page}");

    let line = server.wait_for_log("Redirecting plain HTTP to HTTPS at: http://", DEADLINE);
    let plain = line.split("http://").nth(1).unwrap().trim().to_string();
    let plain_port = plain.rsplit(':').next().unwrap();
    let resolve_plain = format!("localhost:{plain_port}:127.0.0.1");
    let moved = curl(&[
        "-i",
        "--resolve",
        &resolve_plain,
        &format!("http://localhost:{plain_port}/x"),
    ]);
    assert!(moved.starts_with("HTTP/1.1 301 "), "{moved}");
    let location = format!("location: https://localhost:{port}/x\r\n");
    assert!(moved.contains(&location), "{moved}");
    let followed = curl(&[
        "-L",
        "--resolve",
        &resolve_plain,
        "--resolve",
        &resolve,
        &format!("http://localhost:{plain_port}/"),
    ]);
    assert!(followed.contains("Hello from Flask"), "{followed}");
}

/// The WebSocket echo of the README, reached with the `websockets` client library.
#[test]
fn readme_flask_sock_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-flask-sock", tmp.path());
    std::fs::write(project.join("chat.py"), readme_block("chat.py")).unwrap();
    let server = serve(&ferricorn_args("run-flask-sock"), &project);
    let base = format!("ws://{}", server.addr);
    let out = run_client(&server, "echo_client.py", &[&base, "--quick"], DEADLINE);
    assert!(out.contains("ok text and binary echo"), "{out}");
}

/// The README's Flask-SocketIO app on two workers, with python-socketio's client:
/// polling, then the upgrade to a WebSocket, for several clients at once.
#[test]
fn readme_flask_socketio_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-flask-socketio", tmp.path());
    std::fs::write(project.join("live.py"), readme_block("live.py")).unwrap();
    let args = ferricorn_args("run-flask-socketio");
    check_config(&args, &project);
    let server = serve(&args, &project);
    // The README's app answers `echo` only; four sessions at once, each upgraded.
    let args = ["4", "5", "polling,websocket", "--echo-only", "--together"];
    for s in socketio_sessions(&server, &args) {
        assert_eq!(s["transport"], "websocket", "{s}");
        assert_eq!(s["echoed"], 5, "{s}");
    }
}

/// The README's Django Channels project under ASGI workers: two clients of a room
/// (tests/ws_clients/channels_client.py, the `websockets` library), and its async
/// view's server-sent events.
#[test]
fn readme_django_channels_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-channels", tmp.path());
    let site = project.join("mysite");
    std::fs::write(
        site.join("consumers.py"),
        readme_block("channels-consumers"),
    )
    .unwrap();
    std::fs::write(site.join("asgi.py"), readme_block("channels-asgi")).unwrap();
    std::fs::write(site.join("views.py"), readme_block("channels-sse-view")).unwrap();
    let urls = site.join("urls.py");
    let mut text = std::fs::read_to_string(&urls).unwrap();
    text += "\nfrom . import views\nurlpatterns.append(path('ticks/', views.ticks))\n";
    std::fs::write(&urls, text).unwrap();
    let args = ferricorn_args("run-channels");
    check_config(&args, &project);
    let server = serve(&args, &project);
    let base = format!("ws://{}", server.addr);
    let out = run_client(&server, "channels_client.py", &[&base], DEADLINE);
    assert!(out.contains("all checks passed"), "{out}");
    let (mut s, _) = sse_open(server.addr, "/ticks/");
    let rest = read_to_close(&mut s, DEADLINE);
    assert!(rest.contains("data: 2\n\n"), "{rest:?}");
}

/// The README's FastAPI app: the lifespan's state in a route, its WebSocket echo over
/// HTTP/1.1 and HTTP/2.
#[test]
fn readme_fastapi_getting_started() {
    let tmp = tempfile::tempdir().unwrap();
    let project = run_setup("getting-started-fastapi", tmp.path());
    std::fs::write(project.join("main.py"), readme_block("fastapi-main")).unwrap();
    let args = ferricorn_args("run-fastapi");
    check_config(&args, &project);
    let server = serve(&args, &project);
    let page = get(&server, "/");
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().unwrap(), "{\"message\":\"Hello from FastAPI\"}");
    let mut ws = ws_open(server.addr, "/echo");
    ws_echo(&mut ws, "hello \u{2603}");
    runtime().block_on(async {
        let (mut send, mut recv) = h2_ws_open(server.addr, "/echo", &[]).await;
        h2_ws_send(&mut send, 0x1, b"over h2");
        assert_eq!(recv.recv().await, Some((0x1, b"over h2".to_vec())));
    });
}

/// The README's gunicorn command line, with its paths pointed into a temp dir.
#[test]
fn a_gunicorn_command_line_runs_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("app");
    let lib_dir = tmp.path().join("lib");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::create_dir_all(&lib_dir).unwrap();
    // app.py imports from the --pythonpath dir: both flags must work.
    std::fs::write(
        lib_dir.join("greeting.py"),
        "TEXT = b'hello gunicorn user'\n",
    )
    .unwrap();
    std::fs::write(
        app_dir.join("app.py"),
        "from greeting import TEXT\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [TEXT]\n",
    )
    .unwrap();
    let error_log = tmp.path().join("error.log");
    let pidfile = tmp.path().join("app.pid");
    let line = readme_block("gunicorn-command")
        .replace("\\\n", " ")
        .replace("127.0.0.1:8000", "127.0.0.1:0")
        .replace("/srv/app", app_dir.to_str().unwrap())
        .replace("/srv/lib", lib_dir.to_str().unwrap())
        .replace("/var/log/app/error.log", error_log.to_str().unwrap())
        .replace("/run/app.pid", pidfile.to_str().unwrap());
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("ferricorn"));
    let mut server = Launch::new(words).no_wait().start();

    // The error log goes to the file, so the address and Ready are read from there.
    let deadline = Instant::now() + DEADLINE;
    let log = loop {
        let text = std::fs::read_to_string(&error_log).unwrap_or_default();
        if text.contains("Ready") {
            break text;
        }
        if Instant::now() >= deadline || server.child.try_wait().unwrap().is_some() {
            server.fail(&format!("not ready; error log:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let addr = log
        .split("Listening at: http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("Listening line in the error log");
    server.addr = addr.parse().unwrap();
    let r = get(&server, "/");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "hello gunicorn user");
    // --limit-request-line 8190: a line the default (4094) would refuse with 414.
    let long = format!("/?q={}", "a".repeat(5000));
    assert_eq!(get(&server, &long).status(), 200);
    // --access-logfile - : the access log on stdout.
    server.wait_for_log("\"GET / HTTP/1.1\" 200", DEADLINE);
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(pid.trim(), server.pid().to_string());
    assert!(log.contains("workers=2"), "{log}");

    server.signal(15);
    assert_eq!(server.wait_exit(DEADLINE).code(), Some(0));
    assert!(!pidfile.exists(), "pid file left behind");
}

#[test]
fn dev_mode_shows_tracebacks_and_production_does_not() {
    let apps = apps_dir();
    let dev = Server::start([
        "--chdir",
        apps.to_str().unwrap(),
        "-w",
        "1",
        "--reload",
        "probe:app",
    ]);
    let r = get(&dev, "/raise_before");
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    let page = r.text().unwrap();
    assert!(page.contains("Traceback"), "{page}");
    assert!(
        page.contains("RuntimeError: boom before the head"),
        "{page}"
    );
    drop(dev);

    let prod = Server::start(["--chdir", apps.to_str().unwrap(), "-w", "1", "probe:app"]);
    let r = get(&prod, "/raise_before");
    assert_eq!(r.status(), 500);
    let page = r.text().unwrap();
    assert!(
        !page.contains("Traceback") && !page.contains("boom"),
        "traceback shown without --reload: {page}"
    );
    // ... but it is in the error log.
    prod.wait_for_log("RuntimeError: boom before the head", DEADLINE);
}

#[test]
fn dev_mode_serves_a_traceback_page_when_the_app_does_not_import() {
    let apps = apps_dir();
    let server = Server::start([
        "--chdir",
        apps.to_str().unwrap(),
        "-w",
        "1",
        "--reload",
        "broken_syntax:app",
    ]);
    let r = get(&server, "/");
    assert_eq!(r.status(), 500);
    let page = r.text().unwrap();
    assert!(page.contains("SyntaxError"), "{page}");
    assert!(page.contains("broken_syntax.py"), "{page}");
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), the banner follows
/// Ready and the logs are colored.
#[test]
fn startup_banner_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("f.pid");
    let apps = apps_dir();
    let statics = repo().join("static_fixtures");
    let cmd = format!(
        "'{BIN}' --chdir '{}' -w 1 --threads 2 --reload --static '/s/={}' -b 127.0.0.1:0 -p '{}' probe:app",
        apps.display(),
        statics.display(),
        pidfile.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("VIRTUAL_ENV", venv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let text = out.lock().unwrap().clone();
        if text.contains("Press Ctrl-C to stop.") {
            break text;
        }
        if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no banner on the terminal:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stop the master itself: a hangup from the closing terminal would mean reload.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();

    let ready = text.find("Ready").expect("Ready line");
    let banner = text.find("is ready").expect("banner");
    assert!(ready < banner, "banner before Ready:\n{text}");
    for needle in [
        "Listening:  http://127.0.0.1:",
        "App:        probe:app  (1 worker x 2 threads)",
        "Static:     /s/ -> ",
        "Dev mode:   on",
        "Python:     cpython 3.",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(
        text.contains("\x1b["),
        "logs not colored on a terminal:\n{text}"
    );
    assert!(status.success(), "exit {status:?}:\n{text}");
}

#[test]
fn cargo_install_from_the_clone_gives_a_working_binary() {
    // README: `cargo install --path .` (here into a temp root, reusing the debug build).
    let root = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args([
            "install",
            "--path",
            ".",
            "--debug",
            "--locked",
            "--offline",
            "--root",
        ])
        .arg(root.path())
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bare front runs its workers on the activated venv's python, which has
    // the worker module from the wheel.
    let check = std::process::Command::new(root.path().join("bin/ferricorn"))
        .current_dir(repo())
        .args(["--chdir", "conf/demo", "--check-config", "demo_app:app"])
        .env("VIRTUAL_ENV", venv())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
