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

/// The default source, X-Forwarded-For.
fn resolve(t: &TrustedProxies, h: &HeaderMap, c: &ConnInfo) -> Result<Client, ForwardError> {
    resolve_from("X-Forwarded-For", t, h, c)
}

fn resolve_from(
    header: &str,
    t: &TrustedProxies,
    h: &HeaderMap,
    c: &ConnInfo,
) -> Result<Client, ForwardError> {
    let real_ip = RealIp {
        trusted: t.clone(),
        header: header.parse().unwrap(),
    };
    real_ip.resolve(h, c)
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
fn forwarded_is_understood_when_it_is_the_source() {
    let t = trust("127.0.0.1,10.0.0.0/8");
    let c = conn("127.0.0.1:1");
    let fwd = |h: &HeaderMap| resolve_from("Forwarded", &t, h, &c).unwrap();
    let h = headers(&[
        ("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#),
        ("x-forwarded-for", "9.9.9.9"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-ssl", "on"),
    ]);
    assert_eq!(
        fwd(&h),
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
    let got = fwd(&h);
    assert_eq!((got.addr, got.scheme), (addr("192.0.2.60"), Scheme::Https));
    // unknown / obfuscated: no address from it; the trusted hop before is the best we know.
    for v in ["for=unknown, for=10.0.0.2", "for=_hidden, for=10.0.0.2"] {
        assert_eq!(
            fwd(&headers(&[("forwarded", v)])).addr,
            addr("10.0.0.2"),
            "{v}"
        );
    }
    assert_eq!(
        fwd(&headers(&[("forwarded", "for=unknown")])).addr,
        addr("127.0.0.1")
    );
    // A malformed element stops the walk before it.
    let h = headers(&[("forwarded", "for=1.2.3.4, for=[bad, for=10.0.0.3")]);
    assert_eq!(fwd(&h).addr, addr("10.0.0.3"));
    // The X-Forwarded-* fields are not read at all: not even their conflict is a 400.
    let h = headers(&[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-ssl", "off"),
        ("x-forwarded-for", "9.9.9.9"),
    ]);
    assert_eq!(fwd(&h), Client::peer(&c));
}

/// Issue 25: a client behind a trusted proxy that appends X-Forwarded-For and passes
/// other fields through picked its own address and scheme with `Forwarded`.
#[test]
fn only_the_configured_field_names_the_client() {
    let t = trust("127.0.0.1");
    let c = conn("127.0.0.1:1");
    let h = headers(&[
        ("forwarded", "for=198.51.100.77;proto=https"),
        ("x-forwarded-for", "203.0.113.5"),
        ("x-real-ip", "192.0.2.9"),
    ]);
    let got = resolve(&t, &h, &c).unwrap();
    assert_eq!((got.addr, got.scheme), (addr("203.0.113.5"), Scheme::Http));
    let got = resolve_from("Forwarded", &t, &h, &c).unwrap();
    assert_eq!(
        (got.addr, got.scheme),
        (addr("198.51.100.77"), Scheme::Https)
    );
    let got = resolve_from("x-real-ip", &t, &h, &c).unwrap();
    assert_eq!((got.addr, got.scheme), (addr("192.0.2.9"), Scheme::Http));
    // X-Real-IP takes its scheme where X-Forwarded-For does.
    let h2 = headers(&[("x-real-ip", "192.0.2.9"), ("x-forwarded-proto", "https")]);
    assert_eq!(
        resolve_from("X-Real-IP", &t, &h2, &c).unwrap().scheme,
        Scheme::Https
    );
    // Any field a proxy sets.
    let h3 = headers(&[
        ("cf-connecting-ip", "2001:db8::5"),
        ("x-forwarded-for", "1.1.1.1"),
    ]);
    assert_eq!(
        resolve_from("CF-Connecting-IP", &t, &h3, &c).unwrap().addr,
        addr("2001:db8::5")
    );
    // The PROXY protocol: the peer (the listener put the header's source there), no field.
    let pp = resolve_from("proxy_protocol", &trust("*"), &h, &c).unwrap();
    assert_eq!(pp, Client::peer(&c));
    let conflicting = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]);
    assert!(resolve_from("proxy_protocol", &t, &conflicting, &c).is_ok());

    // From an untrusted peer, whatever the source, nothing is believed.
    let stranger = conn("192.0.2.200:7");
    for source in [
        "X-Forwarded-For",
        "Forwarded",
        "X-Real-IP",
        "proxy_protocol",
    ] {
        let mut h = h.clone();
        h.append("x-forwarded-proto", "https".parse().unwrap());
        let got = resolve_from(source, &t, &h, &stranger).unwrap();
        assert_eq!(got, Client::peer(&stranger), "{source}");
        assert!(resolve_from(source, &t, &conflicting, &stranger).is_ok());
    }
}

/// The list walk, attacked: what a client writes comes before what its proxies append.
#[test]
fn a_list_is_walked_from_the_right_whatever_the_client_wrote_before() {
    let t = trust("127.0.0.1,10.0.0.0/8,2001:db8:ffff::/48");
    let c = conn("127.0.0.1:1");
    let got = |lines: &[&str]| {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(l.as_bytes()).unwrap(),
            );
        }
        resolve(&t, &h, &c).unwrap().addr
    };
    let real = addr("203.0.113.5");
    // The client's own X-Forwarded-For, and the proxy's append, in one line or two.
    assert_eq!(got(&["1.1.1.1, 203.0.113.5"]), real);
    assert_eq!(got(&["1.1.1.1", "203.0.113.5"]), real);
    assert_eq!(got(&["1.1.1.1, 2.2.2.2", "203.0.113.5, 10.0.0.7"]), real);
    // Empty items and blanks are skipped, as RFC 9110 lists; tabs too.
    assert_eq!(got(&["1.1.1.1,, 203.0.113.5 ,"]), real);
    assert_eq!(got(&[",", "203.0.113.5,\t,", ""]), real);
    // Garbage (a name, two addresses without a comma, a zone id, leading zeros, a
    // bad port) on the client's side stops nothing: the proxy's entry is read first.
    for junk in [
        "unknown",
        "1.1.1.1 2.2.2.2",
        "[fe80::1%eth0]",
        "01.1.1.1",
        "1.1.1.1:99999",
        "\"x\"",
    ] {
        assert_eq!(got(&[&format!("{junk}, 203.0.113.5")]), real, "{junk}");
    }
    // Bytes that are not ASCII on the client's part do not hide the proxy's entry.
    let mut h = HeaderMap::new();
    h.append(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"6.6.6.6\xff, 203.0.113.5").unwrap(),
    );
    assert_eq!(resolve(&t, &h, &c).unwrap().addr, real);
    let mut h = HeaderMap::new();
    h.append(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"\xfe\xff").unwrap(),
    );
    h.append("x-forwarded-for", "203.0.113.5".parse().unwrap());
    assert_eq!(resolve(&t, &h, &c).unwrap().addr, real);
    // Past a trusted hop, garbage stops the walk at that hop.
    assert_eq!(got(&["1.1.1.1, nonsense, 10.0.0.1"]), addr("10.0.0.1"));
    // Ports and IPv6 forms.
    let c2 = |v: &str| {
        let h = headers(&[("x-forwarded-for", v)]);
        let r = resolve(&t, &h, &c).unwrap();
        (r.addr, r.port)
    };
    assert_eq!(c2("203.0.113.5:4711"), (real, 4711));
    assert_eq!(c2("[2001:DB8::A]:443"), (addr("2001:db8::a"), 443));
    assert_eq!(c2("2001:DB8::A"), (addr("2001:db8::a"), 0));
    assert_eq!(c2("[2001:db8::a]"), (addr("2001:db8::a"), 0));
    assert_eq!(c2("::ffff:203.0.113.5"), (addr("::ffff:203.0.113.5"), 0));
    // A trusted IPv6 hop, and an IPv4-mapped trusted hop, are skipped.
    assert_eq!(c2("203.0.113.5, 2001:db8:ffff::1"), (real, 0));
    assert_eq!(c2("203.0.113.5, ::ffff:10.1.2.3"), (real, 0));
    // All trusted: the left-most.
    assert_eq!(c2("10.0.0.9, 10.0.0.1"), (addr("10.0.0.9"), 0));
}

