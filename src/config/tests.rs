use super::*;
use clap::Parser;

#[test]
fn binds_parse() {
    assert_eq!(
        parse_bind("0.0.0.0:80").unwrap(),
        BindAddr::Tcp("0.0.0.0:80".parse().unwrap())
    );
    assert_eq!(
        parse_bind("[::1]:8000").unwrap(),
        BindAddr::Tcp("[::1]:8000".parse().unwrap())
    );
    assert_eq!(
        parse_bind("unix:/tmp/x.sock").unwrap(),
        BindAddr::Unix("/tmp/x.sock".into())
    );
    assert!(parse_bind("nonsense").is_err());
    assert!(parse_bind("1.2.3.4:99999").is_err());
}

#[test]
fn gunicorn_limit_flags_set_the_limits() {
    let cli = Cli::parse_from([
        "ferricorn",
        "--static",
        "/s/=.",
        "--limit-request-line",
        "8190",
        "--limit-request-fields",
        "50",
        "--limit-request-field_size",
        "4096",
    ]);
    let s = Settings::merge(&cli, FileConfig::default()).unwrap();
    assert_eq!(s.limits.request_line, 8190);
    assert_eq!(s.limits.request_fields, 50);
    assert_eq!(s.limits.request_field_size, 4096);
}

#[test]
fn flags_override_the_file() {
    let f: FileConfig = toml::from_str("[workers]\ncount = 3\nthreads = 2\n").unwrap();
    let cli = Cli::parse_from(["ferricorn", "--static", "/s/=.", "-w", "5"]);
    let s = Settings::merge(&cli, f).unwrap();
    assert_eq!(s.workers.count, 5);
    assert_eq!(s.workers.threads, 2);
}

#[test]
fn look_ahead_defaults_and_its_bound() {
    let cli = Cli::parse_from(["ferricorn", "--static", "/s/=."]);
    let s = Settings::merge(&cli, FileConfig::default()).unwrap();
    assert_eq!(s.workers.look_ahead, 16);
    assert_eq!(s.workers.look_ahead_stall, Duration::from_millis(10));
    let f: FileConfig = toml::from_str("[workers]\nthreads = 24\nlook_ahead = 1000\n").unwrap();
    let err = Settings::merge(&cli, f).unwrap_err().to_string();
    assert!(err.contains("threads + look_ahead"), "{err}");
}

#[test]
fn trusted_proxies_and_proxy_protocol() {
    let f: FileConfig = toml::from_str(
        "[server]\nproxy_protocol = true\n[proxy]\nforwarded_allow_ips = \"10.0.0.0/8\"\n",
    )
    .unwrap();
    let cli = Cli::parse_from([
        "ferricorn",
        "--static",
        "/s/=.",
        "--forwarded-allow-ips",
        "*",
    ]);
    let s = Settings::merge(&cli, f).unwrap();
    assert!(s.proxy_protocol);
    assert_eq!(s.forwarded_allow_ips.to_string(), "*");
    let s = Settings::merge(
        &Cli::parse_from(["ferricorn", "--static", "/s/=."]),
        FileConfig::default(),
    )
    .unwrap();
    assert!(!s.proxy_protocol);
    assert_eq!(s.forwarded_allow_ips.to_string(), "127.0.0.1,::1");
    let cli = Cli::parse_from([
        "ferricorn",
        "--static",
        "/s/=.",
        "--forwarded-allow-ips",
        "10.0.0.1/8",
    ]);
    let err = Settings::merge(&cli, FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("did you mean 10.0.0.0/8"), "{err}");
}

