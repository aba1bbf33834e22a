//! The session's rules, one test each, fed frames as a client writes them.

use super::*;
use crate::asgi::websocket::frame::client_frame;

const M: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

fn f(b0: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(b0, payload, M)
}

fn feed(s: &mut Session, bytes: &[u8]) -> Vec<Event> {
    let mut ev = Vec::new();
    s.feed(bytes, &mut ev);
    ev
}

/// Feeds `bytes` one at a time, and at once to a second session: both must agree.
fn feed_both_ways(bytes: &[u8], max: usize) -> (Vec<Event>, Vec<u8>) {
    let (mut a, mut b) = (Session::new(max), Session::new(max));
    let whole = feed(&mut a, bytes);
    let mut split = Vec::new();
    for byte in bytes {
        b.feed(std::slice::from_ref(byte), &mut split);
    }
    assert_eq!(whole, split);
    a.flush_failure();
    b.flush_failure();
    assert_eq!(a.pending(), b.pending());
    (whole, a.pending().to_vec())
}

fn closed(code: u16) -> Event {
    Event::Closed {
        code,
        reason: String::new(),
    }
}

/// A server close frame with `code` (the bytes the session queues).
fn close_frame(code: u16) -> Vec<u8> {
    let mut out = vec![0x88, 2];
    out.extend_from_slice(&code.to_be_bytes());
    out
}

#[test]
fn masked_text_and_binary_messages_come_out_whole() {
    let mut bytes = f(0x81, "héllo".as_bytes());
    bytes.extend(f(0x82, &[0, 1, 2, 255]));
    bytes.extend(f(0x81, b""));
    let (ev, out) = feed_both_ways(&bytes, MAX_MESSAGE);
    assert_eq!(
        ev,
        [
            Event::Text("héllo".into()),
            Event::Binary(vec![0, 1, 2, 255]),
            Event::Text(String::new())
        ]
    );
    assert!(out.is_empty());
}

#[test]
fn fragments_are_reassembled_and_control_frames_between_them_answered() {
    let mut bytes = f(0x01, b"Hel");
    bytes.extend(f(0x89, b"ping!"));
    bytes.extend(f(0x00, b"lo, "));
    bytes.extend(f(0x8A, b"unsolicited pong"));
    bytes.extend(f(0x80, b"world"));
    let (ev, out) = feed_both_ways(&bytes, MAX_MESSAGE);
    assert_eq!(ev, [Event::Text("Hello, world".into())]);
    assert_eq!(
        out, b"\x8a\x05ping!",
        "one unmasked pong with the ping's payload"
    );
}

#[test]
fn lengths_in_16_and_64_bits_are_read() {
    for n in [126usize, 65535, 65536, 200_000] {
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let ev = feed(&mut Session::new(MAX_MESSAGE), &f(0x82, &data));
        assert_eq!(ev, [Event::Binary(data)], "n={n}");
    }
}

#[test]
fn frame_order_errors_fail_with_1002() {
    let cont_first = f(0x80, b"x");
    let mut new_inside = f(0x01, b"a");
    new_inside.extend(f(0x81, b"b"));
    let mut bin_inside = f(0x02, b"a");
    bin_inside.extend(f(0x82, b"b"));
    for bytes in [cont_first, new_inside, bin_inside] {
        let (ev, out) = feed_both_ways(&bytes, MAX_MESSAGE);
        assert_eq!(ev, [closed(1002)]);
        assert_eq!(out, close_frame(1002));
    }
}

#[test]
fn bad_heads_fail_with_1002_and_nothing_after_is_read() {
    let mut unmasked = vec![0x81, 0x01, b'x'];
    unmasked.extend(f(0x81, b"never seen"));
    let cases = [
        unmasked,
        f(0xC1, b"rsv1"),
        f(0x83, b"opcode 3"),
        f(0x8B, b"opcode 11"),
        f(0x09, b"fragmented ping"),
        f(0x89, &[0; 126]),
        f(0x88, &[3; 126]),
    ];
    for bytes in cases {
        let mut s = Session::new(MAX_MESSAGE);
        assert_eq!(feed(&mut s, &bytes), [closed(1002)]);
        assert!(!s.is_reading() && !s.is_closed());
        assert!(s.failure().is_some());
        assert_eq!(feed(&mut s, &f(0x81, b"late")), []);
        s.flush_failure();
        assert_eq!(s.pending(), close_frame(1002));
        assert!(s.is_closed());
    }
}