/// The `Forwarded` walk, attacked the same way.
#[test]
fn forwarded_is_read_from_the_right_whatever_the_client_wrote_before() {
    let t = trust("127.0.0.1,10.0.0.0/8");
    let c = conn("127.0.0.1:1");
    let got = |lines: &[&[u8]]| {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("forwarded", http::HeaderValue::from_bytes(l).unwrap());
        }
        let r = resolve_from("Forwarded", &t, &h, &c).unwrap();
        (r.addr, r.scheme)
    };
    let real = (addr("203.0.113.5"), Scheme::Http);
    let appended = b"for=203.0.113.5;proto=http";
    for client in [
        &b"for=198.51.100.77;proto=https"[..],
        b"for=\"198.51.100.77",           // a quote never closed
        b"for=198.51.100.77;x=\"a,b\\\"", // an escaped quote, never closed
        b"for=\"_a,b\";proto=https",      // a comma inside quotes
        b"FOR=198.51.100.77;PROTO=HTTPS",
        b"for=198.51.100.77\xff",          // not UTF-8
        b"for=[::1%lo];proto=https",       // a zone id
        b"for=198.51.100.77;for=10.0.0.1", // a repeated parameter
        b"",
        b" , ,",
    ] {
        let one_line = [client, b", ".as_slice(), appended].concat();
        assert_eq!(
            got(&[&one_line]),
            real,
            "{:?}",
            String::from_utf8_lossy(&one_line)
        );
        if !client.is_empty() {
            assert_eq!(
                got(&[client, appended]),
                real,
                "{:?}",
                String::from_utf8_lossy(client)
            );
        }
    }
    // Quoted commas and escapes in the proxy's own element are read right.
    assert_eq!(
        got(&[br#"for="[2001:db8::1]:80";proto="https";by="a,\"b""#]),
        (addr("2001:db8::1"), Scheme::Https)
    );
    // Empty elements are skipped, as RFC 9110 lists.
    assert_eq!(got(&[b"for=203.0.113.5;proto=http, ,"]), real);
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
        let _ = resolve_from("Forwarded", &trust("*"), &h, &c);
    }

    /// Whatever bytes a client puts before it, in the same line or lines of its own,
    /// the element a trusted proxy appends names the client.
    #[test]
    fn what_the_trusted_proxy_appends_wins(
        junk in proptest::collection::vec(
            prop_oneof![
                near_miss().prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            0..3,
        ),
        real in any_ip(),
        same_line in any::<bool>(),
    ) {
        let t = trust("127.0.0.1");
        let c = conn("127.0.0.1:1");
        prop_assume!(!t.trusts(Some(real)));
        let bracketed = match real {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        for (name, appended) in [
            ("x-forwarded-for", real.to_string()),
            ("forwarded", format!("for={bracketed};proto=https")),
        ] {
            let mut h = HeaderMap::new();
            // What a field value may hold: no control bytes but tab.
            let lines: Vec<Vec<u8>> = junk
                .iter()
                .map(|j| {
                    j.iter()
                        .copied()
                        .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
                        .collect()
                })
                .collect();
            if same_line {
                let mut line = lines.concat();
                line.extend_from_slice(b", ");
                line.extend_from_slice(appended.as_bytes());
                h.append(name, http::HeaderValue::from_bytes(&line).unwrap());
            } else {
                for l in &lines {
                    if let Ok(v) = http::HeaderValue::from_bytes(l) {
                        h.append(name, v);
                    }
                }
                h.append(name, appended.parse().unwrap());
            }
            let source = if name == "forwarded" { "Forwarded" } else { "X-Forwarded-For" };
            let got = resolve_from(source, &t, &h, &c).unwrap();
            prop_assert_eq!(got.addr, Some(real), "{} {:?}", name, h);
        }
    }
}
