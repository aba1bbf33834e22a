//! The fuzz's generator, one request: its pieces (request line, fields, body
//! framing), most valid, each odd one tagged with the hard case it exercises.
//! `odd` is the weight of the odd spellings: 0 makes a clean request.

use proptest::prelude::*;
use proptest::sample::select;

use super::framing::framing;

/// Some bytes of a request, and the hard case they exercise, if any.
#[derive(Clone, Debug)]
pub(super) struct Piece {
    pub(super) bytes: Vec<u8>,
    pub(super) tag: Option<&'static str>,
}

/// Test text to bytes: U+0080..U+00FF stand for the bytes 0x80..0xFF (obs-text).
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// A valid spelling (no tag) most of the time, else an odd one with its tag.
pub(super) fn one_of(
    valid: &'static [&'static str],
    odd: &'static [(&'static str, &'static str)],
    odd_weight: u32,
) -> BoxedStrategy<Piece> {
    let valid_is_empty = valid.is_empty();
    let valid = select(if valid_is_empty { &[""][..] } else { valid }).prop_map(|s| Piece {
        bytes: latin1(s),
        tag: None,
    });
    if odd.is_empty() || odd_weight == 0 {
        return valid.boxed();
    }
    let odd = select(odd).prop_map(|(s, tag)| Piece {
        bytes: latin1(s),
        tag: Some(tag),
    });
    if valid_is_empty {
        return odd.boxed();
    }
    prop_oneof![20 => valid, odd_weight => odd].boxed()
}

/// A weighted choice; options of weight 0 (odd ones in a clean request) left out.
pub(super) fn union<T: std::fmt::Debug + 'static>(
    options: Vec<(u32, BoxedStrategy<T>)>,
) -> BoxedStrategy<T> {
    let options: Vec<_> = options.into_iter().filter(|(w, _)| *w > 0).collect();
    prop::strategy::Union::new_weighted(options).boxed()
}

pub(super) fn concat(pieces: Vec<Piece>) -> Piece {
    let tag = pieces.iter().find_map(|p| p.tag);
    Piece {
        bytes: pieces.into_iter().flat_map(|p| p.bytes).collect(),
        tag,
    }
}

/// Tags of every piece, in order.
fn tags(pieces: &[Piece]) -> Vec<&'static str> {
    pieces.iter().filter_map(|p| p.tag).collect()
}

pub(super) fn eol(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &["\r\n"],
        &[
            ("\n", "bare LF"),
            ("\r", "bare CR"),
            ("\r\r\n", "CR CR LF"),
            ("\n\r", "LF CR"),
        ],
        odd,
    )
}

fn method(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &[
            "GET", "GET", "GET", "POST", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH",
            "-BLARGH", "M-SEARCH", "PROPFIND", "PRI",
        ],
        &[
            ("get", "method: lower case"),
            ("G", "method: too short"),
            ("GE{T", "method: not a token"),
            ("GET:", "method: not a token"),
            ("GET#", "method: #"),
            ("ABCDEFGHIJKLMNOPQRSTU", "method: too long"),
            ("G\u{e9}T", "method: high byte"),
            ("", "method: empty"),
        ],
        3 * odd,
    )
}

fn sep(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &[" "],
        &[
            ("  ", "request line: two spaces"),
            ("\t", "request line: tab"),
            ("\u{b}", "request line: vertical tab"),
        ],
        odd,
    )
}

fn version(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"],
        &[
            ("HTTP/2.0", "version: 2.0"),
            ("HTTP/1.2", "version: 1.2"),
            ("HTTP/0.9", "version: 0.9"),
            ("HTTP/1.10", "version: 1.10"),
            ("http/1.1", "version: lower case"),
            ("HTTP/1", "version: no minor"),
            ("HTTP/1.1 ", "version: trailing space"),
            ("HTTPS/1.1", "version: HTTPS"),
        ],
        2 * odd,
    )
}

fn path_atom(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &[
            "a",
            "b1",
            "index.html",
            "-._~",
            "%20",
            "%2F",
            "/",
            "..",
            ".",
            "!$&'()*+,;=",
            ":@",
        ],
        &[
            ("\"", "target: quote"),
            ("<", "target: < or >"),
            (">", "target: < or >"),
            ("`", "target: backtick"),
            ("{", "target: braces"),
            ("|", "target: pipe"),
            ("\\", "target: backslash"),
            ("^", "target: caret"),
            ("%zz", "target: bad percent"),
            (" ", "target: space"),
            ("\t", "target: tab"),
            ("\0", "target: NUL"),
            ("\u{7f}", "target: DEL"),
            ("\u{e9}", "target: high byte"),
            ("\u{1}", "target: control byte"),
        ],
        3 * odd,
    )
}

