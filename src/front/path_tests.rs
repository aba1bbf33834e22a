//! The decisions the front takes on a path (mount, `internal`, `[[route]]`), for
//! generated spellings of it: each must be the decision for the path the apps route
//! on (Django's and Werkzeug's decoded `PATH_INFO`, written plainly).

use super::limits::RouteLimits;
use super::request_path;
use crate::config::{FileCache, RouteOverride, StaticMount};
use crate::normal_path::NormalPath;
use crate::router::{self, Route};
use crate::static_files::StaticFiles;
use proptest::prelude::*;
use std::time::Duration;

fn mount(url: &str, dir: &std::path::Path, internal: bool) -> StaticMount {
    StaticMount {
        url: url.into(),
        dir: dir.to_owned(),
        cache_control: None,
        index: "index.html".into(),
        precompressed: false,
        fallthrough: false,
        dotfiles: false,
        internal,
        immutable: None,
        headers: Vec::new(),
    }
}

fn route(prefix: &str, max_body_size: u64) -> RouteOverride {
    RouteOverride {
        prefix: prefix.into(),
        timeout: None,
        max_body_size: Some(max_body_size),
        rate: None,
        sticky: false,
    }
}

struct Decider {
    _dir: tempfile::TempDir,
    statics: StaticFiles,
    limits: RouteLimits,
}

impl Decider {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let statics = StaticFiles::new(
            &[
                mount("/media/", dir.path(), false),
                mount("/media/private/", dir.path(), true),
                mount("/static/", dir.path(), false),
            ],
            &FileCache {
                max_bytes: 1 << 20,
                max_entries: 10,
                max_file_size: 1024,
                revalidate: Duration::from_secs(1),
            },
            false,
        )
        .unwrap();
        // Longest first, as `Settings::routes` are.
        let limits = RouteLimits::new(&[
            route("/admin/login/", 3),
            route("/admin/", 2),
            route("/", 1),
        ]);
        Decider {
            _dir: dir,
            statics,
            limits,
        }
    }

    /// The mount decision and the `[[route]]` chosen (by its body limit) for a
    /// request-target as hyper parses it, or the 400.
    fn decide(&self, target: &[u8]) -> Result<(Route, Option<u64>), ()> {
        let uri = http::Uri::try_from(target).map_err(|_| ())?;
        let req = http::Request::get(uri).body(()).unwrap();
        let path = request_path(&req).map_err(|_| ())?.expect("a path");
        let chosen = self
            .limits
            .check(&path, || unreachable!("no rate here"))
            .unwrap()
            .and_then(|o| o.max_body_size);
        Ok((router::route(&self.statics, true, &path), chosen))
    }
}

/// A plain path (what the apps route on) from segments the mounts and routes use.
fn plain_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("media"),
        Just("private"),
        Just("static"),
        Just("admin"),
        Just("login"),
        Just("doc.txt"),
        Just("x"),
    ];
    (proptest::collection::vec(segment, 0..5), any::<bool>())
        .prop_map(|(segs, slash)| format!("/{}{}", segs.join("/"), if slash { "/" } else { "" }))
        .prop_map(|p| p.replace("//", "/"))
}

/// How a client may respell one byte of the path, or what it may insert after a '/'.
#[derive(Debug, Clone, Copy)]
enum Respell {
    Plain,
    Lower,
    Upper,
    /// A '/' becomes `//`, `/./` or `/x/../` (only after a '/').
    Slashes,
    Dot,
    DotDot,
}

fn respell() -> impl Strategy<Value = Vec<Respell>> {
    let one = prop_oneof![
        4 => Just(Respell::Plain),
        1 => Just(Respell::Lower),
        1 => Just(Respell::Upper),
        1 => Just(Respell::Slashes),
        1 => Just(Respell::Dot),
        1 => Just(Respell::DotDot),
    ];
    proptest::collection::vec(one, 40)
}

fn spell(plain: &str, how: &[Respell]) -> Vec<u8> {
    let mut out = b"/".to_vec();
    for (i, b) in plain.bytes().enumerate().skip(1) {
        match how[i % how.len()] {
            Respell::Plain => out.push(b),
            Respell::Lower => out.extend(format!("%{b:02x}").bytes()),
            Respell::Upper => out.extend(format!("%{b:02X}").bytes()),
            Respell::Slashes if b == b'/' => out.extend(b"//"),
            Respell::Dot if b == b'/' => out.extend(b"/./"),
            Respell::DotDot if b == b'/' => out.extend(b"/x/%2E%2e/"),
            _ => out.push(b),
        }
        // `/./` and `/x/../` after the leading slash too.
        if i == 1 && matches!(how[0], Respell::Dot) {
            out.splice(1..1, b"./".iter().copied());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_spelling_gets_the_decisions_of_the_path_the_apps_route_on(
        plain in plain_path(),
        how in respell(),
    ) {
        let d = Decider::new();
        let spelled = spell(&plain, &how);
        let want = d.decide(plain.as_bytes()).unwrap();
        prop_assert_eq!(
            d.decide(&spelled),
            Ok(want),
            "{} spelled {}",
            plain,
            String::from_utf8_lossy(&spelled)
        );
        // Absolute-form reaches the same decisions.
        let mut absolute = b"http://h".to_vec();
        absolute.extend_from_slice(&spelled);
        prop_assert_eq!(d.decide(&absolute), Ok(want));
    }
}

#[test]
fn the_internal_mount_and_the_routes_for_the_spellings_of_the_issue() {
    let d = Decider::new();
    for target in [
        "/media/private/doc.txt",
        "/media//private/doc.txt",
        "/media/%70rivate/doc.txt",
        "/media%2Fprivate/doc.txt",
        "/media%2fprivate/doc.txt",
        "/media/./private/doc.txt",
        "/media/x/../private/doc.txt",
        "/%6d%65dia/%70rivate/doc.txt",
        "http://h/media//private/x",
        "//media/private/",
        "/media/private",
    ] {
        let (route, _) = d.decide(target.as_bytes()).unwrap();
        assert_eq!(route, Route::NotFound, "{target}");
    }
    for target in [
        "/admin/login/",
        "/%61dmin/login/",
        "/admin%2Flogin/",
        "//admin/login/",
    ] {
        assert_eq!(
            d.decide(target.as_bytes()),
            Ok((Route::App, Some(3))),
            "{target}"
        );
    }
    assert_eq!(d.decide(b"/.."), Err(()));
    assert_eq!(d.decide(b"/media/../../etc/passwd"), Err(()));
    assert_eq!(d.decide(b"/a%00"), Err(()));
}

#[test]
fn asterisk_and_authority_name_no_path() {
    for target in ["*", "example.com:443"] {
        let req = http::Request::builder()
            .method(if target == "*" { "OPTIONS" } else { "CONNECT" })
            .uri(target)
            .body(())
            .unwrap();
        assert_eq!(request_path(&req), Ok(None), "{target}");
    }
    let p = NormalPath::parse(b"/").unwrap();
    let req = http::Request::get("http://h").body(()).unwrap();
    assert_eq!(request_path(&req), Ok(Some(p)));
}
