//! `[[route]]` overrides by URL prefix: a rate limit per client address (429 with
//! Retry-After, before any worker), and the worker timeout and body size limit of
//! the requests under the prefix; the longest prefix wins, and --check-config shows
//! them.

mod common;

use common::{check_config_toml, client, test_app, Server};
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
