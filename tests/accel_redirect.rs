//! `X-Accel-Redirect` and `X-Sendfile`: the app names a file, the front serves it
//! from a static mount (an `internal` one, which clients cannot reach directly) with
//! the static layer's headers, keeps what nginx keeps of the app's answer
//! (Content-Type, Content-Disposition, Cache-Control, Expires, Set-Cookie; only the
//! cookies on an error), drops the app's body, and refuses a path outside the mount
//! or a directory. The app's other X-Accel-* fields are orders to the front that no
//! client sees: Buffering (`no`: each event of a stream at once, never spooled) and
//! Limit-Rate are honoured, Expires and Charset dropped. The apps are Flask
//! (tests/apps/accel_app.py) and Django (djsite's accel_views.py), over HTTP/1 and
//! HTTP/2.

mod common;

use common::{apps_dir, client, h1_request, h2_request, test_app, venv, Server};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const REPORT: &str = "quarterly report: all is well\n";

/// A protected directory (with a gzipped sibling of the report) mounted internal
/// at /protected/, and a secret beside it that no mount serves.
fn serve(dir: &Path) -> Server {
    let files = dir.join("protected");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("report.txt"), REPORT).unwrap();
    std::fs::write(dir.join("secret.txt"), "do not serve").unwrap();
    let gz = std::process::Command::new("gzip")
        .args(["-k", "-n"])
        .arg(files.join("report.txt"))
        .status()
        .unwrap();
    assert!(gz.success());
    let conf = dir.join("f.toml");
    let toml = format!(
        "[[static]]\nurl = \"/protected/\"\ndir = {:?}\ninternal = true\n",
        files.display().to_string()
    );
    std::fs::write(&conf, toml).unwrap();
    test_app("sup_app:app", &["-w", "1", "-c", conf.to_str().unwrap()]).start()
}

#[test]
fn an_internal_mount_is_not_reachable_directly() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let resp = client()
        .get(server.url("/protected/report.txt"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[test]
fn the_front_serves_the_file_the_app_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let c = client();
    let url = server.url("/download?to=/protected/report.txt");
    let resp = c.get(&url).send().unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"report.txt\""
    );
    assert_eq!(h["cache-control"], "private, max-age=60");
    assert!(
        h.contains_key("etag") && h.contains_key("last-modified"),
        "{h:?}"
    );
    assert!(!h.contains_key("x-accel-redirect"), "{h:?}");
    assert_eq!(resp.text().unwrap(), REPORT);

    // The static layer's Range, conditionals and precompressed variant apply.
    let part = c.get(&url).header("range", "bytes=0-8").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.text().unwrap(), "quarterly");
    let etag = h["etag"].to_str().unwrap();
    let cached = c.get(&url).header("if-none-match", etag).send().unwrap();
    assert_eq!(cached.status(), 304);
    let gz = c
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], REPORT.len().to_string());
}

#[test]
fn x_sendfile_names_a_path_inside_a_mounts_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let inside = dir.path().join("protected/report.txt");
    let resp = client()
        .get(server.url(&format!("/sendfile?path={}", inside.display())))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), REPORT);
}

#[test]
fn a_path_outside_the_mounts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let secret = dir.path().join("secret.txt");
    for path in [
        "/download?to=/protected/../secret.txt".to_string(),
        "/download?to=/protected/%2e%2e/secret.txt".to_string(),
        "/download?to=/elsewhere/secret.txt".to_string(),
        format!("/sendfile?path={}", secret.display()),
        format!(
            "/sendfile?path={}/protected/../secret.txt",
            dir.path().display()
        ),
    ] {
        let resp = client().get(server.url(&path)).send().unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body = resp.text().unwrap();
        assert!(
            !body.contains("do not serve") && !body.contains("app's body"),
            "{path}: {body}"
        );
    }
    server.wait_for_log("no static mount serves", Duration::from_secs(5));
}

const DOC: &str = "the private document\n";

/// `/media/` serves `media/`, and `/media/private/` (its `private/` subdirectory)
/// is internal: the layout of a Django site with protected uploads.
fn serve_media(dir: &Path) -> Server {
    serve_media_with(dir, &[])
}

