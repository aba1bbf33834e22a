//! `[[route]]` overrides by URL prefix: a rate limit per client address (429 with
//! Retry-After, before any worker), and the worker timeout and body size limit of
//! the requests under the prefix; the longest prefix wins, and --check-config shows
//! them.

mod common;

use common::{check_config_toml, client, h1_request, h2_request, test_app, DjangoSite, Server};
use std::path::Path;

fn serve(dir: &Path, routes: &str, extra: &[&str]) -> Server {
    let conf = dir.join("routes.toml");
    std::fs::write(&conf, routes).unwrap();
    let mut args = vec!["-w", "1", "--threads", "4", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    test_app("sup_app:app", &args).start()
}

#[test]
fn a_rate_limit_answers_429_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/pid\"\nrate = \"1/m\"\nburst = 1\n";
    let server = serve(dir.path(), routes, &[]);
    let c = client();
    let get = |xff: Option<&str>| {
        let mut req = c.get(server.url("/pid"));
        if let Some(ip) = xff {
            req = req.header("x-forwarded-for", ip);
        }
        req.send().unwrap()
    };
    assert_eq!(get(None).status(), 200);
    assert_eq!(get(None).status(), 200, "the burst");
    let refused = get(None);
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(refused.text().unwrap(), "429 Too Many Requests\n");
    // Another client (as the trusted local proxy says) has its own bucket.
    assert_eq!(get(Some("203.0.113.7")).status(), 200);
    // Other paths are not limited.
    let other = c.get(server.url("/environ")).send().unwrap();
    assert_eq!(other.status(), 200);
}

#[test]
fn a_route_raises_the_body_limit_and_the_longest_prefix_wins() {
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/\"\nmax_body_size = 100\n\n\
                  [[route]]\nprefix = \"/echo\"\nmax_body_size = \"1MiB\"\n";
    let server = serve(dir.path(), routes, &["--limit-request-body", "1000"]);
    let c = client();
    let body = vec![b'x'; 5000];
    let echoed = c
        .post(server.url("/echo"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.bytes().unwrap().len(), 5000);
    let small = c
        .post(server.url("/environ"))
        .body(vec![b'x'; 500])
        .send()
        .unwrap();
    assert_eq!(small.status(), 413, "the / route's 100 bytes");
}

#[test]
fn a_route_has_its_own_worker_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Shorter than the global one: the slow request gets 504.
    let routes = "[[route]]\nprefix = \"/sleep\"\ntimeout = 1\n";
    let server = serve(dir.path(), routes, &["-t", "30"]);
    let resp = client().get(server.url("/sleep?s=4")).send().unwrap();
    assert_eq!(resp.status(), 504);
    drop(server);
    // Longer than the global one: the export finishes.
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/sleep\"\ntimeout = 30\n";
    let server = serve(dir.path(), routes, &["-t", "1"]);
    let resp = client().get(server.url("/sleep?s=2.5")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "slept");
}