fn query_atom(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &["a=b", "&", "x=%22y%22", "=", "?", "/", "'", "q"],
        &[
            ("\"q\"", "query: quote"),
            ("<b>", "query: < or >"),
            ("`", "query: backtick"),
            ("{}", "query: braces"),
            ("|", "query: pipe"),
            ("#f", "target: fragment"),
            (" ", "target: space"),
            ("\u{e9}", "target: high byte"),
        ],
        4 * odd,
    )
}

fn origin_form(odd: u32) -> BoxedStrategy<Piece> {
    let path = prop::collection::vec(path_atom(odd), 0..5);
    let query = prop::option::weighted(0.4, prop::collection::vec(query_atom(odd), 0..4));
    (path, query)
        .prop_map(|(path, query)| {
            let mut pieces = vec![Piece {
                bytes: b"/".to_vec(),
                tag: None,
            }];
            pieces.extend(path);
            if let Some(query) = query {
                pieces.push(Piece {
                    bytes: b"?".to_vec(),
                    tag: None,
                });
                pieces.extend(query);
            }
            concat(pieces)
        })
        .boxed()
}

fn host(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &[
            "a.example",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "xn--bcher-kva.example",
            "A-b_c~d",
            "ex%41mple",
            "0.0.0.0=5000",
        ],
        &[
            ("", "host: empty"),
            ("a..b", "host: .."),
            ("a b", "host: space"),
            ("u@h", "host: userinfo"),
            ("\u{e9}.example", "host: high byte"),
            ("[::1", "host: open bracket"),
            ("a/b", "host: slash"),
        ],
        2 * odd,
    )
}

fn port(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &["", "", ":80", ":8080", ":65535", ":"],
        &[
            (":65536", "port: too large"),
            (":8x", "port: not digits"),
            (":-1", "port: sign"),
        ],
        2 * odd,
    )
}

fn absolute_form(odd: u32) -> BoxedStrategy<Piece> {
    let scheme = one_of(
        &["http://", "https://", "HTTP://"],
        &[
            ("ftp://", "target: ftp scheme"),
            ("http:/", "target: http:/"),
        ],
        2 * odd,
    );
    let userinfo = one_of(&["", "", "", "u:p@"], &[], 0);
    let path = prop::option::of(origin_form(odd));
    (scheme, userinfo, host(odd), port(odd), path)
        .prop_map(|(s, u, h, p, path)| {
            let mut pieces = vec![s, u, h, p];
            pieces.extend(path);
            concat(pieces)
        })
        .boxed()
}

fn authority_form(odd: u32) -> BoxedStrategy<Piece> {
    (host(odd), port(odd))
        .prop_map(|(h, p)| concat(vec![h, p]))
        .boxed()
}

/// The method and its target: the forms RFC 9112 §3.2 pairs, or (odd) any.
fn method_and_target(odd: u32) -> BoxedStrategy<(Piece, Piece)> {
    let plain = |s: &str| Piece {
        bytes: s.as_bytes().to_vec(),
        tag: None,
    };
    union(vec![
        (16, (method(odd), target(odd)).boxed()),
        (1, (Just(plain("OPTIONS")), Just(plain("*"))).boxed()),
        (1, (Just(plain("CONNECT")), authority_form(odd)).boxed()),
        (odd, (Just(plain("CONNECT")), target(odd)).boxed()),
    ])
}

fn target(odd: u32) -> BoxedStrategy<Piece> {
    let asterisk = Piece {
        bytes: b"*".to_vec(),
        tag: Some("target: asterisk-form"),
    };
    let empty = Piece {
        bytes: Vec::new(),
        tag: Some("target: empty"),
    };
    // asterisk- and authority-form are valid with one method each: odd for the others
    union(vec![
        (16, origin_form(odd)),
        (4, absolute_form(odd)),
        (odd, Just(asterisk).boxed()),
        (odd, authority_form(odd)),
        (odd, Just(empty).boxed()),
    ])
}