#[test]
fn real_ip_header_names_one_source() {
    let merge = |toml: &str, flags: &[&str]| {
        let mut args = vec!["ferricorn", "--static", "/s/=."];
        args.extend_from_slice(flags);
        Settings::merge(&Cli::parse_from(args), toml::from_str(toml).unwrap())
    };
    let s = merge("", &[]).unwrap();
    assert_eq!(s.real_ip_header.to_string(), "X-Forwarded-For");
    let s = merge("[proxy]\nreal_ip_header = \"forwarded\"\n", &[]).unwrap();
    assert_eq!(s.real_ip_header, RealIpHeader::Forwarded);
    let s = merge(
        "[proxy]\nreal_ip_header = \"Forwarded\"\n",
        &["--real-ip-header", "X-Real-IP"],
    )
    .unwrap();
    assert_eq!(s.real_ip_header.to_string(), "X-Real-IP");
    let s = merge(
        "[server]\nproxy_protocol = true\n",
        &["--real-ip-header", "proxy_protocol"],
    )
    .unwrap();
    assert_eq!(s.real_ip_header, RealIpHeader::ProxyProtocol);
    // As nginx's `real_ip_header proxy_protocol` needs `listen ... proxy_protocol`.
    let err = merge("", &["--real-ip-header", "proxy_protocol"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("proxy_protocol = true"), "{err}");
    let err = merge("", &["--real-ip-header", "X Forwarded"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("real_ip_header \"X Forwarded\""), "{err}");
}

#[test]
fn a_route_keys_ipv6_clients_by_their_subnet() {
    let routes = |toml: &str| {
        let f: FileConfig = toml::from_str(toml).unwrap();
        Settings::merge(&Cli::parse_from(["ferricorn", "--static", "/s/=."]), f)
    };
    let s = routes("[[route]]\nprefix = \"/a\"\nrate = \"1/s\"\n").unwrap();
    assert_eq!(s.routes[0].rate.unwrap().ipv6_subnet, 64);
    let s = routes("[[route]]\nprefix = \"/a\"\nrate = \"1/s\"\nipv6_subnet = 128\n").unwrap();
    assert_eq!(s.routes[0].rate.unwrap().ipv6_subnet, 128);
    for bad in ["0", "129"] {
        let err = routes(&format!(
            "[[route]]\nprefix = \"/a\"\nrate = \"1/s\"\nipv6_subnet = {bad}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("from 1 to 128"), "{err}");
    }
    let err = routes("[[route]]\nprefix = \"/a\"\nipv6_subnet = 48\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("need a rate"), "{err}");
}

#[test]
fn check_config_output_is_a_valid_config_with_every_section() {
    let f: FileConfig = toml::from_str(
        "app = \"a:b\"\n[tls]\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\n[admin]\nbind = \"127.0.0.1:9000\"\n[[static]]\nurl = \"/s/\"\ndir = \".\"\n",
    )
    .unwrap();
    let s = Settings::merge(&Cli::parse_from(["ferricorn", "--static", "/s/=."]), f).unwrap();
    let text = s.describe();
    // What --check-config prints is itself a config `-c` accepts.
    let back: FileConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Settings::merge(&Cli::parse_from(["ferricorn", "--static", "/s/=."]), back).unwrap();
    for section in [
        "[server]",
        "[python]",
        "[workers]",
        "[[static]]",
        "[static_cache]",
        "[limits]",
        "[proxy]",
        "[tls]",
        "[compression]",
        "[log]",
        "[admin]",
        "[reload]",
    ] {
        assert!(text.contains(section), "{section} missing from\n{text}");
    }
}

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            error::read_file(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen > 0, "no configs in {}", dir.display());
}

// ---- property tests (issue 5 item 10): any text in, Settings or a located error out.

use proptest::prelude::*;

fn load_text(text: &str) -> Result<Settings, ConfigError> {
    Settings::merge(&Cli::default(), error::parse(text, "p.toml")?)
}

/// A parse error must point inside the text: a line that exists, a column at most
/// one past that line's last character.
fn check_location(text: &str, result: Result<Settings, ConfigError>) -> Result<(), TestCaseError> {
    if let Err(ConfigError::Parse { line, column, .. }) = result {
        let lines: Vec<&str> = text.split('\n').collect();
        prop_assert!(
            line >= 1 && line <= lines.len(),
            "line {line} of {}",
            lines.len()
        );
        let width = lines[line - 1].chars().count();
        prop_assert!(
            column >= 1 && column <= width + 1,
            "column {column} of {width}"
        );
    }
    Ok(())
}

/// Keys and sections of the real schema with values of every type, so most inputs
/// get past TOML syntax into the typed and validated layers.
fn near_valid() -> impl Strategy<Value = String> {
    const SECTIONS: &[&str] = &[
        "",
        "[server]",
        "[python]",
        "[workers]",
        "[[static]]",
        "[static_cache]",
        "[limits]",
        "[proxy]",
        "[log]",
        "[reload]",
        "[bogus]",
    ];
    const KEYS: &[&str] = &[
        "app",
        "bind",
        "keep_alive",
        "graceful_timeout",
        "front_threads",
        "pid",
        "proxy_protocol",
        "count",
        "threads",
        "timeout",
        "max_requests",
        "backlog",
        "queue_timeout",
        "look_ahead",
        "url",
        "dir",
        "cache_control",
        "index",
        "precompressed",
        "max_bytes",
        "revalidate_ms",
        "max_body_size",
        "request_line",
        "request_fields",
        "forwarded_allow_ips",
        "real_ip_header",
        "level",
        "enabled",
        "extra_files",
        "bogus",
    ];
    const VALUES: &[&str] = &[
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "1.5",
        "true",
        "\"\"",
        "\"x:y\"",
        "\"/\"",
        "\"/tmp\"",
        "\"*\"",
        "\"10.0.0.1/8\"",
        "\"::1\"",
        "\"127.0.0.1:0\"",
        "\"unix:\"",
        "\"debug\"",
        "\"\\u00e9\"",
        "[]",
        "[\"a\"]",
        "[1, \"a\"]",
        "{}",
        "\"\\n\"",
        "'''é\n'''",
        "1979-05-27",
        "\"é",
    ];
    let line = prop_oneof![
        1 => proptest::sample::select(SECTIONS).prop_map(String::from),
        4 => (proptest::sample::select(KEYS), proptest::sample::select(VALUES))
            .prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    proptest::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

fn any_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..120).prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_loads_or_fails_with_a_location(text in any_text()) {
        let result = load_text(&text);
        check_location(&text, result)?;
    }

    #[test]
    fn near_valid_config_loads_or_fails_with_a_location(text in near_valid()) {
        let result = load_text(&text);
        check_location(&text, result)?;
    }
}

#[test]
fn a_route_is_sticky_from_the_file_or_from_the_flag() {
    let f: FileConfig = toml::from_str(
        "app = \"a:b\"\n[[route]]\nprefix = \"/socket.io/\"\nrate = \"5/s\"\n\
         [[route]]\nprefix = \"/x/\"\nsticky = true\n[[route]]\nprefix = \"/y/\"\n",
    )
    .unwrap();
    let cli = Cli::parse_from(["ferricorn", "--sticky", "/socket.io/", "--sticky", "/live/"]);
    let s = Settings::merge(&cli, f).unwrap();
    let route = |p: &str| {
        let r = s.routes.iter().find(|r| r.prefix == p).unwrap();
        (r.sticky, r.rate.is_some())
    };
    assert_eq!(
        route("/socket.io/"),
        (true, true),
        "the file's route, made sticky"
    );
    assert_eq!(route("/x/"), (true, false));
    assert_eq!(route("/y/"), (crate::defaults::ROUTE_STICKY, false));
    assert_eq!(route("/live/"), (true, false), "a route of its own");
    assert!(toml::from_str::<FileConfig>("[[route]]\nprefix = \"/\"\nsticky = 1\n").is_err());
}

/// Prefixes are matched against the request's normal path, so they are kept in that
/// form: decoded, slashes merged, no dot segments.
#[test]
fn prefixes_are_kept_in_their_normal_form() {
    let s = load_text(
        "app = \"a:b\"\n[[route]]\nprefix = \"/caf%C3%A9//x/./\"\n\
         [[static]]\nurl = \"//m%2Fa/b/..\"\ndir = \".\"\n",
    )
    .unwrap();
    assert_eq!(s.routes[0].prefix, "/café/x/");
    assert_eq!(s.statics[0].url, "/m/a/");
    for bad in [
        "[[route]]\nprefix = \"/a/../..\"\n",
        "[[route]]\nprefix = \"/a%00\"\n",
        "[[route]]\nprefix = \"/a%FF\"\n",
        "[[route]]\nprefix = \"/a/\"\n[[route]]\nprefix = \"//a/\"\n",
    ] {
        let err = load_text(&format!("app = \"a:b\"\n{bad}")).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{bad}: {err}");
    }
}

#[test]
fn spool_caps_from_flags_and_a_body_larger_than_the_byte_cap_is_refused() {
    let cli = Cli::parse_from([
        "ferricorn",
        "--static",
        "/s/=.",
        "--body-spool-files",
        "8",
        "--body-spool-bytes",
        "200000000",
    ]);
    let s = Settings::merge(&cli, FileConfig::default()).unwrap();
    assert_eq!(s.limits.body_spool_files, 8);
    assert_eq!(s.limits.body_spool_bytes, 200_000_000);
    assert_eq!(s.limits.body_spool_wait, Duration::from_secs(10));
    // A route's larger body could never be spooled: said at start, not as 503s.
    let f: FileConfig =
        toml::from_str("[[route]]\nprefix = \"/up/\"\nmax_body_size = \"1GiB\"\n").unwrap();
    let err = Settings::merge(&cli, f).unwrap_err().to_string();
    assert!(err.contains("body_spool_bytes (200000000)"), "{err}");
}

#[test]
fn asgi_worker_classes_and_keys() {
    let merge = |args: &[&str], toml_text: &str| {
        let mut argv = vec!["ferricorn", "--static", "/s/=."];
        argv.extend_from_slice(args);
        let f: FileConfig = toml::from_str(toml_text).unwrap();
        Settings::merge(&Cli::parse_from(argv), f)
    };
    let s = merge(&[], "").unwrap();
    assert_eq!(s.workers.interface, Interface::Wsgi);
    assert_eq!(s.workers.capacity(), s.workers.threads);
    for class in [
        "asgi",
        "uvicorn.workers.UvicornWorker",
        "uvicorn_worker.UvicornWorker",
        "uvicorn.workers.UvicornH11Worker",
    ] {
        let s = merge(&["-k", class], "").unwrap();
        assert_eq!(s.workers.interface, Interface::Asgi, "{class}");
        assert_eq!(s.workers.capacity(), 1000);
    }
    // -k overrides the file, both ways.
    let s = merge(&["-k", "gthread"], "[workers]\ninterface = \"asgi\"\n").unwrap();
    assert_eq!(s.workers.interface, Interface::Wsgi);
    let s = merge(
        &[
            "--worker-connections",
            "50",
            "--asgi-loop",
            "uvloop",
            "--root-path",
            "/api",
        ],
        "[workers]\ninterface = \"asgi\"\nasgi_lifespan = \"off\"\n",
    )
    .unwrap();
    assert_eq!(s.workers.capacity(), 50);
    assert_eq!(s.workers.asgi_loop, "uvloop");
    assert_eq!(s.workers.asgi_lifespan, "off");
    assert_eq!(s.python.root_path, "/api");
    for (args, toml_text, needle) in [
        (&[][..], "[workers]\ninterface = \"rsgi\"\n", "interface"),
        (&["--asgi-loop", "trio"][..], "", "asgi_loop"),
        (&["--asgi-lifespan", "yes"][..], "", "asgi_lifespan"),
        (&["--worker-connections", "0"][..], "", "worker_connections"),
        (
            &["--worker-connections", "5000"][..],
            "",
            "worker_connections",
        ),
        (&["--root-path", "api"][..], "", "root_path"),
        (&["--root-path", "/api/"][..], "", "root_path"),
        (&["-k", "gevent"][..], "", "-k gevent"),
    ] {
        let err = merge(args, toml_text).unwrap_err().to_string();
        assert!(err.contains(needle), "{args:?} {toml_text}: {err}");
    }
}
