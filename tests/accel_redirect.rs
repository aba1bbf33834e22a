//! `X-Accel-Redirect` and `X-Sendfile`: the app names a file, the front serves it
//! from a static mount (an `internal` one, which clients cannot reach directly) with
//! the static layer's headers, keeps the app's Content-Disposition and
//! Cache-Control, drops the app's body, and refuses a path outside the mount.

mod common;

use common::{client, h1_request, h2_request, test_app, Server};
use std::path::Path;
use std::time::Duration;

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
