//! The corpus's PROXY headers, the spec's edge cases, and property tests (issue 5
//! item 10): arbitrary bytes never panic, generated headers parse back to their
//! addresses whatever follows them and however they are split.

use super::*;
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn done(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Ok(Parsed::Done(h, n)) => (h, n),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A v2 PROXY header for a TCP connection from `src` to `dst` (same family), with
/// `tlv` bytes after the addresses.
fn v2(src: SocketAddr, dst: SocketAddr, tlv: &[u8]) -> Vec<u8> {
    let mut addrs = Vec::new();
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addrs.extend(s.octets());
            addrs.extend(d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            addrs.extend(s.octets());
            addrs.extend(d.octets());
            0x21
        }
        _ => panic!("mixed families"),
    };
    addrs.extend(src.port().to_be_bytes());
    addrs.extend(dst.port().to_be_bytes());
    addrs.extend(tlv);
    let mut out = V2_SIGNATURE.to_vec();
    out.extend([0x21, family]);
    out.extend((addrs.len() as u16).to_be_bytes());
    out.extend(addrs);
    out
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

#[test]
fn corpus_headers() {
    let raw = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.0\r\n\r\n";
    assert_eq!(
        done(raw),
        (
            ProxyHeader::Proxied {
                src: sa("192.168.0.1:56324"),
                dst: sa("192.168.0.11:443")
            },
            47
        )
    );
    let pp_04 = b"\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x0c\xc0\xa8\x01\n\xc0\xa8\x01\x0109\x01\xbbGET";
    assert_eq!(
        done(pp_04),
        (
            ProxyHeader::Proxied {
                src: sa("192.168.1.10:12345"),
                dst: sa("192.168.1.1:443")
            },
            28
        )
    );
    for bad in [
        &b"PROXY TCP4 192.168.0.1 192.16...\r\n"[..],
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n",
        b"PROXY TCP4 not-an-ip 192.168.0.11 56324 443\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn v1_edge_cases() {
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
    assert_eq!(
        done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX").0,
        ProxyHeader::Local
    );
    assert_eq!(
        done(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n").0,
        ProxyHeader::Proxied {
            src: sa("[2001:db8::1]:1"),
            dst: sa("[2001:db8::2]:65535")
        }
    );
    for bad in [
        &b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"[..],
        b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
        b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"GET / HTTP/1.1\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse(b"PRO").unwrap(), Parsed::Incomplete);
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2").unwrap(),
        Parsed::Incomplete
    );
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100]].concat();
    assert!(matches!(parse(&long), Err(ProxyError::BadV1(_))));
}

#[test]
fn v2_edge_cases() {
    let mut local = V2_SIGNATURE.to_vec();
    local.extend([0x20, 0x00, 0x00, 0x00]);
    assert_eq!(done(&local), (ProxyHeader::Local, 16));
    let with_tlv = v2(
        sa("10.0.0.1:1"),
        sa("10.0.0.2:2"),
        &[0x03, 0x00, 0x04, 1, 2, 3, 4],
    );
    assert_eq!(done(&with_tlv).1, with_tlv.len());
    let mut wrong_version = with_tlv.clone();
    wrong_version[12] = 0x11;
    assert!(parse(&wrong_version).is_err());
    let mut udp = with_tlv.clone();
    udp[13] = 0x12;
    assert!(parse(&udp).is_err());
    let mut short = with_tlv.clone();
    short[15] = 4; // declares 4 bytes: too few for two IPv4 addresses and ports
    assert!(parse(&short).is_err());
    let mut huge = with_tlv.clone();
    huge[14] = 0xff;
    assert!(parse(&huge).is_err());
    assert_eq!(parse(&with_tlv[..20]).unwrap(), Parsed::Incomplete);
    assert_eq!(parse(&with_tlv[..5]).unwrap(), Parsed::Incomplete);
}

#[tokio::test]
async fn read_header_keeps_what_follows() {
    let mut bytes = v1(sa("1.2.3.4:5"), sa("5.6.7.8:80"));
    bytes.extend(b"GET / HTTP/1.1\r\n\r\n");
    let (mut client, mut server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // Byte by byte: the reader must not need the header in one read.
        for b in bytes {
            client.write_all(&[b]).await.unwrap();
        }
        client
    });
    let (header, rest) = read_header(&mut server).await.unwrap();
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            src: sa("1.2.3.4:5"),
            dst: sa("5.6.7.8:80")
        }
    );
    let _client = writer.await.unwrap();
    let mut io = Prefixed::new(rest, server);
    let mut got = vec![0; 18];
    io.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
}

// ---- property tests ----------------------------------------------------------------

fn any_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q)
            )),
    ]
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
    fn never_panics_on_bytes(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&buf);
    }

    #[test]
    fn never_panics_on_near_misses(
        v2_head in proptest::collection::vec(any::<u8>(), 0..80),
        v1_tail in "[A-Z0-9a-f:. \r\n+-]{0,110}",
    ) {
        let _ = parse(&[V2_SIGNATURE.as_slice(), &v2_head].concat());
        let _ = parse(format!("PROXY {v1_tail}").as_bytes());
    }

    #[test]
    fn generated_headers_parse_back(
        (src, dst) in any_pair(),
        tlv in proptest::collection::vec(any::<u8>(), 0..64),
        after in proptest::collection::vec(any::<u8>(), 0..32),
        text in any::<bool>(),
    ) {
        let header = if text { v1(src, dst) } else { v2(src, dst, &tlv) };
        let len = header.len();
        let expected = Parsed::Done(ProxyHeader::Proxied { src, dst }, len);
        let mut bytes = header;
        bytes.extend(&after);
        prop_assert_eq!(parse(&bytes).unwrap(), expected);
        // Every strict prefix asks for more, never fails or guesses.
        for cut in 0..len {
            prop_assert_eq!(parse(&bytes[..cut]).unwrap(), Parsed::Incomplete);
        }
    }
}
