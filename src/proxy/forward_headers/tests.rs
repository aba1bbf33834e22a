//! Unit tests of the trust rules, and property tests of the parsers (issue 5 item 10):
//! arbitrary input never panics, generated valid `Forwarded` lists parse back.

use super::*;
use proptest::prelude::*;
use std::net::SocketAddr;

fn conn(peer: &str) -> ConnInfo {
    ConnInfo {
        peer: Some(peer.parse().unwrap()),
        local: None,
        scheme: Scheme::Http,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().unwrap());
    }
    h
}

fn trust(s: &str) -> TrustedProxies {
    s.parse().unwrap()
}

fn addr(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn x_forwarded_for_takes_the_right_most_untrusted_address() {
    let t = trust("127.0.0.1,10.0.0.0/8");
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.1")]);
    let c = resolve(&t, &h, &conn("127.0.0.1:5000")).unwrap();
    assert_eq!((c.addr, c.port), (addr("1.2.3.4"), 0));
    // All trusted: the left-most.
    let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.1")]);
    assert_eq!(
        resolve(&t, &h, &conn("127.0.0.1:5000")).unwrap().addr,
        addr("10.0.0.9")
    );
    // Garbage stops the walk: the last address seen before it.
    let h = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.1")]);
    assert_eq!(
        resolve(&t, &h, &conn("127.0.0.1:5000")).unwrap().addr,
        addr("10.0.0.1")
    );
    // Split over two lines: one list.
    let h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-for", "10.0.0.1"),
    ]);
    assert_eq!(
        resolve(&t, &h, &conn("127.0.0.1:5000")).unwrap().addr,
        addr("1.2.3.4")
    );
}

#[test]
fn untrusted_peers_are_not_believed() {
    let t = trust("10.9.9.9");
    let h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-ssl", "off"),
        ("forwarded", "for=1.2.3.4;proto=https"),
    ]);
    let c = resolve(&t, &h, &conn("127.0.0.1:5000")).unwrap();
    assert_eq!(
        c,
        Client {
            addr: addr("127.0.0.1"),
            port: 5000,
            scheme: Scheme::Http
        }
    );
}

#[test]
fn scheme_headers_follow_gunicorn() {
    let t = TrustedProxies::default();
    let c = conn("127.0.0.1:1");
    let scheme = |pairs: &[(&'static str, &str)]| resolve(&t, &headers(pairs), &c);
    assert_eq!(
        scheme(&[("x-forwarded-proto", "https")]).unwrap().scheme,
        Scheme::Https
    );
    assert_eq!(
        scheme(&[("x-forwarded-ssl", "on")]).unwrap().scheme,
        Scheme::Https
    );
    assert_eq!(
        scheme(&[("x-forwarded-protocol", "ssl")]).unwrap().scheme,
        Scheme::Https
    );
    assert_eq!(
        scheme(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "on")])
            .unwrap()
            .scheme,
        Scheme::Https
    );
    // A trusted proxy may also say http on a TLS connection.
    let tls = ConnInfo {
        scheme: Scheme::Https,
        ..c.clone()
    };
    let h = headers(&[("x-forwarded-proto", "http")]);
    assert_eq!(resolve(&t, &h, &tls).unwrap().scheme, Scheme::Http);
    assert_eq!(
        scheme(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]),
        Err(ForwardError::ConflictingScheme)
    );
    assert_eq!(
        scheme(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http")
        ]),
        Err(ForwardError::ConflictingScheme)
    );
}

