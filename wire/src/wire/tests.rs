//! Round trips and refusals of every frame.

use super::*;

fn head() -> RequestHead {
    RequestHead {
        method: Bytes::from_static(b"POST"),
        path: Bytes::from_static(b"/a%20b"),
        query: Bytes::from_static(b"x=1"),
        version: 11,
        scheme: Scheme::Https,
        remote_addr: Bytes::from_static(b"10.0.0.1"),
        remote_port: 5555,
        server_name: Bytes::from_static(b"example.com"),
        server_port: 443,
        request_id: Bytes::from_static(b"abc"),
        content_length: Some(3),
        headers: vec![(Bytes::from_static(b"x-a"), Bytes::from_static(b"\xe9t\xe9"))],
        upgrade: false,
    }
}

fn ready(protocol: u32) -> Frame {
    Frame::Ready(Box::new(Ready {
        protocol,
        pid: 42,
        interpreter: Interpreter {
            implementation: "cpython".into(),
            version: "3.14.0".into(),
            executable: "/srv/venv/bin/python".into(),
            prefix: "/srv/venv".into(),
        },
    }))
}

fn all_frames() -> Vec<Frame> {
    vec![
        ready(PROTOCOL),
        Frame::RequestHead(Box::new(head())),
        Frame::RequestHead(Box::new(RequestHead {
            content_length: None,
            headers: vec![],
            ..head()
        })),
        Frame::RequestHead(Box::new(RequestHead {
            upgrade: true,
            ..head()
        })),
        Frame::RequestBody(Bytes::from_static(b"abc")),
        Frame::RequestEnd,
        Frame::ResponseHead(Box::new(ResponseHead {
            status: 201,
            headers: vec![
                (
                    Bytes::from_static(b"Set-Cookie"),
                    Bytes::from_static(b"a=1"),
                ),
                (
                    Bytes::from_static(b"Set-Cookie"),
                    Bytes::from_static(b"b=2"),
                ),
            ],
        })),
        Frame::ResponseBody(Bytes::new()),
        Frame::ResponseEnd,
        Frame::Abort(Bytes::from_static(b"boom")),
        Frame::Cancel,
        Frame::Pause,
        Frame::Resume,
        Frame::ResponseFile(Box::new(ResponseFile {
            path: Bytes::from_static(b"/srv/media/a\xff.bin"),
            dev: 2049,
            ino: u64::MAX,
            size: 200 << 20,
        })),
        Frame::Credit(0),
        Frame::Credit(u32::MAX),
    ]
}

#[test]
fn every_frame_round_trips_in_one_buffer() {
    let frames = all_frames();
    let mut buf = BytesMut::new();
    for (i, f) in frames.iter().enumerate() {
        encode(i as u32, f, &mut buf);
    }
    for (i, f) in frames.iter().enumerate() {
        let (stream, got) = decode(&mut buf).unwrap().unwrap();
        assert_eq!(stream, i as u32);
        assert_eq!(&got, f);
    }
    assert!(buf.is_empty());
    assert_eq!(decode(&mut buf), Ok(None));
}

#[test]
fn every_prefix_of_a_frame_waits_for_more() {
    for f in all_frames() {
        let mut full = BytesMut::new();
        encode(7, &f, &mut full);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut part), Ok(None), "prefix {cut} of {f:?}");
        }
    }
}

#[test]
fn truncated_payload_is_an_error_not_a_panic() {
    // A frame whose declared length is complete but whose inner fields claim more.
    for f in all_frames() {
        let mut full = BytesMut::new();
        encode(1, &f, &mut full);
        for cut in HEADER_LEN..full.len() {
            let mut bytes = BytesMut::from(&full[..cut]);
            let len = (cut - 4) as u32;
            bytes[0..4].copy_from_slice(&len.to_be_bytes());
            // Must never panic; may succeed only for kinds with opaque payloads.
            let _ = decode(&mut bytes);
        }
    }
}