fn serve_media_with(dir: &Path, flags: &[&str]) -> Server {
    let media = dir.join("media");
    std::fs::create_dir_all(media.join("private")).unwrap();
    std::fs::write(media.join("private/doc.txt"), DOC).unwrap();
    std::fs::write(media.join("public.txt"), "public\n").unwrap();
    let conf = dir.join("f.toml");
    let toml = format!(
        "[[static]]\nurl = \"/media/\"\ndir = {:?}\n\n\
         [[static]]\nurl = \"/media/private/\"\ndir = {:?}\ninternal = true\n",
        media.display().to_string(),
        media.join("private").display().to_string()
    );
    std::fs::write(&conf, toml).unwrap();
    let mut args = vec!["-w", "1", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(flags);
    test_app("sup_app:app", &args).start()
}

/// Every spelling of a path on the internal mount is that path: 404 over HTTP/1
/// (origin-form, absolute-form, a guard stand-in) and over HTTP/2.
#[test]
fn no_spelling_reaches_an_internal_mount() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_media(dir.path());
    let paths = [
        "/media/private/doc.txt",
        "/media//private/doc.txt",
        "//media///private//doc.txt",
        "/media/%70rivate/doc.txt",
        "/media/%70riv%61te/doc.txt",
        "/%6D%65%64%69%61/%70%72%69%76%61%74%65/doc.txt",
        "/%6d%65%64%69%61/%70%72%69%76%61%74%65/doc.txt",
        "/media%2Fprivate/doc.txt",
        "/media%2fprivate%2Fdoc.txt",
        "/media/./private/doc.txt",
        "/media/%2e/private/./doc.txt",
        "/media/x/../private/doc.txt",
        "/media/x/%2E%2e/private/doc.txt",
        "/media/public.txt/../private/doc.txt",
        "/media/private/",
        "/media/private",
        "/media//private",
        "/media/private/doc.txt?a=<b>",
        "/media//private/doc.txt?a=`",
    ];
    let absolute = [
        "http://127.0.0.1/media//private/doc.txt",
        "http://127.0.0.1/media/%70rivate/doc.txt",
        "http://127.0.0.1/media/x/../private/doc.txt?<",
    ];
    for target in paths.iter().chain(&absolute) {
        let (status, answer) = h1_request(&server, "GET", target, b"");
        assert_eq!(status, 404, "HTTP/1 {target}: {answer}");
        assert!(!answer.contains("private document"), "{target}");
    }
    for path in paths.iter().filter(|p| !p.contains(['<', '`'])) {
        let (status, body) = h2_request(&server, "GET", path, b"");
        assert_eq!(status, 404, "HTTP/2 {path}: {body}");
        assert!(!body.contains("private document"), "{path}");
    }
    // The public side of the same mount still answers, in any spelling.
    for path in [
        "/media/public.txt",
        "/media//public.txt",
        "/media/%70ublic.txt",
    ] {
        assert_eq!(h1_request(&server, "GET", path, b"").0, 200, "{path}");
        assert_eq!(h2_request(&server, "GET", path, b"").0, 200, "{path}");
    }
    // The app still reaches the file, by its plain name or a spelling of it.
    for to in [
        "/media/private/doc.txt",
        "/media//private/doc.txt",
        "/media/%2570rivate/doc.txt",
        "/media/private%252Fdoc.txt",
    ] {
        let target = format!("/download?to={to}");
        let (status, answer) = h1_request(&server, "GET", &target, b"");
        assert_eq!(status, 200, "{to}: {answer}");
        assert!(answer.ends_with(DOC), "{to}: {answer}");
        let (status, body) = h2_request(&server, "GET", &target, b"");
        assert_eq!((status, body.as_str()), (200, DOC), "HTTP/2 {to}");
    }
    // A target with a dot segment is refused, as nginx refuses an unsafe URI.
    for to in [
        "/media/private/../private/doc.txt",
        "/media/public.txt/%252e%252e/private/doc.txt",
    ] {
        let target = format!("/download?to={to}");
        assert_eq!(h1_request(&server, "GET", &target, b"").0, 404, "{to}");
    }
}