/// `name: value`, without its line end.
fn field_line(
    odd: u32,
    name: BoxedStrategy<Piece>,
    value: BoxedStrategy<Piece>,
) -> BoxedStrategy<Piece> {
    let colon = one_of(
        &[": ", ":", ":  ", ":\t"],
        &[
            (" : ", "field: space before colon"),
            ("\t:", "field: tab before colon"),
        ],
        odd,
    );
    (name, colon, value)
        .prop_map(|(n, c, v)| concat(vec![n, c, v]))
        .boxed()
}

fn name(names: &'static [&'static str]) -> BoxedStrategy<Piece> {
    one_of(names, &[], 0)
}

fn generic_value(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &[
            "text",
            "",
            "a, b",
            "\"quoted, x\"",
            "  padded  ",
            "\tx\t",
            "*/*",
            "curl/8.0 (x86_64) libcurl",
            "a=b; c=d",
        ],
        &[
            ("caf\u{e9}", "value: obs-text"),
            ("a\0b", "value: NUL"),
            ("a\u{1}b", "value: control byte"),
            ("a\rb", "value: bare CR"),
            ("a\u{7f}b", "value: DEL"),
            ("a\u{b}b", "value: vertical tab"),
        ],
        3 * odd,
    )
}

/// `name: value` from fixed lists of valid spellings.
fn named_field(
    odd: u32,
    names: &'static [&'static str],
    values: &'static [&'static str],
) -> BoxedStrategy<Piece> {
    field_line(odd, name(names), one_of(values, &[], 0))
}

/// One header field line, of a kind the edge decides on, or odd.
fn field(odd: u32) -> BoxedStrategy<Piece> {
    let generic = field_line(
        odd,
        name(&[
            "Accept",
            "User-Agent",
            "X-Custom",
            "x-a",
            "Cookie",
            "Authorization",
            "Accept-Encoding",
            "X_Underscore",
            "!#$%&'*+-.^`|~",
        ]),
        generic_value(odd),
    );
    let host = field_line(odd, name(&["Host", "host", "HOST"]), host(odd));
    let connection = named_field(
        odd,
        &["Connection", "connection"],
        &[
            "keep-alive",
            "close",
            "Upgrade",
            "upgrade, keep-alive",
            "Keep-Alive",
            "close, keep-alive",
            "TE, close",
            "x-foo",
        ],
    );
    let upgrade = named_field(
        odd,
        &["Upgrade", "upgrade"],
        &["websocket", "WebSocket", "h2c", "websocket, h2c", "foo/1"],
    );
    let expect = named_field(odd, &["Expect"], &["100-continue", "100-Continue", "foo"]);
    let content_type = named_field(odd, &["Content-Type"], &["text/plain", "application/json"]);
    union(vec![
        (6, generic),
        (1, host),
        (2, connection),
        (1, upgrade),
        (1, expect),
        (1, content_type),
        (4 * odd, odd_field(odd)),
    ])
}

/// Now and then (odd) around 100 more fields: the default field limit.
fn many_fields(odd: u32) -> BoxedStrategy<Option<(Piece, Piece)>> {
    let many = (90..=110usize).prop_map(|n| {
        let lines: Vec<String> = (0..n).map(|i| format!("X-F{i}: v")).collect();
        let piece = Piece {
            bytes: lines.join("\r\n").into_bytes(),
            tag: Some("about 100 fields"),
        };
        Some((
            piece,
            Piece {
                bytes: b"\r\n".to_vec(),
                tag: None,
            },
        ))
    });
    union(vec![(40, Just(None).boxed()), (odd, many.boxed())])
}

/// A field line the guard must refuse: a bad name, no colon, obs-fold.
fn odd_field(odd: u32) -> BoxedStrategy<Piece> {
    let odd_name = (
        one_of(
            &[],
            &[
                ("X Y", "field name: space"),
                ("X@Y", "field name: not a token"),
                ("X(Y)", "field name: not a token"),
                ("", "field name: empty"),
                ("X\0", "field name: NUL"),
                ("\u{e9}", "field name: high byte"),
                ("X\"Y", "field name: not a token"),
                ("\tX", "field: starts with whitespace"),
                (" X", "field: starts with whitespace"),
                (
                    "x-ferricorn-original-request",
                    "field: the stand-in's own field",
                ),
            ],
            1,
        ),
        generic_value(odd),
    )
        .prop_map(|(n, v)| {
            concat(vec![
                n,
                Piece {
                    bytes: b": ".to_vec(),
                    tag: None,
                },
                v,
            ])
        });
    let no_colon = Just(Piece {
        bytes: b"NoColon".to_vec(),
        tag: Some("field: no colon"),
    });
    let obs_fold = (generic_value(odd), one_of(&[" ", "\t"], &[], 0)).prop_map(|(v, ws)| {
        let mut bytes = b"X-Folded: a\r\n".to_vec();
        bytes.extend(ws.bytes);
        bytes.extend(v.bytes);
        Piece {
            bytes,
            tag: Some("obs-fold"),
        }
    });
    prop_oneof![2 => odd_name, 1 => no_colon, 1 => obs_fold].boxed()
}