#[test]
fn a_multibyte_character_split_across_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut bytes = f(0x01, &euro[..1]);
    bytes.extend(f(0x00, &euro[1..2]));
    bytes.extend(f(0x80, &euro[2..]));
    let (ev, _) = feed_both_ways(&bytes, MAX_MESSAGE);
    assert_eq!(ev, [Event::Text("€".into())]);
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    // A valid start, then an invalid 4-byte prefix (above U+10FFFF) in a fragment
    // whose message has not ended: 1007 now, not at the last fragment.
    for bad in [
        &b"\xf4\x90"[..],
        b"\xed\xa0",
        b"\xc0",
        b"\xff",
        b"\xce\xba\x80",
    ] {
        let mut s = Session::new(MAX_MESSAGE);
        let mut bytes = f(0x01, b"ok ");
        bytes.extend(f(0x00, bad));
        assert_eq!(feed(&mut s, &bytes), [closed(1007)], "{bad:?}");
        s.flush_failure();
        assert_eq!(s.pending(), close_frame(1007));
    }
    // Within a single frame whose payload has not all arrived.
    let mut s = Session::new(MAX_MESSAGE);
    let frame = f(0x81, b"abc\xff and more to come");
    assert_eq!(feed(&mut s, &frame[..10]), [closed(1007)]);
}

#[test]
fn a_text_message_ending_inside_a_sequence_fails_with_1007() {
    let mut bytes = f(0x01, b"x");
    bytes.extend(f(0x80, &"€".as_bytes()[..2]));
    let (ev, _) = feed_both_ways(&bytes, MAX_MESSAGE);
    assert_eq!(ev, [closed(1007)]);
    // Binary messages are not text.
    let (ev, _) = feed_both_ways(&f(0x82, b"\xff\xfe"), MAX_MESSAGE);
    assert_eq!(ev, [Event::Binary(b"\xff\xfe".to_vec())]);
}

#[test]
fn messages_over_the_limit_fail_with_1009_on_the_head() {
    let mut s = Session::new(100);
    // The head alone is enough: no payload was sent, none is buffered.
    assert_eq!(feed(&mut s, &f(0x82, &[0; 101])[..8]), [closed(1009)]);
    s.flush_failure();
    assert_eq!(s.pending(), close_frame(1009));
    // Across fragments.
    let mut bytes = f(0x02, &[0; 60]);
    bytes.extend(f(0x00, &[0; 41]));
    assert_eq!(feed_both_ways(&bytes, 100).0, [closed(1009)]);
    assert_eq!(
        feed_both_ways(&f(0x82, &[0; 100]), 100).0,
        [Event::Binary(vec![0; 100])]
    );
    // A 64-bit length the size of the address space is one more too-large message.
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    huge.extend_from_slice(&M);
    assert_eq!(feed(&mut Session::new(MAX_MESSAGE), &huge), [closed(1009)]);
}

#[test]
fn a_client_close_is_answered_with_its_code_and_ends_the_session() {
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    let mut s = Session::new(MAX_MESSAGE);
    let ev = feed(&mut s, &f(0x88, &payload));
    assert_eq!(
        ev,
        [Event::Closed {
            code: 1001,
            reason: "bye ✓".into()
        }]
    );
    assert_eq!(s.pending(), close_frame(1001));
    assert!(s.is_closed() && !s.is_open());
    assert_eq!(s.send_text("late"), Err(SendError::Closed));
    // Without a code: 1005 for the app, an empty close back.
    let mut s = Session::new(MAX_MESSAGE);
    assert_eq!(feed(&mut s, &f(0x88, b"")), [closed(1005)]);
    assert_eq!(s.pending(), b"\x88\x00");
}

#[test]
fn close_codes_and_reasons_are_checked() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        assert_eq!(
            feed(&mut Session::new(10), &f(0x88, &code.to_be_bytes())),
            [closed(code)]
        );
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut s = Session::new(10);
        assert_eq!(
            feed(&mut s, &f(0x88, &code.to_be_bytes())),
            [closed(1002)],
            "{code}"
        );
        s.flush_failure();
        assert_eq!(s.pending(), close_frame(1002));
    }
    assert_eq!(feed(&mut Session::new(10), &f(0x88, &[3])), [closed(1002)]);
    assert_eq!(
        feed(&mut Session::new(10), &f(0x88, b"\x03\xe8\xff")),
        [closed(1007)]
    );
}

#[test]
fn after_the_server_closes_only_the_clients_reply_counts() {
    let mut s = Session::new(MAX_MESSAGE);
    let reason = "é".repeat(70); // 140 bytes: cut to 122, a character's end.
    s.close(4000, &reason).unwrap();
    let sent = s.pending().to_vec();
    assert_eq!(&sent[..4], &[0x88, 124, 0x0F, 0xA0]);
    assert_eq!(std::str::from_utf8(&sent[4..]).unwrap(), "é".repeat(61));
    assert!(!s.is_open() && !s.is_closed());
    assert_eq!(s.send_binary(b"x"), Err(SendError::Closed));
    assert_eq!(s.close(1000, ""), Err(SendError::Closed));
    // Messages and pings in flight are dropped; the reply closes without an answer.
    let mut bytes = f(0x81, b"in flight");
    bytes.extend(f(0x89, b"ping"));
    bytes.extend(f(0x88, &4000u16.to_be_bytes()));
    s.advance(sent.len());
    assert_eq!(feed(&mut s, &bytes), [closed(4000)]);
    assert!(s.is_closed());
    assert!(s.pending().is_empty());
}