#[test]
fn a_ready_frame_of_another_protocol_is_named_as_such() {
    let mut buf = BytesMut::new();
    encode(0, &ready(PROTOCOL + 1), &mut buf);
    assert_eq!(decode(&mut buf), Err(WireError::Protocol(PROTOCOL + 1)));
}

#[test]
fn corrupt_frames_are_refused() {
    let mut unknown = BytesMut::from(&[0, 0, 0, 5, 99, 0, 0, 0, 1][..]);
    assert_eq!(decode(&mut unknown), Err(WireError::UnknownKind(99)));

    let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(decode(&mut huge), Err(WireError::TooLarge(_))));

    let mut short = BytesMut::from(&[0, 0, 0, 1, 1][..]);
    assert_eq!(decode(&mut short), Err(WireError::Truncated));

    let mut buf = BytesMut::new();
    encode(1, &ready(PROTOCOL), &mut buf);
    buf.put_u8(0);
    let len = (buf.len() - 4) as u32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(decode(&mut buf), Err(WireError::Trailing(1)));

    let mut bad_status = BytesMut::new();
    encode(
        1,
        &Frame::ResponseHead(Box::new(ResponseHead {
            status: 42,
            headers: vec![],
        })),
        &mut bad_status,
    );
    assert_eq!(decode(&mut bad_status), Err(WireError::BadField("status")));
}

#[test]
fn the_upgrade_flag_is_one_byte_and_unknown_bits_are_refused() {
    let encoded = |upgrade| {
        let mut buf = BytesMut::new();
        let h = RequestHead { upgrade, ..head() };
        encode(3, &Frame::RequestHead(Box::new(h)), &mut buf);
        buf
    };
    let (plain, upgrade) = (encoded(false), encoded(true));
    // The flag byte sits right before the header count (4 bytes) and the one
    // header (x-a: 3 + 3 bytes, each with a 4-byte length).
    let at = plain.len() - 4 - (4 + 3 + 4 + 3) - 1;
    assert_eq!((plain[at], upgrade[at]), (0, FLAG_UPGRADE));
    let mut bytes = upgrade.clone();
    assert!(matches!(
        decode(&mut bytes),
        Ok(Some((3, Frame::RequestHead(h)))) if h.upgrade
    ));
    for bad in [2u8, 3, 0x80, 0xff] {
        let mut bytes = upgrade.clone();
        bytes[at] = bad;
        assert_eq!(decode(&mut bytes), Err(WireError::BadField("flags")));
    }
}

#[test]
fn absurd_header_counts_do_not_allocate() {
    let mut buf = BytesMut::new();
    buf.put_u32(0);
    buf.put_u8(Kind::ResponseHead as u8);
    buf.put_u32(1);
    buf.put_u16(200);
    buf.put_u32(u32::MAX);
    let len = (buf.len() - 4) as u32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(decode(&mut buf), Err(WireError::Truncated));
}

#[test]
fn random_bytes_never_panic() {
    // A small xorshift so the test is deterministic and needs no crate.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        let mut buf = BytesMut::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 64) as usize;
        buf.put_u32(n as u32);
        for i in 0..n {
            buf.put_u8((x >> (i % 56)) as u8);
        }
        let _ = decode(&mut buf);
    }
}

#[test]
fn a_credit_round_trips_and_is_exactly_four_bytes() {
    for n in [0, 1, 256 * 1024, u32::MAX] {
        let mut buf = BytesMut::new();
        encode(7, &Frame::Credit(n), &mut buf);
        assert_eq!(buf.len(), 4 + 1 + 4 + 4);
        assert_eq!(decode(&mut buf), Ok(Some((7, Frame::Credit(n)))));
    }
    // Kind 13, stream 7, a 2-byte payload: truncated, not a panic.
    let mut short = BytesMut::from(&[0, 0, 0, 7, 13, 0, 0, 0, 7, 0, 1][..]);
    assert_eq!(decode(&mut short), Err(WireError::Truncated));
}
