//! Static mounts through the real binary: headers, validators, ranges, precompressed
//! siblings, index files, traversal attempts sent as raw bytes (a client would
//! normalise them), config-file mounts, static-only mode and cache revalidation.

mod common;
use common::*;

use reqwest::blocking::Response;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    repo().join("static_fixtures")
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

fn fixtures_server() -> Server {
    Server::start(["--static", &format!("/static/={}", fixtures().display())])
}

fn h(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut b = client().get(s.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.send().unwrap()
}

/// The status code of a raw HTTP/1.1 request line sent as is.
fn raw_status(s: &Server, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = s.raw(req.as_bytes(), Duration::from_secs(10));
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| s.fail(&format!("no status line for {target:?}: {out:?}")));
    (status, out)
}

#[test]
fn files_get_type_length_validators() {
    let s = fixtures_server();
    let r = get(&s, "/static/css/site.css", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type"), "text/css; charset=utf-8");
    assert_eq!(
        h(&r, "content-length"),
        fixture("css/site.css").len().to_string()
    );
    assert_eq!(h(&r, "vary"), "accept-encoding");
    assert_eq!(h(&r, "accept-ranges"), "bytes");
    assert!(h(&r, "etag").starts_with('"'));
    assert!(h(&r, "last-modified").ends_with("GMT"));
    assert_eq!(
        h(&r, "cache-control"),
        "public, max-age=3600",
        "the default"
    );
    assert_eq!(r.bytes().unwrap(), fixture("css/site.css"));

    let js = get(&s, "/static/js/app.js", &[]);
    assert!(h(&js, "content-type").ends_with("javascript; charset=utf-8"));
    let svg = get(&s, "/static/img/logo.svg", &[]);
    assert_eq!(h(&svg, "content-type"), "image/svg+xml; charset=utf-8");
    let png = get(&s, "/static/img/dot.png", &[]);
    assert_eq!(h(&png, "content-type"), "image/png");

    let head = client().head(s.url("/static/css/site.css")).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        h(&head, "content-length"),
        fixture("css/site.css").len().to_string()
    );
    assert!(head.bytes().unwrap().is_empty());
}

