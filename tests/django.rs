//! A `django-admin startproject` site (tests/apps/djsite) in the test venv, served
//! by ferricorn with its collected static files on a static mount: the admin login
//! page, its CSS from the front, a CSRF-protected login POST and the session.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn manage(venv: &Path, env: &[(&str, &Path)], args: &[&str]) {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(apps_dir().join("djsite/manage.py")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "manage.py {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cookie(resp: &reqwest::blocking::Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", resp.headers()))
        .to_string()
}

#[test]
fn django_admin_login_through_ferricorn() {
    let venv = venv();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.sqlite3");
    let static_root = tmp.path().join("staticfiles");
    let env = [
        ("DJSITE_DB", db.as_path()),
        ("DJSITE_STATIC_ROOT", static_root.as_path()),
    ];
    manage(&venv, &env, &["migrate", "--noinput"]);
    manage(&venv, &env, &["collectstatic", "--noinput"]);
    manage(
        &venv,
        &env,
        &[
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.com",
        ],
    );

    let server = Server::launch([
        "--chdir",
        apps_dir().join("djsite").to_str().unwrap(),
        "--venv",
        venv.to_str().unwrap(),
        "-w",
        "2",
        "--static",
        &format!("/static/={}", static_root.display()),
        "djsite.wsgi:application",
    ])
    .env("DJSITE_DB", &db)
    .env("DJSITE_STATIC_ROOT", &static_root)
    .start();
    let c = client();

    let login = c
        .get(server.url("/admin/login/?next=/admin/"))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    let csrf_cookie = cookie(&login, "csrftoken");
    let page = login.text().unwrap();
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the login form");

    let css = c
        .get(server.url("/static/admin/css/base.css"))
        .send()
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(
        css.headers().get("etag").is_some(),
        "not served by the static front"
    );
    assert!(css.text().unwrap().contains("body"));

    let no_csrf = c
        .post(server.url("/admin/login/"))
        .form(&[("username", "admin"), ("password", "s3cret-pass")])
        .send()
        .unwrap();
    assert_eq!(no_csrf.status(), 403);

    let posted = c
        .post(server.url("/admin/login/?next=/admin/"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrfmiddlewaretoken", token),
            ("username", "admin"),
            ("password", "s3cret-pass"),
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
    let session = cookie(&posted, "sessionid");

    let admin = c
        .get(server.url("/admin/"))
        .header("cookie", format!("{csrf_cookie}; {session}"))
        .send()
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin.text().unwrap().contains("Site administration"));
}
