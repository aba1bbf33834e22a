use super::*;
use proptest::prelude::*;

fn norm(raw: &str) -> Result<String, PathError> {
    NormalPath::parse(raw.as_bytes()).map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
}

fn ok(raw: &str) -> String {
    norm(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

#[test]
fn every_spelling_of_a_path_has_one_normal_form() {
    for raw in [
        "/media/private/doc.txt",
        "/media//private/doc.txt",
        "//media///private//doc.txt",
        "/media/%70rivate/doc.txt",
        "/media%2Fprivate%2fdoc.txt",
        "/%6D%65dia/pr%69vate/doc.txt",
        "/media/./private/doc.txt",
        "/media/x/../private/doc.txt",
        "/media/x/y/../../private/./doc.txt",
        "/media/%2e/private/%2E%2e/private/doc.txt",
        "/media/x/.%2E/private/doc.txt",
    ] {
        assert_eq!(ok(raw), "/media/private/doc.txt", "{raw}");
    }
}

#[test]
fn the_trailing_slash_follows_rfc_3986() {
    for (raw, want) in [
        ("/", "/"),
        ("//", "/"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/", "/a/"),
        ("/a//", "/a/"),
        ("/a", "/a"),
        ("/a/%2F", "/a/"),
        ("/admin", "/admin"),
    ] {
        assert_eq!(ok(raw), want, "{raw}");
    }
}

#[test]
fn decoding_happens_once_and_odd_escapes_stay() {
    for (raw, want) in [
        ("/%252e%252e/x", "/%2e%2e/x"),
        ("/a%25", "/a%"),
        ("/a%2", "/a%2"),
        ("/a%zz", "/a%zz"),
        ("/a%%41", "/a%A"),
        ("/%3f%23%3B", "/?#;"),
        ("/a%5Cb", "/a\\b"),
        ("/a\\..\\b", "/a\\..\\b"),
        ("/...", "/..."),
        ("/a./b..", "/a./b.."),
        ("/..;/x", "/..;/x"),
    ] {
        assert_eq!(ok(raw), want, "{raw}");
    }
}

#[test]
fn refusals() {
    assert_eq!(norm("/.."), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/../.."), Err(PathError::AboveRoot));
    assert_eq!(norm("/%2e%2E/etc/passwd"), Err(PathError::AboveRoot));
    assert_eq!(norm("/a%2F..%2F..%2Fb"), Err(PathError::AboveRoot));
    assert_eq!(norm("/a%00b"), Err(PathError::Nul));
    assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    assert_eq!(norm(""), Err(PathError::NotAbsolute));
    assert_eq!(norm("%2Fa"), Err(PathError::NotAbsolute));
}

#[test]
fn bytes_that_are_not_utf8_stay_bytes() {
    let p = NormalPath::parse(b"/caf%E9/%C3%A9").unwrap();
    assert_eq!(p.as_bytes(), b"/caf\xe9/\xc3\xa9");
    assert_eq!(p.to_str(), None);
    assert!(p.starts_with("/caf"));
    assert_eq!(
        NormalPath::parse(b"/caf%C3%A9").unwrap().to_str(),
        Some("/café")
    );
}

#[test]
fn dot_segments_are_remembered() {
    assert!(!NormalPath::parse(b"/a//b/").unwrap().had_dot_segments());
    assert!(!NormalPath::parse(b"/a/.b/..c").unwrap().had_dot_segments());
    assert!(NormalPath::parse(b"/a/./b").unwrap().had_dot_segments());
    assert!(NormalPath::parse(b"/a/b/%2e%2e/c")
        .unwrap()
        .had_dot_segments());
}

#[test]
fn the_work_is_linear() {
    // 1 MiB of slashes, of `..` after deep paths, of escapes: each well under a second
    // even unoptimised (a quadratic pass would take minutes).
    let start = std::time::Instant::now();
    let slashes = vec![b'/'; 1 << 20];
    assert_eq!(NormalPath::parse(&slashes).unwrap().as_bytes(), b"/");
    let mut deep = b"/a".repeat(1 << 18);
    deep.extend_from_slice(&b"/..".repeat(1 << 18));
    assert_eq!(NormalPath::parse(&deep).unwrap().as_bytes(), b"/");
    let escapes = b"/x%2f%2e%2E%2f".repeat(1 << 16);
    assert_eq!(NormalPath::parse(&escapes).unwrap().as_bytes(), b"/");
    let mut long_name = b"/".to_vec();
    long_name.extend(std::iter::repeat_n(b'x', 1 << 20));
    long_name.extend_from_slice(&b"/..".repeat(1 << 10));
    assert_eq!(NormalPath::parse(&long_name), Err(PathError::AboveRoot));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// The reference: what the apps route on, written as Python would compute it.
/// `urllib.parse.unquote` (Django's and Werkzeug's PATH_INFO, bytes-wise), then
/// `posixpath.normpath`'s segment walk (which also merges slashes as Werkzeug's
/// `merge_slashes` does), with RFC 3986's trailing slash.
fn model(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut unquoted = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let hex = |j: usize| {
            raw.get(j)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        match (raw[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                unquoted.push(h * 16 + l);
                i += 3;
            }
            (b, _, _) => {
                unquoted.push(b);
                i += 1;
            }
        }
    }
    if unquoted.contains(&0) {
        return Err(PathError::Nul);
    }
    let parts: Vec<&[u8]> = unquoted.split(|b| *b == b'/').collect();
    let mut stack: Vec<&[u8]> = Vec::new();
    for part in &parts {
        match *part {
            b"" | b"." => {}
            b".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
            }
            p => stack.push(p),
        }
    }
    let mut out = b"/".to_vec();
    out.extend(stack.join(&b'/'));
    let last = parts.last().copied().unwrap_or(b"");
    if matches!(last, b"" | b"." | b"..") && out.len() > 1 {
        out.push(b'/');
    }
    Ok(out)
}

/// A path made of segments the front cares about, dots and empty ones, each byte
/// then written plainly or as an escape in either case.
fn spelled_path() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        Just(b"media".to_vec()),
        Just(b"private".to_vec()),
        Just(b"admin".to_vec()),
        Just(b"login".to_vec()),
        Just(b"x".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"".to_vec()),
        Just(b"%".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    let spelling = proptest::collection::vec((any::<bool>(), any::<bool>()), 64);
    (
        proptest::collection::vec(segment, 0..8),
        any::<bool>(),
        spelling,
    )
        .prop_map(|(segments, trailing, spelling)| {
            let mut plain = Vec::new();
            for s in segments {
                plain.push(b'/');
                plain.extend(s);
            }
            if trailing || plain.is_empty() {
                plain.push(b'/');
            }
            let mut out = Vec::new();
            for (i, b) in plain.into_iter().enumerate() {
                let (escape, upper) = spelling[i % spelling.len()];
                // The first '/' stays plain: an encoded one is not an absolute path.
                if i > 0 && (escape || !b.is_ascii_graphic()) {
                    let hex = if upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    };
                    out.extend_from_slice(hex.as_bytes());
                } else {
                    out.push(b);
                }
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_normal_form_is_the_path_the_apps_route_on(raw in spelled_path()) {
        let ours = NormalPath::parse(&raw).map(|p| p.as_bytes().to_vec());
        prop_assert_eq!(ours, model(&raw));
    }

    #[test]
    fn the_normal_form_is_a_fixed_point(raw in spelled_path()) {
        if let Ok(p) = NormalPath::parse(&raw) {
            // Written back with its '%' escaped, it reads as itself.
            let mut again = Vec::new();
            for &b in p.as_bytes() {
                if b == b'%' { again.extend_from_slice(b"%25") } else { again.push(b) }
            }
            let q = NormalPath::parse(&again).unwrap();
            prop_assert_eq!(q.as_bytes(), p.as_bytes());
            prop_assert!(!q.had_dot_segments());
        }
    }
}
