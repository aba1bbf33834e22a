//! A `django-admin startproject` site (tests/apps/djsite) in the test venv, served
//! by ferricorn with its collected static files on a static mount: the admin login
//! page, its CSS from the front, a CSRF-protected login POST and the session.

mod common;

use common::*;

#[test]
fn django_admin_login_through_ferricorn() {
    let site = DjangoSite::prepare();
    let server = site.serve();
    let c = client();

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

    // Without the CSRF token and cookie Django refuses the login.
    let no_csrf = c
        .post(server.url("/admin/login/"))
        .form(&[("username", "admin"), ("password", DJANGO_ADMIN_PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(no_csrf.status(), 403);

    let cookies = django_admin_login(&server, "admin", DJANGO_ADMIN_PASSWORD);
    // The session holds across requests (and workers).
    for _ in 0..4 {
        let page = c
            .get(server.url("/admin/"))
            .header("cookie", &cookies)
            .send()
            .unwrap();
        assert!(page.text().unwrap().contains("Site administration"));
    }
}