#[test]
fn conditional_requests_and_ranges() {
    let s = fixtures_server();
    let full = get(&s, "/static/hello%20world.txt", &[]);
    let etag = h(&full, "etag");
    let lm = h(&full, "last-modified");
    let body = fixture("hello world.txt");

    for _ in 0..2 {
        assert_eq!(
            get(&s, "/static/hello%20world.txt", &[("if-none-match", &etag)]).status(),
            304
        );
        assert_eq!(
            get(
                &s,
                "/static/hello%20world.txt",
                &[("if-modified-since", &lm)]
            )
            .status(),
            304
        );
        assert_eq!(
            get(
                &s,
                "/static/hello%20world.txt",
                &[("if-none-match", "\"x\"")]
            )
            .status(),
            200
        );
    }

    let r = get(&s, "/static/hello%20world.txt", &[("range", "bytes=0-4")]);
    assert_eq!(r.status(), 206);
    assert_eq!(h(&r, "content-range"), format!("bytes 0-4/{}", body.len()));
    assert_eq!(r.bytes().unwrap(), body[..5]);

    let r = get(&s, "/static/hello%20world.txt", &[("range", "bytes=9999-")]);
    assert_eq!(r.status(), 416);
    assert_eq!(h(&r, "content-range"), format!("bytes */{}", body.len()));

    let r = get(
        &s,
        "/static/hello%20world.txt",
        &[("range", "bytes=0-1,3-4")],
    );
    assert_eq!(r.status(), 200, "multi-range: the whole file");
    assert_eq!(r.bytes().unwrap(), body);

    let r = get(
        &s,
        "/static/hello%20world.txt",
        &[("range", "bytes=0-4"), ("if-range", &etag)],
    );
    assert_eq!(r.status(), 206);
    let r = get(
        &s,
        "/static/hello%20world.txt",
        &[("range", "bytes=0-4"), ("if-range", &lm)],
    );
    assert_eq!(r.status(), 206);
    let r = get(
        &s,
        "/static/hello%20world.txt",
        &[("range", "bytes=0-4"), ("if-range", "\"stale\"")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap(), body);
}

#[test]
fn precompressed_siblings_follow_accept_encoding() {
    let s = fixtures_server();
    for _ in 0..2 {
        let r = get(
            &s,
            "/static/css/site.css",
            &[("accept-encoding", "gzip, br")],
        );
        assert_eq!(h(&r, "content-encoding"), "br");
        assert_eq!(h(&r, "content-type"), "text/css; charset=utf-8");
        assert_eq!(h(&r, "vary"), "accept-encoding");
        assert_eq!(r.bytes().unwrap(), fixture("css/site.css.br"));

        let r = get(
            &s,
            "/static/css/site.css",
            &[("accept-encoding", "gzip;q=1.0, br;q=0.2")],
        );
        assert_eq!(h(&r, "content-encoding"), "gzip");
        assert_eq!(r.bytes().unwrap(), fixture("css/site.css.gz"));

        let r = get(&s, "/static/css/site.css", &[("accept-encoding", "br;q=0")]);
        assert_eq!(h(&r, "content-encoding"), "");
        assert_eq!(r.bytes().unwrap(), fixture("css/site.css"));
    }
}

#[test]
fn directories_serve_their_index_and_never_list() {
    let s = fixtures_server();
    let r = get(&s, "/static/", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(r.bytes().unwrap(), fixture("index.html"));
    assert_eq!(
        get(&s, "/static/docs/", &[]).bytes().unwrap(),
        fixture("docs/index.html")
    );

    let r = get(&s, "/static/docs?page=2", &[]);
    assert!(r.status() == 301 || r.status() == 307, "{}", r.status());
    assert_eq!(h(&r, "location"), "/static/docs/?page=2");
    let r = get(&s, "/static", &[]);
    assert_eq!(r.status(), 301);
    assert_eq!(h(&r, "location"), "/static/");

    for path in ["/static/css/", "/static/img/"] {
        let r = get(&s, path, &[]);
        assert_eq!(r.status(), 404, "{path}: no listing");
        assert_eq!(r.text().unwrap(), "404 Not Found\n");
    }
}

#[test]
fn odd_file_names() {
    let s = fixtures_server();
    assert_eq!(
        get(&s, "/static/hello%20world.txt", &[]).bytes().unwrap(),
        fixture("hello world.txt")
    );
    assert_eq!(
        get(&s, "/static/caf%C3%A9.txt", &[]).bytes().unwrap(),
        fixture("café.txt")
    );
    assert_eq!(
        get(&s, "/static/alias.css", &[]).bytes().unwrap(),
        fixture("css/site.css")
    );
}

#[test]
fn nothing_outside_the_root_is_served() {
    let s = fixtures_server();
    let secret = "[package]"; // the first line of Cargo.toml, one level above the root
    for target in [
        "/static/../Cargo.toml",
        "/static/css/../../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/%2E%2E/Cargo.toml",
        "/static/.%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
        "/static/..%2FCargo.toml",
        "/static/..%5cCargo.toml",
        "/static/css%5csite.css",
        "/static/escape",
        "/static/.secret",
        "/static/.private/config",
        "/static/%2esecret",
        "/static/%252e%252e/Cargo.toml",
    ] {
        let (status, out) = raw_status(&s, target);
        assert_eq!(status, 404, "{target}: {out}");
        assert!(!out.contains(secret), "{target} leaked Cargo.toml");
        assert!(!out.contains("SECRET="), "{target} leaked .secret");
    }
    // Raw bytes the HTTP parser itself may refuse (400), a NUL and a `..` above the
    // root (400 for every decision) — never served (200).
    for target in [
        "/static/..\\Cargo.toml",
        "/static/a\\..\\..\\Cargo.toml",
        "/static/index.html%00.txt",
        "/static/../../Cargo.toml",
    ] {
        let (status, out) = raw_status(&s, target);
        assert!(status == 400 || status == 404, "{target}: {out}");
        assert!(!out.contains(secret));
    }
}

/// The file served is the one the normal path names (the path that chose the
/// mount): `%2F` is a '/', `.` and `x/..` are resolved, slashes merged, and a name is
/// decoded exactly once, over HTTP/1 and HTTP/2.
#[test]
fn every_spelling_serves_the_file_its_normal_path_names() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "css/site.css", b"body {}\n");
    write(dir.path(), "100%.txt", b"percent\n");
    write(dir.path(), "%2e%2e/x.txt", b"literal dots\n");
    write(dir.path(), "a?b#c;d.txt", b"odd\n");
    let s = Server::start(["--static", &format!("/static/={}", dir.path().display())]);
    for (target, body) in [
        ("/static/css/site.css", "body {}\n"),
        ("/static/css%2Fsite.css", "body {}\n"),
        ("/static/css%2fsite.css", "body {}\n"),
        ("/static//css///site.css", "body {}\n"),
        ("//static/css/site.css", "body {}\n"),
        ("/static/./css/site.css", "body {}\n"),
        ("/static/x/../css/%73ite.css", "body {}\n"),
        ("/static/css/x/%2E%2e/site.css", "body {}\n"),
        ("/static/100%25.txt", "percent\n"),
        ("/static/%252e%252e/x.txt", "literal dots\n"),
        ("/static/a%3Fb%23c;d.txt", "odd\n"),
    ] {
        let (status, out) = raw_status(&s, target);
        assert_eq!(status, 200, "HTTP/1 {target}: {out}");
        assert!(out.ends_with(body), "HTTP/1 {target}: {out}");
        assert_eq!(
            h2_request(&s, "GET", target, b""),
            (200, body.into()),
            "HTTP/2 {target}"
        );
    }
    let absolute = format!("http://{}/static//css/./site.css", s.addr);
    assert_eq!(raw_status(&s, &absolute).0, 200);
    // The bare prefix, in any spelling, is redirected to the mount.
    for target in ["/static", "//static", "/%73tatic", "/static/x/../../static"] {
        let (status, out) = raw_status(&s, target);
        assert_eq!(status, 301, "{target}: {out}");
        assert!(
            out.contains("\r\nlocation: /static/\r\n"),
            "{target}: {out}"
        );
    }
}