/// Over TLS, with HTTP/2 and HTTP/1.1 as ALPN chose them (curl sends the path as
/// is), the spellings meet the same 404.
#[test]
fn no_spelling_reaches_an_internal_mount_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::certificate(dir.path());
    let server = serve_media_with(dir.path(), &["--certfile", &cert, "--keyfile", &key]);
    for path in [
        "/media//private/doc.txt",
        "/media/%70rivate/doc.txt",
        "/media%2Fprivate/doc.txt",
        "/media/./private/doc.txt",
        "/media/x/../private/doc.txt",
        "/media/public.txt",
    ] {
        for version in ["--http2", "--http1.1"] {
            let out = std::process::Command::new("curl")
                .args(["-s", "--path-as-is", "--cacert", &cert, version])
                .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
                .arg(format!("https://{}{path}", server.addr))
                .output()
                .unwrap();
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            let want = if path.ends_with("public.txt") {
                "200"
            } else {
                "404"
            };
            let proto = if version == "--http2" { "2" } else { "1.1" };
            assert_eq!(got, format!("{want} {proto}"), "{version} {path}");
        }
    }
}
/// An extension-less stored file (the type is the app's to give), a directory, a
/// larger file, all under an internal mount; a secret beside the mount.
const BLOB: &str = "%PDF-1.4 a stored upload without an extension\n";

fn protected_dir(dir: &Path) -> std::path::PathBuf {
    let files = dir.join("protected");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("blob"), BLOB).unwrap();
    std::fs::write(files.join("sub/inner"), "inner").unwrap();
    std::fs::write(files.join("big"), vec![b'x'; 5000]).unwrap();
    std::fs::write(dir.join("secret"), "do not serve").unwrap();
    let conf = dir.join("f.toml");
    let toml = format!(
        "[[static]]\nurl = \"/protected/\"\ndir = {:?}\ninternal = true\n",
        files.display().to_string()
    );
    std::fs::write(&conf, toml).unwrap();
    conf
}

fn flask(dir: &Path) -> Server {
    flask_with(dir, &[])
}

fn flask_with(dir: &Path, extra: &[&str]) -> Server {
    let conf = protected_dir(dir);
    let mut args = vec!["-w", "1", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    test_app("accel_app:app", &args).start()
}

fn django(dir: &Path) -> Server {
    let conf = protected_dir(dir);
    Server::launch([
        "--chdir",
        apps_dir().join("djsite").to_str().unwrap(),
        "--venv",
        venv().to_str().unwrap(),
        "-w",
        "1",
        "-c",
        conf.to_str().unwrap(),
        "accel_wsgi:application",
    ])
    .env("DJSITE_DB", dir.join("db.sqlite3"))
    .start()
}

fn field<'a>(r: &'a reqwest::blocking::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn cookies(r: &reqwest::blocking::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// No field that names X-Accel or X-Sendfile reached the client.
fn assert_no_control_field<'a>(names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        let n = name.to_ascii_lowercase();
        assert!(
            !n.starts_with("x-accel") && n != "x-sendfile",
            "{name} reached the client"
        );
    }
}