/// One request: its bytes and the hard cases it has.
#[derive(Clone, Debug)]
pub(super) struct GenRequest {
    pub(super) bytes: Vec<u8>,
    pub(super) tags: Vec<&'static str>,
}

pub(super) fn request(odd: u32) -> BoxedStrategy<GenRequest> {
    let line = (
        method_and_target(odd),
        sep(odd),
        sep(odd),
        version(odd),
        eol(odd),
    )
        .prop_map(|((m, t), s1, s2, v, e)| (m, s1, t, s2, v, e));
    let host = field_line(odd, name(&["Host", "host", "HOST"]), host(odd));
    let fields = (
        prop::option::weighted(0.85, (host, eol(odd))),
        prop::collection::vec((field(odd), eol(odd)), 0..5),
        many_fields(odd),
    )
        .prop_map(|(host, mut fields, many)| {
            fields.extend(host);
            fields.extend(many);
            fields
        });
    // Three line ends for the framing fields (a framing has at most three).
    let ends = prop::collection::vec(eol(odd), 3);
    (line, fields, framing(odd), ends, eol(odd))
        .prop_flat_map(|(line, fields, framing, ends, last)| {
            // The framing fields go anywhere among the others.
            let mut lines = fields;
            lines.extend(framing.fields.into_iter().zip(ends));
            (
                Just(line),
                Just(lines).prop_shuffle(),
                Just(framing.body),
                Just(last),
            )
        })
        .prop_map(move |((m, s1, t, s2, mut v, e), lines, body, last)| {
            let chunked = lines
                .iter()
                .any(|(f, _)| f.bytes.starts_with(b"Transfer-Encoding"));
            if odd == 0 && chunked {
                // A clean request: chunked needs HTTP/1.1.
                v.bytes = b"HTTP/1.1".to_vec();
            }
            let mut tags = tags(&[
                m.clone(),
                s1.clone(),
                t.clone(),
                s2.clone(),
                v.clone(),
                e.clone(),
            ]);
            tags.extend(context_tags(&m.bytes, &t.bytes, &v.bytes, &lines));
            let mut bytes = [m.bytes, s1.bytes, t.bytes, s2.bytes, v.bytes, e.bytes].concat();
            for (field, end) in &lines {
                tags.extend(field.tag);
                tags.extend(end.tag);
                bytes.extend(&field.bytes);
                bytes.extend(&end.bytes);
            }
            tags.extend(last.tag);
            bytes.extend(last.bytes);
            tags.extend(body.tag);
            bytes.extend(body.bytes);
            GenRequest { bytes, tags }
        })
        .boxed()
}

/// The hard cases made by combining valid pieces.
fn context_tags(
    method: &[u8],
    target: &[u8],
    version: &[u8],
    lines: &[(Piece, Piece)],
) -> Vec<&'static str> {
    let mut tags = Vec::new();
    let named = |n: &[u8]| {
        lines
            .iter()
            .filter(|(f, _)| {
                f.bytes.len() > n.len()
                    && f.bytes[..n.len()].eq_ignore_ascii_case(n)
                    && f.bytes[n.len()] == b':'
            })
            .count()
    };
    if named(b"host") > 1 {
        tags.push("Host twice");
    }
    if named(b"host") > 0 && target.starts_with(b"http") {
        tags.push("absolute-form with Host");
    }
    if named(b"content-type") > 1 {
        tags.push("Content-Type twice");
    }
    if named(b"transfer-encoding") > 0 && version == b"HTTP/1.0" {
        tags.push("Transfer-Encoding in HTTP/1.0");
    }
    if target == b"*" && method != b"OPTIONS" {
        tags.push("asterisk-form without OPTIONS");
    }
    let authority = !(target.starts_with(b"/")
        || target == b"*"
        || target.is_empty()
        || target
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"http"))
        || target.starts_with(b"ftp"));
    if method == b"CONNECT" && !authority {
        tags.push("CONNECT without authority-form");
    }
    if method != b"CONNECT" && authority {
        tags.push("authority-form without CONNECT");
    }
    tags
}