#[test]
fn other_methods_get_405() {
    let s = fixtures_server();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = client()
            .request(method.parse().unwrap(), s.url("/static/index.html"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(h(&r, "allow"), "GET, HEAD");
    }
}

#[test]
fn static_only_mode_404s_everything_else() {
    let s = fixtures_server();
    for path in ["/", "/index.html", "/app/", "/staticx", "/css/site.css"] {
        let r = get(&s, path, &[]);
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.text().unwrap(), "404 Not Found\n");
    }
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn config_file_mount_options() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write(&site, "home.html", b"home page\n");
    write(&site, "sub/home.html", b"sub home\n");
    write(&site, "sub/index.html", b"not the index\n");
    write(&site, ".well-known/security.txt", b"Contact: x\n");
    write(&site, "app.css", b"a{}\n");
    write(&site, "app.css.gz", b"GZ");
    let conf = tmp.path().join("ferricorn.toml");
    std::fs::write(
        &conf,
        format!(
            "[[static]]\nurl = \"/assets/\"\ndir = \"{}\"\ncache_control = \"public, max-age=600\"\n\
             index = \"home.html\"\nprecompressed = false\nfallthrough = true\ndotfiles = true\n",
            site.display()
        ),
    )
    .unwrap();
    let s = Server::start(["-c", conf.to_str().unwrap()]);

    let r = get(&s, "/assets/", &[]);
    assert_eq!(h(&r, "cache-control"), "public, max-age=600");
    let etag = h(&r, "etag");
    assert_eq!(r.text().unwrap(), "home page\n");
    assert_eq!(get(&s, "/assets/sub/", &[]).text().unwrap(), "sub home\n");

    let r = get(&s, "/assets/", &[("if-none-match", &etag)]);
    assert_eq!(r.status(), 304);
    assert_eq!(h(&r, "cache-control"), "public, max-age=600");

    let r = get(&s, "/assets/missing.css", &[]);
    assert_eq!(r.status(), 404, "fallthrough without an app is still 404");
    assert_eq!(h(&r, "cache-control"), "", "no Cache-Control on a 404");

    let r = get(&s, "/assets/.well-known/security.txt", &[]);
    assert_eq!(r.status(), 200, "dotfiles = true");

    let r = get(&s, "/assets/app.css", &[("accept-encoding", "gzip")]);
    assert_eq!(h(&r, "content-encoding"), "");
    assert_eq!(h(&r, "vary"), "");
    assert_eq!(r.text().unwrap(), "a{}\n");
}

