//! ASGI workers (`-k asgi`) behind the front, over real sockets, with a raw ASGI
//! app (tests/apps/asgi_raw.py, no framework): the scope, request bodies in
//! `more_body` chunks, streamed responses, many requests in flight on one worker,
//! `http.disconnect`, lifespan, errors, and the interface checks.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn asgi(extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi"];
    args.extend_from_slice(extra);
    test_app("asgi_raw:app", &args).start()
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let r = client().get(server.url(path)).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn hello_over_http1() {
    let server = asgi(&[]);
    assert_eq!(get(&server, "/"), (200, "hello".into()));
    let line = server.wait_for_log("booted: app asgi_raw:app (ASGI", Duration::from_secs(5));
    assert!(line.contains("loop"), "{line}");
}