#[test]
fn the_app_may_not_send_reserved_close_codes() {
    let mut s = Session::new(10);
    for code in [1005u16, 1006, 1015, 999, 5000] {
        assert_eq!(s.close(code, ""), Err(SendError::Code(code)));
    }
    assert!(s.is_open());
}

#[test]
fn the_socket_ending_without_a_close_is_1006() {
    let mut s = Session::new(10);
    let mut ev = Vec::new();
    s.feed(&f(0x01, b"half")[..4], &mut ev);
    s.feed_eof(&mut ev);
    assert_eq!(ev, [closed(1006)]);
    ev.clear();
    s.feed_eof(&mut ev);
    assert_eq!(ev, [], "once");
}

#[test]
fn sent_frames_are_queued_in_order_and_the_buffer_let_go_once_written() {
    let mut s = Session::new(10);
    s.send_text("ab").unwrap();
    s.send_binary(&[1]).unwrap();
    assert_eq!(s.pending(), b"\x81\x02ab\x82\x01\x01");
    s.advance(3);
    assert_eq!(s.pending(), b"b\x82\x01\x01");
    s.send_text("c").unwrap();
    assert_eq!(s.pending(), b"b\x82\x01\x01\x81\x01c");
    s.advance(s.pending().len());
    assert!(s.pending().is_empty());
    assert_eq!(s.out.capacity(), 0);
}

#[test]
fn an_idle_session_holds_no_heap_buffer() {
    let mut s = Session::new(MAX_MESSAGE);
    let mut bytes = f(0x81, &[b'a'; 5000]);
    bytes.extend(f(0x89, b"p"));
    bytes.extend(f(0x02, b"frag"));
    bytes.extend(f(0x80, b"ment"));
    bytes.extend(&f(0x81, b"next")[..5]); // a partial head stays, inline
    let ev = feed(&mut s, &bytes);
    assert_eq!(ev.len(), 2);
    let n = s.pending().len();
    s.advance(n);
    assert_eq!((s.out.capacity(), s.control.capacity()), (0, 0));
    assert!(s.msg.is_none());
    assert!(
        std::mem::size_of::<Session>() <= 160,
        "{}",
        std::mem::size_of::<Session>()
    );
}

#[test]
fn the_app_answers_the_messages_before_a_fault_before_the_failing_close() {
    // A message, then a frame with a reserved bit (Autobahn 3.2): the app's echo
    // of the message goes out before the 1002 close.
    let mut bytes = f(0x81, b"first");
    bytes.extend(f(0xA1, b"bad"));
    let mut s = Session::new(MAX_MESSAGE);
    assert_eq!(
        feed(&mut s, &bytes),
        [Event::Text("first".into()), closed(1002)]
    );
    assert!(s.pending().is_empty(), "the close waits for the app");
    s.send_text("first").unwrap();
    s.flush_failure();
    let mut want = b"\x81\x05first".to_vec();
    want.extend(close_frame(1002));
    assert_eq!(s.pending(), want);
    assert_eq!(s.send_text("late"), Err(SendError::Closed));
    // An app's own close while failing sends the fault's code.
    let mut s = Session::new(MAX_MESSAGE);
    feed(&mut s, &f(0x83, b""));
    s.close(1000, "bye").unwrap();
    assert_eq!(s.pending(), close_frame(1002));
    // The socket's end while failing says nothing more.
    let mut s = Session::new(MAX_MESSAGE);
    feed(&mut s, &f(0x83, b""));
    let mut ev = Vec::new();
    s.feed_eof(&mut ev);
    assert_eq!(ev, []);
    assert!(s.is_closed());
}

#[test]
fn pings_are_not_answered_while_a_megabyte_waits_to_be_written() {
    let mut s = Session::new(MAX_MESSAGE);
    let ping = f(0x89, &[b'p'; 125]);
    for _ in 0..20_000 {
        feed(&mut s, &ping); // 2.5 MB of pongs if all were answered
    }
    let waiting = s.pending().len();
    assert!((1 << 20..(1 << 20) + 200).contains(&waiting), "{waiting}");
    // Once the client reads, pings are answered again.
    s.advance(waiting);
    feed(&mut s, &ping);
    assert_eq!(s.pending().len(), 127);
}