#[test]
fn a_changed_file_is_served_fresh_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "live.txt", b"version 1\n");
    let s = Server::start(["--static", &format!("/live/={}", tmp.path().display())]);
    let first = get(&s, "/live/live.txt", &[]);
    let old_etag = h(&first, "etag");
    assert_eq!(first.text().unwrap(), "version 1\n");
    assert_eq!(
        get(&s, "/live/live.txt", &[]).text().unwrap(),
        "version 1\n"
    ); // cached now

    write(tmp.path(), "live.txt", b"version two\n");
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(2);
    loop {
        let r = get(&s, "/live/live.txt", &[]);
        let etag = h(&r, "etag");
        if r.text().unwrap() == "version two\n" {
            assert_ne!(etag, old_etag);
            break;
        }
        assert!(Instant::now() < deadline, "still the old file after 2 s");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(changed.elapsed() < Duration::from_millis(1500));
}

/// `immutable = "manifest"` follows Django's staticfiles.json, re-read when it
/// changes; `"pattern"` spots a hex hash in the name; `headers` go on 200/206/304.
#[test]
fn immutable_files_and_extra_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (stat, assets) = (dir.path().join("static"), dir.path().join("assets"));
    write(&stat, "site.css", b"body{}");
    write(&stat, "site.0123456789ab.css", b"body{}");
    write(&stat, "site.ba9876543210.css", b"body{color:red}");
    let manifest = stat.join("staticfiles.json");
    write(
        &stat,
        "staticfiles.json",
        br#"{"paths": {"site.css": "site.0123456789ab.css"}, "version": "1.1"}"#,
    );
    write(&assets, "app.3f2a9c1b.js", b"x()");
    write(&assets, "app.js", b"x()");
    let conf = dir.path().join("f.toml");
    let toml = format!(
        "[static_cache]\nrevalidate_ms = 100\n\n\
         [[static]]\nurl = \"/static/\"\ndir = {:?}\ncache_control = \"public, max-age=60\"\nimmutable = \"manifest\"\n\n\
         [[static]]\nurl = \"/assets/\"\ndir = {:?}\nimmutable = \"pattern\"\nheaders = {{ \"Access-Control-Allow-Origin\" = \"*\" }}\n",
        stat.display().to_string(),
        assets.display().to_string()
    );
    std::fs::write(&conf, toml).unwrap();
    let s = Server::start(["-c", conf.to_str().unwrap()]);
    let year = "max-age=31536000, public, immutable";
    let cc = |path: &str| h(&get(&s, path, &[]), "cache-control");
    assert_eq!(cc("/static/site.0123456789ab.css"), year);
    assert_eq!(cc("/static/site.css"), "public, max-age=60");
    assert_eq!(
        cc("/static/site.ba9876543210.css"),
        "public, max-age=60",
        "not in the manifest"
    );
    // A new collectstatic: the manifest changes, and is read again, off the
    // request path (before any request comes).
    std::thread::sleep(Duration::from_millis(20));
    let from = s.log_len();
    std::fs::write(
        &manifest,
        br#"{"paths": {"site.css": "site.ba9876543210.css"}}"#,
    )
    .unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&manifest)
        .unwrap()
        .set_modified(later)
        .unwrap();
    s.wait_for_log_after(from, "static manifest read", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while cc("/static/site.ba9876543210.css") != year {
        assert!(Instant::now() < deadline, "the new manifest was not read");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cc("/static/site.0123456789ab.css"), "public, max-age=60");

    let hashed = get(&s, "/assets/app.3f2a9c1b.js", &[]);
    assert_eq!(h(&hashed, "cache-control"), year);
    assert_eq!(h(&hashed, "access-control-allow-origin"), "*");
    let plain = get(&s, "/assets/app.js", &[("range", "bytes=0-0")]);
    assert_eq!(plain.status(), 206);
    assert_eq!(
        h(&plain, "cache-control"),
        "public, max-age=3600",
        "the default"
    );
    assert_eq!(h(&plain, "access-control-allow-origin"), "*");
    let etag = h(&plain, "etag");
    let not_modified = get(&s, "/assets/app.js", &[("if-none-match", &etag)]);
    assert_eq!(not_modified.status(), 304);
    assert_eq!(h(&not_modified, "access-control-allow-origin"), "*");
    let missing = get(&s, "/assets/nope.js", &[]);
    assert_eq!(missing.status(), 404);
    assert_eq!(h(&missing, "access-control-allow-origin"), "");
}

