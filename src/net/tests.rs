//! The trust list: parsing, ranges, and property tests (arbitrary input never
//! panics; a range contains exactly its addresses).

use super::*;
use proptest::prelude::*;

fn trust(s: &str) -> TrustedProxies {
    s.parse().unwrap()
}

fn addr(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn trust_list_parses_addresses_ranges_and_star() {
    let t = trust("127.0.0.1, ::1,10.0.0.0/8,fd00::/8");
    assert!(t.trusts(addr("127.0.0.1")));
    assert!(t.trusts(addr("::1")));
    assert!(t.trusts(addr("10.200.3.4")));
    assert!(t.trusts(addr("fd12::5")));
    assert!(!t.trusts(addr("11.0.0.1")));
    assert!(!t.trusts(addr("fe80::1")));
    // An IPv4 peer on a dual-stack listener arrives as ::ffff:a.b.c.d.
    assert!(t.trusts(addr("::ffff:10.1.2.3")));
    assert!(t.trusts(None), "Unix-socket peers are trusted");
    assert!(trust("*").trusts(addr("203.0.113.9")));
    assert!(!trust("").trusts(addr("127.0.0.1")));
    assert!(trust("0.0.0.0/0").trusts(addr("203.0.113.9")));
    assert_eq!(t.to_string(), "127.0.0.1,::1,10.0.0.0/8,fd00::/8");
    assert_eq!(
        TrustedProxies::default().to_string(),
        crate::defaults::FORWARDED_ALLOW_IPS
    );
}

#[test]
fn bad_trust_entries_say_what_is_wrong() {
    for (entry, needle) in [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "0..=32"),
        ("fd00::/129", "0..=128"),
        ("10.0.0.0/08", "0..=32"),
        ("localhost", "expected an IP address"),
        ("10.0.0.0/", "0..=32"),
    ] {
        let err = entry.parse::<TrustedProxies>().unwrap_err().to_string();
        assert!(
            err.contains(entry) && err.contains(needle),
            "{entry}: {err}"
        );
    }
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn trust_list_never_panics(s in "[0-9a-f:./,* ]{0,40}") {
        let _ = s.parse::<TrustedProxies>();
    }

    #[test]
    fn a_range_contains_exactly_its_addresses(ip in any_ip(), other in any_ip(), prefix in 0u8..=128) {
        let prefix = prefix.min(IpNet::max_prefix(ip));
        let net: IpNet = format!("{}/{prefix}", IpNet::network(ip, prefix)).parse().unwrap();
        prop_assert!(net.contains(ip));
        let same = ip.is_ipv4() == other.is_ipv4()
            && IpNet::network(other, prefix) == IpNet::network(ip, prefix);
        prop_assert_eq!(net.contains(other), same);
    }
}
