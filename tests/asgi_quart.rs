//! Quart under ASGI workers (issue 27), tests/apps/asgi_quart.py: a route over
//! HTTP/1.1 and HTTP/2, and its WebSocket echo with the `websockets` library over
//! HTTP/1.1 and on an RFC 8441 stream of the `h2` crate.

mod common;

use common::*;
use std::time::Duration;

const APP: &str = "asgi_quart:app";

#[test]
fn quart_route_over_http1_and_http2() {
    let server = asgi_app(APP, &["-w", "2"]);
    let page = get_json(&server.url("/"));
    assert_eq!(page["hello"], "quart", "{page}");
    let (status, body) = h2_request(&server, "GET", "/", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"hello\":\"quart\""), "{body}");
}

#[test]
fn quart_websocket_echo() {
    let server = asgi_app(APP, &["-w", "1"]);
    let base = format!("ws://{}", server.addr);
    let args = [base.as_str(), "--quick"];
    let out = run_client(&server, "echo_client.py", &args, Duration::from_secs(120));
    assert!(out.contains("ok text and binary echo"), "{out}");

    runtime().block_on(async {
        let (mut send, mut recv) = h2_ws_open(server.addr, "/echo", &[]).await;
        for (op, payload) in [
            (0x1, "over h2 \u{2603}".as_bytes()),
            (0x2, &[0u8, 1, 255][..]),
        ] {
            h2_ws_send(&mut send, op, payload);
            assert_eq!(recv.recv().await, Some((op, payload.to_vec())));
        }
        // A close is answered with the same code.
        h2_ws_send(&mut send, 0x8, &1000u16.to_be_bytes());
        let (op, payload) = recv.recv().await.expect("a close reply");
        assert_eq!((op, &payload[..2]), (0x8, &1000u16.to_be_bytes()[..]));
    });
}
