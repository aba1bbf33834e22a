//! The fuzz's generator, a request's body framing: Content-Length and
//! Transfer-Encoding spellings, chunk sizes, extensions and trailers, with the body
//! bytes that follow; odd ones tagged, as in `request`.

use proptest::prelude::*;
use proptest::sample::select;

use super::request::{concat, eol, one_of, union, Piece};

/// How the body is framed: the framing fields and the body bytes that follow.
#[derive(Clone, Debug)]
pub(super) struct Framing {
    pub(super) fields: Vec<Piece>,
    pub(super) body: Piece,
}

fn content_length_value(odd: u32, n: usize) -> BoxedStrategy<Piece> {
    let spelled: Vec<(String, Option<&'static str>)> = vec![
        (n.to_string(), None),
        (format!(" {n} "), None),
        (format!("0{n}"), Some("Content-Length: leading zero")),
        (format!("\t{n}"), None),
        (format!("+{n}"), Some("Content-Length: sign")),
        (format!("-{n}"), Some("Content-Length: sign")),
        (format!("{n}, {n}"), Some("Content-Length: list")),
        (format!("{n} {n}"), Some("Content-Length: inner space")),
        (format!("0x{n:x}"), Some("Content-Length: hex")),
        (String::new(), Some("Content-Length: empty")),
        (format!("{n}.0"), Some("Content-Length: decimal")),
        (
            "18446744073709551616".into(),
            Some("Content-Length: overflow"),
        ),
    ];
    let weights: Vec<(u32, Piece)> = spelled
        .into_iter()
        .enumerate()
        .map(|(i, (s, tag))| {
            let w = if i < 2 { 30 } else { 2 * odd };
            (
                w,
                Piece {
                    bytes: s.into_bytes(),
                    tag,
                },
            )
        })
        .collect();
    union(
        weights
            .into_iter()
            .map(|(w, p)| (w, Just(p).boxed()))
            .collect(),
    )
}

fn cl_field(value: Piece) -> Piece {
    concat(vec![
        Piece {
            bytes: b"Content-Length: ".to_vec(),
            tag: None,
        },
        value,
    ])
}

fn body_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(select(&b"abcxyz012 "[..]), 0..max),
        1 => prop::collection::vec(any::<u8>(), 0..max),
        1 => Just(b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
    ]
    .boxed()
}

fn content_length_framing(odd: u32) -> BoxedStrategy<Framing> {
    let off = union(vec![
        (20, Just(0i8).boxed()),
        (odd, Just(-1).boxed()),
        (odd, Just(1).boxed()),
    ]);
    (body_bytes(24), off)
        .prop_flat_map(move |(body, off)| {
            let declared = (body.len() as i64 + i64::from(off)).max(0) as usize;
            let tag = match off {
                -1 => Some("body longer than Content-Length"),
                1 => Some("body shorter than Content-Length"),
                _ => None,
            };
            let second = union(vec![
                (20, Just(None).boxed()),
                (
                    odd,
                    Just(Some((declared.to_string(), "Content-Length twice, equal"))).boxed(),
                ),
                (
                    odd,
                    Just(Some((
                        (declared + 1).to_string(),
                        "Content-Length twice, conflicting",
                    )))
                    .boxed(),
                ),
            ]);
            (content_length_value(odd, declared), second).prop_map(move |(value, second)| {
                let mut fields = vec![cl_field(value)];
                if let Some((v, tag)) = second {
                    fields.push(Piece {
                        bytes: format!("content-length: {v}").into_bytes(),
                        tag: Some(tag),
                    });
                }
                Framing {
                    fields,
                    body: Piece {
                        bytes: body.clone(),
                        tag,
                    },
                }
            })
        })
        .boxed()
}

fn transfer_encoding_fields(odd: u32) -> BoxedStrategy<Vec<Piece>> {
    let one = one_of(
        &[
            "chunked",
            "Chunked",
            "CHUNKED",
            " chunked ",
            "gzip, chunked",
            "gzip,chunked",
            "\tchunked",
        ],
        &[
            ("chunked, chunked", "Transfer-Encoding: chunked twice"),
            ("chunked, gzip", "Transfer-Encoding: chunked not last"),
            ("identity", "Transfer-Encoding: no chunked"),
            ("gzip", "Transfer-Encoding: no chunked"),
            ("chunked;q=1", "Transfer-Encoding: chunked with parameter"),
            ("chunked, ", "Transfer-Encoding: empty last element"),
            (", chunked", "Transfer-Encoding: empty first element"),
            ("chunk", "Transfer-Encoding: misspelt"),
            ("\"chunked\"", "Transfer-Encoding: quoted"),
            ("chunked\u{b}", "Transfer-Encoding: vertical tab"),
            ("", "Transfer-Encoding: empty"),
        ],
        4 * odd,
    );
    let name = one_of(
        &["Transfer-Encoding", "transfer-encoding"],
        &[
            ("Transfer_Encoding", "Transfer-Encoding: underscore"),
            ("Transfer-Encoding ", "field: space before colon"),
        ],
        odd,
    );
    let line = (name, one).prop_map(|(n, v)| {
        concat(vec![
            n,
            Piece {
                bytes: b": ".to_vec(),
                tag: None,
            },
            v,
        ])
    });
    let lines = |first: &str, tag| {
        Just(vec![
            Piece {
                bytes: format!("Transfer-Encoding: {first}").into_bytes(),
                tag: Some(tag),
            },
            Piece {
                bytes: b"Transfer-Encoding: chunked".to_vec(),
                tag: None,
            },
        ])
        .boxed()
    };
    union(vec![
        (20, line.prop_map(|l| vec![l]).boxed()),
        (1, lines("gzip", "Transfer-Encoding over two lines")),
        (
            odd,
            lines("chunked", "Transfer-Encoding: chunked on two lines"),
        ),
    ])
}