#[test]
fn forwarded_is_preferred_and_understood() {
    let t = trust("127.0.0.1,10.0.0.0/8");
    let c = conn("127.0.0.1:1");
    let h = headers(&[
        ("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#),
        ("x-forwarded-for", "9.9.9.9"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-ssl", "on"),
    ]);
    let got = resolve(&t, &h, &c).unwrap();
    assert_eq!(
        got,
        Client {
            addr: addr("2001:db8::1"),
            port: 4711,
            scheme: Scheme::Https
        }
    );
    // The walk: the proto of the element that names the client.
    let h = headers(&[(
        "forwarded",
        "for=192.0.2.60;proto=https, For=10.0.0.2;proto=http",
    )]);
    let got = resolve(&t, &h, &c).unwrap();
    assert_eq!((got.addr, got.scheme), (addr("192.0.2.60"), Scheme::Https));
    // unknown / obfuscated: no address from it; the trusted hop before is the best we know.
    for v in ["for=unknown, for=10.0.0.2", "for=_hidden, for=10.0.0.2"] {
        let got = resolve(&t, &headers(&[("forwarded", v)]), &c).unwrap();
        assert_eq!(got.addr, addr("10.0.0.2"), "{v}");
    }
    let got = resolve(&t, &headers(&[("forwarded", "for=unknown")]), &c).unwrap();
    assert_eq!(got.addr, addr("127.0.0.1"));
    // A malformed element stops the walk before it.
    let got = resolve(
        &t,
        &headers(&[("forwarded", "for=1.2.3.4, for=[bad, for=10.0.0.3")]),
        &c,
    )
    .unwrap();
    assert_eq!(got.addr, addr("10.0.0.3"));
}

#[test]
fn forwarded_syntax() {
    let p = parse_forwarded(r#"for="_gazonk", For="[2001:db8:cafe::17]:4711""#);
    assert_eq!(
        p,
        vec![
            Some(Element {
                node: Some(Node::Obfuscated),
                proto: None
            }),
            Some(Element {
                node: Some(Node::Ip(addr("2001:db8:cafe::17").unwrap(), Some(4711))),
                proto: None
            }),
        ]
    );
    let p = parse_forwarded("for=192.0.2.43;proto=http;by=203.0.113.43");
    assert_eq!(
        p,
        vec![Some(Element {
            node: Some(Node::Ip(addr("192.0.2.43").unwrap(), None)),
            proto: Some("http".into())
        })]
    );
    assert_eq!(parse_forwarded("for=1.2.3.4;for=5.6.7.8"), vec![None]);
    assert_eq!(parse_forwarded(r#"for="1.2.3.4"#), vec![None]);
    assert_eq!(parse_forwarded("for=1.2.3.4:99999"), vec![None]);
    assert_eq!(
        parse_forwarded(r#"proto="ht\"tp""#),
        vec![Some(Element {
            node: None,
            proto: Some("ht\"tp".into())
        })]
    );
}

// ---- property tests ----------------------------------------------------------------

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn any_element() -> impl Strategy<Value = Element> {
    let node = prop_oneof![
        3 => (any_ip(), proptest::option::of(any::<u16>())).prop_map(|(ip, p)| Node::Ip(ip, p)),
        1 => Just(Node::Unknown),
        1 => Just(Node::Obfuscated),
    ];
    let proto = proptest::option::of(prop_oneof![Just("http"), Just("https"), Just("wss")]);
    (proptest::option::of(node), proto).prop_map(|(node, proto)| Element {
        node,
        proto: proto.map(String::from),
    })
}

/// How a proxy writes an element (RFC 7239 §4 and §6).
fn render(e: &Element) -> String {
    let mut pairs = Vec::new();
    if let Some(node) = &e.node {
        pairs.push(match node {
            Node::Ip(IpAddr::V4(ip), None) => format!("for={ip}"),
            Node::Ip(ip, Some(port)) => format!("for=\"{}\"", SocketAddr::new(*ip, *port)),
            Node::Ip(IpAddr::V6(ip), None) => format!("for=\"[{ip}]\""),
            Node::Unknown => "for=unknown".into(),
            Node::Obfuscated => "for=_hidden".into(),
        });
    }
    if let Some(proto) = &e.proto {
        pairs.push(format!("proto={proto}"));
    }
    pairs.join(";")
}

/// Any characters (cheaper to generate than a `\PC*` regex).
fn any_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..80).prop_map(|c| c.into_iter().collect())
}

/// The pieces of valid `Forwarded` values, in any order: mostly almost-valid input.
fn near_miss() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        " ",
        ";",
        ",",
        "=",
        "\"",
        "\\",
        "[",
        "]",
        ":",
        "_",
        "a",
        "1",
        ".",
        "for",
        "proto",
        "https",
        "unknown",
        "::",
        "2001:db8::1",
        "1.2.3.4",
        "65535",
        "99999",
    ];
    proptest::collection::vec(proptest::sample::select(PIECES), 0..40).prop_map(|p| p.concat())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn forwarded_never_panics(s in any_text()) {
        let _ = parse_forwarded(&s);
    }

    #[test]
    fn forwarded_never_panics_on_near_misses(s in near_miss()) {
        let _ = parse_forwarded(&s);
    }

    #[test]
    fn forwarded_lists_round_trip(list in proptest::collection::vec(any_element(), 1..6)) {
        let text = list.iter().map(render).collect::<Vec<_>>().join(", ");
        let parsed = parse_forwarded(&text);
        let expected: Vec<Option<Element>> = list.into_iter().map(Some).collect();
        prop_assert_eq!(parsed, expected, "{}", text);
    }

    #[test]
    fn resolve_never_panics(
        fwd in proptest::option::of(prop_oneof![any_text(), near_miss()]),
        xff in proptest::option::of("[0-9a-f:.,\\[\\] ]{0,60}"),
        peer in any_ip(),
    ) {
        let mut h = HeaderMap::new();
        if let Some(v) = fwd.as_deref().and_then(|v| v.parse().ok()) {
            h.insert("forwarded", v);
        }
        if let Some(v) = xff.as_deref().and_then(|v| v.parse().ok()) {
            h.insert("x-forwarded-for", v);
        }
        let c = ConnInfo { peer: Some(SocketAddr::new(peer, 1)), local: None, scheme: Scheme::Http };
        let _ = resolve(&trust("*"), &h, &c);
    }
}