/// A segment longer than the file system's NAME_MAX names no file: 404, as nginx
/// answers ENAMETOOLONG, over HTTP/1 and HTTP/2; and a file with a 253-byte name
/// still serves every browser (`Accept-Encoding: br, gzip`), its `.br`/`.gz` names
/// being too long to exist. A path an ERROR line does print (a symlink loop, a 500
/// as in nginx) is quoted: a `%0a` or `%1b` in it forges no line and sends no
/// escape to the operator's terminal.
#[test]
fn overlong_names_are_404_and_logged_paths_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let long = "b".repeat(253);
    write(dir.path(), &long, b"long name\n");
    let forged = "x\n2026-12-07T19:53:02.000000Z  INFO Ready forged\x1b[31mRED";
    std::os::unix::fs::symlink(forged, dir.path().join(forged)).unwrap();
    let s = Server::start(["--static", &format!("/static/={}", dir.path().display())]);

    let too_long = format!("/static/{}", "a".repeat(256));
    assert_eq!(raw_status(&s, &too_long).0, 404);
    assert_eq!(raw_status(&s, &format!("{too_long}/x")).0, 404);
    assert_eq!(h2_request(&s, "GET", &too_long, b"").0, 404);
    let r = get(
        &s,
        &format!("/static/{long}"),
        &[("accept-encoding", "br, gzip")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap(), &b"long name\n"[..]);
    assert_eq!(
        h2_request(&s, "GET", &format!("/static/{long}"), b"").0,
        200
    );

    let looped = "/static/x%0a2026-12-07T19:53:02.000000Z%20%20INFO%20Ready%20forged%1b%5b31mRED";
    assert_eq!(raw_status(&s, looped).0, 500);
    let line = s.wait_for_log("forged", Duration::from_secs(10));
    assert!(
        line.contains("static file failed"),
        "a forged line: {line:?}"
    );
    let log = s.log();
    assert!(!log.contains('\x1b'), "a raw escape in the log: {log:?}");
    assert!(!log.contains("File name too long"), "{log}");
}

/// `dotfiles = false` holds for what a path resolves to: a plain name that is a
/// symlink to a dotfile or a dot-directory inside the mount is a 404 too.
#[test]
fn a_symlink_to_a_dotfile_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".env", b"SECRET=1\n");
    write(dir.path(), ".git/config", b"[remote] token=abc\n");
    write(dir.path(), "a.txt", b"hello\n");
    for (target, link) in [(".env", "envlink"), (".git", "gitlink"), ("a.txt", "alias")] {
        std::os::unix::fs::symlink(target, dir.path().join(link)).unwrap();
    }
    let s = Server::start(["--static", &format!("/static/={}", dir.path().display())]);
    for path in [
        "/static/.env",
        "/static/envlink",
        "/static/.git/config",
        "/static/gitlink/config",
    ] {
        let (status, out) = raw_status(&s, path);
        assert_eq!(status, 404, "{path}: {out}");
        assert!(
            !out.contains("SECRET") && !out.contains("token"),
            "{path}: {out}"
        );
        assert_eq!(
            h2_request(&s, "GET", path, b"").0,
            404,
            "{path} over HTTP/2"
        );
    }
    assert_eq!(get(&s, "/static/alias", &[]).text().unwrap(), "hello\n");
}

/// A fallthrough mount at `/` (nginx's `try_files $uri @app`): a POST, PUT, DELETE
/// or OPTIONS for a path with no file goes to the app; only an existing file answers
/// 405 (with Allow), as GET-only static content does.
#[test]
fn other_methods_fall_through_to_the_app_unless_the_file_exists() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "robots.txt", b"User-agent: *\n");
    let conf = tmp.path().join("f.toml");
    std::fs::write(
        &conf,
        format!(
            "[[static]]\nurl = \"/\"\ndir = {:?}\nfallthrough = true\n",
            tmp.path().display().to_string()
        ),
    )
    .unwrap();
    let s = test_app("front_app:app", &["-w", "1", "-c", conf.to_str().unwrap()]).start();
    let c = client();
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(m.clone(), s.url("/upload"))
            .body("abc")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{method} /upload reaches the app");
        assert!(r.text().unwrap().contains("\"len\": 3"), "{method}");
        let r = c.request(m, s.url("/robots.txt")).send().unwrap();
        assert_eq!(r.status(), 405, "{method} on an existing file");
        assert!(h(&r, "allow").contains("GET"), "{method}");
    }
    assert_eq!(
        get(&s, "/robots.txt", &[]).text().unwrap(),
        "User-agent: *\n"
    );
}
