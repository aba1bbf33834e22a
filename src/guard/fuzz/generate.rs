//! The fuzz's generator: HTTP/1 request streams aimed at the edge's hard cases, as
//! proptest strategies (so a failure shrinks to a small stream).
//!
//! A stream is one to four pipelined requests built from pieces; most pieces are
//! valid, and each odd piece (a bare LF, a signed chunk size, a second Host, ...)
//! carries a tag naming the hard case, which the fuzz's summary counts. Or it is a
//! case of gunicorn's conformance corpus (tests/conformance). Then up to two
//! byte-level mutations, and two different sets of split points: each part is one
//! read.

use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::super::GuardLimits;
use super::request::{one_of, request, GenRequest};

/// A byte-level change to a whole stream.
#[derive(Clone, Debug)]
pub(super) enum Mutation {
    Insert(Index, u8),
    Delete(Index),
    Replace(Index, u8),
    DuplicateByte(Index),
    DuplicateLine(Index),
    DeleteLine(Index),
}

impl Mutation {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Mutation::Insert(..) => "mutation: insert a byte",
            Mutation::Delete(..) => "mutation: delete a byte",
            Mutation::Replace(..) => "mutation: replace a byte",
            Mutation::DuplicateByte(..) => "mutation: duplicate a byte",
            Mutation::DuplicateLine(..) => "mutation: duplicate a line",
            Mutation::DeleteLine(..) => "mutation: delete a line",
        }
    }

    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match *self {
            Mutation::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), b),
            Mutation::Delete(at) => {
                bytes.remove(at.index(bytes.len()));
            }
            Mutation::Replace(at, b) => {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            Mutation::DuplicateByte(at) => {
                let i = at.index(bytes.len());
                bytes.insert(i, bytes[i]);
            }
            Mutation::DuplicateLine(at) | Mutation::DeleteLine(at) => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1))
                    .filter(|&i| i < bytes.len())
                    .collect();
                let start = starts[at.index(starts.len())];
                let end =
                    memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
                let line = bytes[start..end].to_vec();
                if matches!(self, Mutation::DeleteLine(_)) {
                    bytes.drain(start..end);
                } else {
                    bytes.splice(start..start, line);
                }
            }
        }
    }
}

fn mutation() -> BoxedStrategy<Mutation> {
    let byte = prop_oneof![
        3 => select(&b"\r\n \t\0:,;0a\"\x80\xff"[..]),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<Index>().prop_map(Mutation::DuplicateByte),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        any::<Index>().prop_map(Mutation::DeleteLine),
    ]
    .boxed()
}

/// A generated test case: the stream, what is in it, and how it is read.
#[derive(Clone)]
pub(super) struct Stream {
    pub(super) bytes: Vec<u8>,
    /// The generated requests before mutation (one entry per request), or one
    /// entry naming the corpus case.
    pub(super) requests: Vec<GenRequest>,
    pub(super) mutations: Vec<Mutation>,
    /// Two ways to cut `bytes` into reads (offsets, increasing, inside the stream).
    pub(super) cuts_a: Vec<usize>,
    pub(super) cuts_b: Vec<usize>,
    pub(super) limits: GuardLimits,
}

impl Stream {
    pub(super) fn reads(&self, cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut reads = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&self.bytes.len())) {
            if cut > at {
                reads.push(self.bytes[at..cut].to_vec());
                at = cut;
            }
        }
        reads
    }

    /// The hard cases of the `i`th request (by generation order; a mutation may
    /// have moved the boundaries), and the mutations.
    pub(super) fn tags_of(&self, i: usize) -> Vec<&'static str> {
        let mut tags = match self.requests.get(i) {
            Some(r) if r.tags.is_empty() => vec!["(no odd piece)"],
            Some(r) => r.tags.clone(),
            None => vec!["(after the generated requests)"],
        };
        tags.extend(self.mutations.iter().map(Mutation::name));
        tags.sort_unstable();
        tags.dedup();
        tags
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream {{ bytes: b\"{}\"", self.bytes.escape_ascii())?;
        write!(f, ", cuts_a: {:?}, cuts_b: {:?}", self.cuts_a, self.cuts_b)?;
        write!(f, ", limits: {:?}", self.limits)?;
        let tags: Vec<_> = self.requests.iter().map(|r| &r.tags).collect();
        write!(f, ", tags: {tags:?}, mutations: {:?} }}", self.mutations)
    }
}

/// Small limits, so the 414 and 431 refusals happen too.
const SMALL: GuardLimits = GuardLimits {
    request_line: 48,
    fields: 4,
    field_size: 48,
    head: 200,
    require_host: false,
};

fn limits() -> BoxedStrategy<GuardLimits> {
    prop_oneof![
        12 => Just(GuardLimits::default()),
        2 => Just(SMALL),
        1 => Just(GuardLimits { require_host: true, ..GuardLimits::default() }),
    ]
    .boxed()
}

/// The raw files of gunicorn's conformance corpus, valid and invalid.
fn corpus() -> &'static [GenRequest] {
    static CORPUS: std::sync::OnceLock<Vec<GenRequest>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/gunicorn-requests"
        );
        let mut cases = Vec::new();
        for kind in ["valid", "invalid"] {
            let dir = format!("{root}/{kind}");
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .map(|e| e.expect("corpus entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "raw"))
                .collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path).expect("corpus file");
                // A leaked name: tags are &'static str, and the corpus is read once.
                let name = format!(
                    "corpus: {kind}/{}",
                    path.file_stem().unwrap().to_string_lossy()
                );
                cases.push(GenRequest {
                    bytes,
                    tags: vec![Box::leak(name.into_boxed_str())],
                });
            }
        }
        cases
    })
}

fn sources() -> BoxedStrategy<(Vec<u8>, Vec<GenRequest>)> {
    let generated = (
        one_of(&[""], &[("\r\n", "empty line before the request")], 1),
        // Half the streams have no odd piece at all, half have some clean requests.
        prop_oneof![
            prop::collection::vec(request(0), 1..=4),
            prop::collection::vec(prop_oneof![request(0), request(1)], 1..=4),
        ],
    )
        .prop_map(|(lead, requests)| {
            let mut bytes = lead.bytes;
            for r in &requests {
                bytes.extend(&r.bytes);
            }
            let mut requests = requests;
            if let Some(tag) = lead.tag {
                requests[0].tags.push(tag);
            }
            (bytes, requests)
        });
    let corpus = select(corpus()).prop_map(|case| (case.bytes.clone(), vec![case]));
    prop_oneof![6 => generated, 1 => corpus].boxed()
}

fn cuts() -> BoxedStrategy<Vec<Index>> {
    prop_oneof![
        1 => Just(Vec::new()),
        4 => prop::collection::vec(any::<Index>(), 1..8),
    ]
    .boxed()
}

/// The fuzz's input: see the module doc.
pub(super) fn stream() -> BoxedStrategy<Stream> {
    let mutations = prop_oneof![
        8 => Just(Vec::new()),
        3 => prop::collection::vec(mutation(), 1..=1),
        1 => prop::collection::vec(mutation(), 2..=2),
    ];
    (sources(), mutations, cuts(), cuts(), limits())
        .prop_map(|((mut bytes, requests), mutations, a, b, limits)| {
            for m in &mutations {
                m.apply(&mut bytes);
            }
            let at = |cuts: Vec<Index>| {
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                at.sort_unstable();
                at.dedup();
                at.retain(|&c| c > 0 && c < bytes.len());
                at
            };
            Stream {
                cuts_a: at(a),
                cuts_b: at(b),
                bytes,
                requests,
                mutations,
                limits,
            }
        })
        .boxed()
}