#[test]
fn the_file_keeps_the_apps_type_cookie_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let server = flask(dir.path());
    let c = client();
    let url = server.url("/download?to=/protected/blob&type=application/pdf");
    let r = c.get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(field(&r, "content-type"), Some("application/pdf"));
    assert_eq!(
        field(&r, "content-disposition"),
        Some("attachment; filename=\"report\"")
    );
    assert_eq!(field(&r, "cache-control"), Some("private, max-age=60"));
    assert_eq!(field(&r, "expires"), Some("Thu, 01 Jan 2037 00:00:00 GMT"));
    assert!(cookies(&r)[0].starts_with("downloaded=yes"), "{r:?}");
    assert!(field(&r, "etag").is_some(), "served by the front");
    assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
    let etag = field(&r, "etag").unwrap().to_string();
    assert_eq!(r.text().unwrap(), BLOB);

    // Range, HEAD, a conditional: the app's type and cookie on each.
    let part = c.get(&url).header("range", "bytes=0-7").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(field(&part, "content-type"), Some("application/pdf"));
    assert_eq!(part.text().unwrap(), "%PDF-1.4");
    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(field(&head, "content-type"), Some("application/pdf"));
    assert_eq!(
        field(&head, "content-length"),
        Some(&*BLOB.len().to_string())
    );
    let cached = c.get(&url).header("if-none-match", &etag).send().unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(field(&cached, "cache-control"), Some("private, max-age=60"));
    assert_eq!(cookies(&cached).len(), 1);
    // A POST's answer is the file too (GET of it, as nginx does).
    let posted = c.post(&url).send().unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(posted.text().unwrap(), BLOB);

    // An app that names no type leaves the file's.
    let untyped = c
        .get(server.url("/download?to=/protected/blob"))
        .send()
        .unwrap();
    assert_eq!(
        field(&untyped, "content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn the_django_download_view_gets_its_type_cookie_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let server = django(dir.path());
    let r = client().get(server.url("/files/blob")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(field(&r, "content-type"), Some("application/pdf"));
    assert_eq!(field(&r, "expires"), Some("Thu, 01 Jan 2037 00:00:00 GMT"));
    assert!(
        cookies(&r).iter().any(|c| c.starts_with("downloaded=yes")),
        "{r:?}"
    );
    assert_eq!(r.text().unwrap(), BLOB);
}

#[test]
fn an_error_answer_carries_only_the_apps_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let server = flask(dir.path());
    let c = client();
    let url = server.url("/download?to=/protected/blob&type=application/pdf");
    let missing = server.url("/download?to=/protected/gone&type=application/pdf");
    let nowhere = server.url("/download?to=/elsewhere/blob&type=application/pdf");
    for (r, status) in [
        (c.get(&missing).send().unwrap(), 404),
        (c.get(&nowhere).send().unwrap(), 404),
        (
            c.get(&url).header("if-match", "\"other\"").send().unwrap(),
            412,
        ),
        (
            c.get(&url).header("range", "bytes=9999-").send().unwrap(),
            416,
        ),
    ] {
        assert_eq!(r.status(), status, "{r:?}");
        for app_only in ["content-disposition", "expires", "cache-control"] {
            assert_eq!(field(&r, app_only), None, "{app_only} on a {status}");
        }
        assert_ne!(field(&r, "content-type"), Some("application/pdf"));
        // nginx's error page keeps the cookies the view set.
        assert!(cookies(&r)[0].starts_with("downloaded=yes"), "{r:?}");
        assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
    }
}

#[test]
fn a_directory_target_is_404_and_names_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = flask(dir.path());
    let c = client();
    for target in [
        "/protected/sub",
        "/protected/sub/",
        "/protected",
        "/protected/",
    ] {
        let r = c
            .get(server.url(&format!("/download?to={target}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{target}");
        assert_eq!(field(&r, "location"), None, "{target}");
        assert_eq!(field(&r, "content-disposition"), None, "{target}");
    }
}

/// What the app's answer names, given as fields: every spelling an attacker (or a
/// careless view) may send.
#[test]
fn odd_targets_are_refused_or_read_as_nginx_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = flask(dir.path());
    let c = client();
    let raw = |fields: &[&str]| {
        let query: Vec<String> = fields
            .iter()
            .map(|f| {
                let f = f.replace('%', "%25").replace('&', "%26");
                format!("f={}", f.replace('\r', "%0D").replace('\n', "%0A"))
            })
            .collect();
        c.get(server.url(&format!("/raw?{}", query.join("&"))))
            .send()
            .unwrap()
    };
    let served = [
        vec!["X-Accel-Redirect:/protected/blob?download=1"],
        // Several: the first counts (nginx ignores the others).
        vec![
            "X-Accel-Redirect:/protected/blob",
            "X-Accel-Redirect:/elsewhere/x",
        ],
        // Both: X-Accel-Redirect wins, X-Sendfile goes nowhere.
        vec!["X-Sendfile:/etc/passwd", "X-Accel-Redirect:/protected/blob"],
    ];
    for fields in served {
        let r = raw(&fields);
        assert_eq!(r.status(), 200, "{fields:?}");
        assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
        assert_eq!(r.text().unwrap(), BLOB, "{fields:?}");
    }
    let secret = dir.path().join("secret");
    let refused = [
        "X-Accel-Redirect:/protected/../secret".to_string(),
        "X-Accel-Redirect:/protected/sub/../../secret".into(),
        "X-Accel-Redirect:/protected/%2e%2e/secret".into(),
        "X-Accel-Redirect:/protected/sub%5Cinner".into(),
        format!("X-Accel-Redirect:http://{}/protected/blob", server.addr),
        "X-Accel-Redirect://127.0.0.1/protected/blob".into(),
        "X-Accel-Redirect:@protected".into(),
        "X-Accel-Redirect:".into(),
        "X-Accel-Redirect:protected/blob".into(),
        format!("X-Sendfile:{}", secret.display()),
        format!("X-Sendfile:{}/protected/../secret", dir.path().display()),
        "X-Sendfile:/protected/blob".into(),
    ];
    for f in &refused {
        let r = raw(&[f]);
        assert_eq!(r.status(), 404, "{f}");
        assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
        let body = r.text().unwrap();
        assert!(
            !body.contains("do not serve") && !body.contains("app body"),
            "{f}: {body}"
        );
    }
    // An escaped slash is a slash in the target's normal form, as in a client's path
    // (`normal_path`): it names the file inside the mount.
    let r = raw(&["X-Accel-Redirect:/protected/sub%2Finner"]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "inner");
    // CR/LF cannot split a field: Werkzeug refuses it, and the front would too.
    let r = raw(&["X-Accel-Redirect:/protected/blob\r\nX-Evil: 1"]);
    assert_eq!(r.status(), 500);
    assert_eq!(field(&r, "x-evil"), None);
}

#[test]
fn no_control_field_reaches_the_client_over_http1() {
    let dir = tempfile::tempdir().unwrap();
    for server in [flask(dir.path()), django(dir.path())] {
        let r = client().get(server.url("/controls")).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
        assert_eq!(r.text().unwrap(), "plain answer");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c GET: the head, and the body's receiver.
async fn h2_get(server: &Server, path: &str) -> (http::response::Parts, h2::RecvStream) {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(server.url(path)).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    resp.await.unwrap().into_parts()
}

#[test]
fn no_control_field_reaches_the_client_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    for (server, download) in [
        (
            flask(dir.path()),
            "/download?to=/protected/blob&type=application/pdf",
        ),
        (django(dir.path()), "/files/blob"),
    ] {
        runtime().block_on(async {
            for path in ["/controls", download] {
                let (head, mut body) = h2_get(&server, path).await;
                assert_eq!(head.status, 200, "{path}");
                assert_no_control_field(head.headers.keys().map(|k| k.as_str()));
                while let Some(chunk) = body.data().await {
                    chunk.unwrap();
                }
            }
            let (head, _) = h2_get(&server, download).await;
            assert_eq!(head.headers["content-type"], "application/pdf");
            assert!(head.headers.get("set-cookie").is_some());
        });
    }
}

/// A FIFO the app blocks on (reading it) until the test writes to it.
fn gate(dir: &Path, name: &str) -> std::path::PathBuf {
    let fifo = dir.join(name);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fifo
}

/// Lets the app's view on (it reads the FIFO to its end).
fn open_gate(fifo: &Path) {
    let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    w.write_all(b"go").unwrap();
}

/// Reads `s` until `needle` has come, or fails after 20 s; returns all read.
fn read_until(s: &mut std::net::TcpStream, got: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(got)
        );
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

#[test]
fn an_unbuffered_stream_delivers_each_event_while_the_view_waits() {
    let dir = tempfile::tempdir().unwrap();
    for (n, server) in [flask(dir.path()), django(dir.path())]
        .into_iter()
        .enumerate()
    {
        // HTTP/1.
        let fifo = gate(dir.path(), &format!("h1-{n}"));
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        write!(
            s,
            "GET /events?gate={} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n",
            fifo.display()
        )
        .unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, "data: one");
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(!text.contains("data: two"), "the view was not let on yet");
        assert!(text.contains("content-type: text/event-stream"), "{text}");
        assert!(!text.contains("x-accel"), "{text}");
        open_gate(&fifo);
        read_until(&mut s, &mut got, "data: two");

        // HTTP/2.
        let fifo = gate(dir.path(), &format!("h2-{n}"));
        runtime().block_on(async {
            let (head, mut body) =
                h2_get(&server, &format!("/events?gate={}", fifo.display())).await;
            assert_no_control_field(head.headers.keys().map(|k| k.as_str()));
            let first = tokio::time::timeout(Duration::from_secs(20), body.data())
                .await
                .expect("the first event came while the view waits")
                .unwrap()
                .unwrap();
            assert_eq!(&first[..], b"data: one\n\n");
            let fifo = fifo.clone();
            tokio::task::spawn_blocking(move || open_gate(&fifo))
                .await
                .unwrap();
            let second = body.data().await.unwrap().unwrap();
            assert_eq!(&second[..], b"data: two\n\n");
        });
    }
}

#[test]
fn x_accel_limit_rate_paces_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = flask(dir.path());
    // 2000 bytes at once, the other 3000 at 2000 a second: 1.5 s at least.
    let started = Instant::now();
    let r = client()
        .get(server.url("/raw?f=X-Accel-Redirect:/protected/big&f=X-Accel-Limit-Rate:2000"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_control_field(r.headers().keys().map(|k| k.as_str()));
    assert_eq!(r.bytes().unwrap().len(), 5000);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
}