/// One chunk's size line for `len` data bytes, with its odd spellings.
fn chunk_size(odd: u32, len: usize) -> BoxedStrategy<Piece> {
    let spelled: Vec<(u32, String, Option<&'static str>)> = vec![
        (30, format!("{len:x}"), None),
        (4, format!("{len:X}"), None),
        (2, format!("00{len:x}"), Some("chunk size: leading zeros")),
    ];
    let odd_spellings: Vec<(u32, String, Option<&'static str>)> = vec![
        (1, format!("+{len:x}"), Some("chunk size: sign")),
        (1, format!("-{len:x}"), Some("chunk size: sign")),
        (1, format!(" {len:x}"), Some("chunk size: leading space")),
        (1, format!("{len:x} "), Some("chunk size: trailing space")),
        (1, format!("{len:x}\t"), Some("chunk size: trailing tab")),
        (1, format!("0x{len:x}"), Some("chunk size: 0x")),
        (1, format!("1{:016x}", len), Some("chunk size: overflow")),
        (1, format!("{:x}", len + 1), Some("chunk size: too large")),
        (1, String::new(), Some("chunk size: empty")),
    ];
    let odd_spellings = odd_spellings.into_iter().map(|(w, s, t)| (w * odd, s, t));
    let sizes = union(
        spelled
            .into_iter()
            .chain(odd_spellings)
            .map(|(w, s, tag)| {
                (
                    w,
                    Just(Piece {
                        bytes: s.into_bytes(),
                        tag,
                    })
                    .boxed(),
                )
            })
            .collect(),
    );
    let ext = one_of(
        &["", "", "", ";a=b", ";a=\"x y\"", " ;a", "\t;a", ";a;b=c"],
        &[
            (";a\0", "chunk extension: NUL"),
            (";a\u{7f}", "chunk extension: DEL"),
            (";a\rb", "chunk extension: bare CR"),
            (";\u{e9}", "chunk extension: obs-text"),
        ],
        2 * odd,
    );
    (sizes, ext).prop_map(|(s, e)| concat(vec![s, e])).boxed()
}

fn trailer(odd: u32) -> BoxedStrategy<Piece> {
    one_of(
        &["X-Sum: 1", "x-other: 2"],
        &[
            ("Content-Length: 3", "trailer: forbidden"),
            ("Host: a", "trailer: forbidden"),
            ("Transfer-Encoding: chunked", "trailer: forbidden"),
            ("Connection: close", "trailer: forbidden"),
            ("Cookie: a=b", "trailer: forbidden"),
            ("x-ferricorn-original-request: GET /", "trailer: forbidden"),
            (" folded", "trailer: obs-fold"),
            ("X Y: 1", "trailer: bad name"),
            ("NoColon", "trailer: no colon"),
            ("X: a\0b", "trailer: NUL"),
        ],
        4 * odd,
    )
}

fn chunked_body(odd: u32) -> BoxedStrategy<Piece> {
    let chunk = body_bytes(12).prop_flat_map(move |data| {
        let data_end = one_of(
            &["\r\n"],
            &[
                ("\n", "chunk data: bare LF after"),
                ("", "chunk data: no CRLF after"),
                ("X\r\n", "chunk data: longer than its size"),
            ],
            odd,
        );
        (chunk_size(odd, data.len()), eol(odd), Just(data), data_end).prop_map(
            |(size, e, data, end)| {
                concat(vec![
                    size,
                    e,
                    Piece {
                        bytes: data,
                        tag: None,
                    },
                    end,
                ])
            },
        )
    });
    let last = one_of(
        &["0", "000", "0;ext=1"],
        &[("0 ", "chunk size: trailing space")],
        odd,
    );
    let end = one_of(&["\r\n"], &[("", "chunked: no final CRLF")], odd);
    (
        prop::collection::vec(chunk, 0..3),
        last,
        eol(odd),
        prop::collection::vec((trailer(odd), eol(odd)), 0..3),
        end,
    )
        .prop_map(|(chunks, last, e, trailers, end)| {
            let mut pieces = chunks;
            pieces.extend([last, e]);
            for (t, e) in trailers {
                pieces.extend([t, e]);
            }
            pieces.push(end);
            concat(pieces)
        })
        .boxed()
}

fn chunked_framing(odd: u32) -> BoxedStrategy<Framing> {
    (transfer_encoding_fields(odd), chunked_body(odd))
        .prop_map(|(fields, body)| Framing { fields, body })
        .boxed()
}

pub(super) fn framing(odd: u32) -> BoxedStrategy<Framing> {
    let none = Just(Framing {
        fields: Vec::new(),
        body: Piece {
            bytes: Vec::new(),
            tag: None,
        },
    });
    let both = (chunked_framing(odd), content_length_value(odd, 5)).prop_map(|(mut f, cl)| {
        f.fields.push(cl_field(cl));
        f.fields[0].tag = Some("Content-Length with Transfer-Encoding");
        f
    });
    union(vec![
        (4, none.boxed()),
        (4, content_length_framing(odd)),
        (4, chunked_framing(odd)),
        (odd, both.boxed()),
    ])
}