#[test]
fn routes_show_in_check_config_and_bad_ones_exit_2() {
    let check = |toml: &str| check_config_toml(toml, "sup_app:app");
    let out =
        check("[[route]]\nprefix = \"/export/\"\ntimeout = 600\nrate = \"10/s\"\nburst = 5\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("[[route]]\nprefix = \"/export/\"\ntimeout = 600"),
        "{text}"
    );
    for bad in [
        "[[route]]\nprefix = \"export\"\n",
        "[[route]]\nprefix = \"/a\"\nrate = \"10/h\"\n",
        "[[route]]\nprefix = \"/a\"\nburst = 3\n",
        "[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/a\"\n",
    ] {
        let out = check(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Spellings of `/admin/login/` that Django or Werkzeug route to the login view.
const ADMIN_LOGIN_SPELLINGS: [&str; 9] = [
    "/admin/login/",
    "/%61dmin/login/",
    "/%61dmin/%6C%6f%67in/",
    "/admin%2Flogin/",
    "/admin%2flogin/",
    "//admin/login/",
    "///admin//login/",
    "/admin/./login/",
    "/x/../admin/login/",
];

fn config(dir: &Path, routes: &str) -> String {
    let conf = dir.join("routes.toml");
    std::fs::write(&conf, routes).unwrap();
    conf.to_str().unwrap().to_owned()
}

/// A Django site and the Flask app, both behind `routes`.
fn django_and_flask(dir: &Path, routes: &str) -> (DjangoSite, Server, Server) {
    let conf = config(dir, routes);
    let site = DjangoSite::prepare();
    let django = site.serve_with(&["-w", "1", "-c", &conf]);
    let flask = test_app("flask_app:app", &["-w", "1", "-c", &conf]).start();
    (site, django, flask)
}

#[test]
fn a_rate_limit_meets_every_spelling_of_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/admin/\"\nrate = \"1/m\"\n";
    let (_site, django, flask) = django_and_flask(dir.path(), routes);
    for server in [&django, &flask] {
        let (first, answer) = h1_request(server, "GET", "/admin/login/", b"");
        assert_eq!(first, 200, "{answer}");
        for path in ADMIN_LOGIN_SPELLINGS {
            let (status, answer) = h1_request(server, "GET", path, b"");
            assert_eq!(status, 429, "HTTP/1 {path}: {answer}");
            let (status, body) = h2_request(server, "GET", path, b"");
            assert_eq!(status, 429, "HTTP/2 {path}: {body}");
        }
        let absolute = format!("http://{}//%61dmin/login/", server.addr);
        assert_eq!(h1_request(server, "GET", &absolute, b"").0, 429);
    }
}

#[test]
fn a_body_limit_meets_every_spelling_of_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/admin/\"\nmax_body_size = 100\n";
    let (_site, django, flask) = django_and_flask(dir.path(), routes);
    let body = vec![b'x'; 5000];
    for server in [&django, &flask] {
        for path in ADMIN_LOGIN_SPELLINGS {
            let (status, answer) = h1_request(server, "POST", path, &body);
            assert_eq!(status, 413, "HTTP/1 {path}: {answer}");
            let (status, answer) = h2_request(server, "POST", path, &body);
            assert_eq!(status, 413, "HTTP/2 {path}: {answer}");
        }
    }
    // Under the limit, Flask's view runs (and reads the body).
    let (status, answer) = h1_request(&flask, "POST", "/%61dmin/login/", &body[..50]);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with("flask admin login, 50 bytes"), "{answer}");
}

/// A small seeded generator (xorshift), so a failure names the spelling again.
struct Spellings(u64);

impl Spellings {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `plain` written another way: bytes escaped in either case, a '/' doubled or
    /// followed by `./` or `x/../` (plain or escaped).
    fn spell(&mut self, plain: &str) -> String {
        let mut out = String::new();
        for (i, b) in plain.bytes().enumerate() {
            match (i, b, self.next(8)) {
                (0, _, _) => out.push('/'),
                (_, _, 0) => out.push_str(&format!("%{b:02x}")),
                (_, _, 1) => out.push_str(&format!("%{b:02X}")),
                (_, b'/', 2) => out.push_str("//"),
                (_, b'/', 3) => out.push_str("/./"),
                (_, b'/', 4) => out.push_str("/x/%2e%2E/"),
                (_, b'/', 5) => out.push_str("/%2E/"),
                _ => out.push(b as char),
            }
        }
        if self.next(4) == 0 {
            out.insert(0, '/');
        }
        out
    }
}

/// What the apps route on, as the test's own model: decode once, then resolve
/// `.`/`..` and merge slashes (posixpath's walk); `None` for a `..` above `/`.
fn model(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(decoded).unwrap();
    let mut stack = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            p => stack.push(p),
        }
    }
    let last = text.rsplit('/').next().unwrap_or("");
    let slash = if matches!(last, "" | "." | "..") && !stack.is_empty() {
        "/"
    } else {
        ""
    };
    Some(format!("/{}{slash}", stack.join("/")))
}

/// What the app's own router does with a spelling: asked of the same app behind a
/// ferricorn with no route and no mount, which passes every spelling on.
fn app_routes_to(name: &str, oracle: &Server, spelled: &str) -> &'static str {
    let (status, answer) = h1_request(oracle, "GET", spelled, b"");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let location = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .unwrap_or("");
    if body.starts_with(&format!("{name} private media")) {
        "private"
    } else if (name == "django" && (status == 200 || status == 302))
        || body.starts_with("flask admin login")
        || (status == 308 && location.contains("/admin/"))
    {
        // Django's admin answers its views or sends anyone to its login; Werkzeug
        // runs the view, or redirects to the merged-slash URL of it.
        "admin"
    } else {
        "elsewhere"
    }
}

/// Generated spellings meet the app's own router: whenever Django or Flask routes a
/// spelling into `/admin/` or `/media/private/`, the front holds it to the route's
/// body limit or answers 404 for the internal mount; and the front's decisions are
/// exactly those of the test's model path.
#[test]
fn generated_spellings_meet_the_route_and_mount_the_app_routes_them_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("private")).unwrap();
    std::fs::write(dir.path().join("private/doc.txt"), "the file\n").unwrap();
    let routes = format!(
        "[[route]]\nprefix = \"/admin/\"\nmax_body_size = 100\n\n\
         [[static]]\nurl = \"/media/private/\"\ndir = {:?}\ninternal = true\n",
        dir.path().join("private").display().to_string()
    );
    let (site, django, flask) = django_and_flask(dir.path(), &routes);
    let oracles = [
        site.serve_with(&["-w", "1"]),
        test_app("flask_app:app", &["-w", "1"]).start(),
    ];
    let body = vec![b'x'; 500];
    let mut gen = Spellings(0x9e37_79b9_7f4a_7c15);
    let plains = [
        "/admin/login/",
        "/admin/",
        "/adminx/login/",
        "/x/admin/login/",
        "/media/private/doc.txt",
        "/media/privatex/doc.txt",
        "/login/",
    ];
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..70 {
        let spelled = gen.spell(plains[round % plains.len()]);
        let model = model(&spelled);
        for ((name, server), oracle) in [("django", &django), ("flask", &flask)]
            .iter()
            .zip(&oracles)
        {
            let app = app_routes_to(name, oracle, &spelled);
            *seen.entry(app).or_insert(0) += 1;
            let (got, answer) = h1_request(server, "GET", &spelled, b"");
            let (posted, _) = h1_request(server, "POST", &spelled, &body);
            let Some(m) = &model else {
                assert_eq!((got, posted), (400, 400), "{spelled}: above the root");
                continue;
            };
            let internal = m.starts_with("/media/private/");
            let limited = m.starts_with("/admin/");
            assert_eq!(
                posted == 413,
                limited,
                "{name} {spelled} is {m}: POST {posted}"
            );
            assert_eq!(
                got == 404 && answer.ends_with("\r\n\r\n404 Not Found\n"),
                internal,
                "{name} {spelled} is {m}: {answer}"
            );
            match app {
                "admin" => assert!(limited, "{name} routes {spelled} into /admin/"),
                "private" => assert!(internal, "{name} routes {spelled} to private media"),
                _ => {}
            }
        }
    }
    assert!(
        seen.get("admin") > Some(&10) && seen.get("private") > Some(&5),
        "{seen:?}"
    );
}

/// `OPTIONS *` and CONNECT name no path, but a route for the whole server holds them:
/// they cannot be the way around a site-wide rate limit.
#[test]
fn a_whole_server_rate_limit_holds_requests_without_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        "[[route]]\nprefix = \"/\"\nrate = \"1/m\"\n",
        &[],
    );
    assert_eq!(h1_request(&server, "OPTIONS", "*", b"").0, 200);
    assert_eq!(h1_request(&server, "OPTIONS", "*", b"").0, 429);
    assert_eq!(
        h1_request(&server, "CONNECT", "example.com:443", b"").0,
        429
    );
    assert_eq!(h1_request(&server, "GET", "/pid", b"").0, 429);
}

#[test]
fn a_route_timeout_costs_only_its_request_not_the_other_threads() {
    // A (HTTP/2) passes its route's 1 s on the one worker while its other thread
    // runs B (HTTP/1, 3 s, under the global 30 s): A gets 504, B its 200.
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[route]]\nprefix = \"/wait\"\ntimeout = 1\n";
    let server = std::sync::Arc::new(serve(dir.path(), routes, &["-t", "30"]));
    let flag = dir.path().join("never");
    let (s, target) = (server.clone(), format!("/wait?for={}", flag.display()));
    let a = std::thread::spawn(move || h2_request(&s, "GET", &target, b""));
    let started = flag.with_extension("started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "A never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let b = client().get(server.url("/sleep?s=3")).send().unwrap();
    assert_eq!(b.status(), 200);
    assert_eq!(b.text().unwrap(), "slept");
    assert_eq!(a.join().unwrap().0, 504);
    server.wait_for_log(
        "killing the timed-out worker",
        std::time::Duration::from_secs(5),
    );
}
