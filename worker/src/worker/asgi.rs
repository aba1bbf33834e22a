//! An ASGI worker's life (`--interface asgi`): connect to the master, then hand the
//! main thread to the loop (`crate::python::asgi`), which runs the lifespan
//! startup, says Ready, serves, and runs the lifespan shutdown after a drain; then
//! `worker_exit` and atexit, as for WSGI. A failed lifespan startup is reported
//! like an import failure (exit 3). The signal thread posts to the loop.

use super::{report, shutdown, signals, StartError};
use crate::claims::Claims;
use crate::log::wlog;
use crate::python::{self, asgi, App};
use crate::wire::{Frame, Ready};
use bytes::BytesMut;
use ferricorn_wire::worker_args::WorkerArgs;
use ferricorn_wire::{EXIT_APP_IMPORT, PROTOCOL};
use std::io::Write;
use std::os::unix::net::UnixStream;

pub(super) fn serve(args: &WorkerArgs, app: App) -> Result<u8, StartError> {
    let opts = options(args);
    let booted = match asgi::boot(&app, &opts) {
        Ok(booted) => booted,
        Err(e) => return failed(e),
    };
    let sock = UnixStream::connect(&args.socket)
        .map_err(|e| StartError::Connect(args.socket.clone(), e))?;
    let claims = match &args.claims {
        Some(path) => Some(Claims::open(path).map_err(|e| StartError::Claims(path.clone(), e))?),
        None => None,
    };
    let mut spawn_failed = None;
    let ready = |sock: &UnixStream, loop_name: &str| {
        let ready = Ready {
            protocol: PROTOCOL,
            pid: std::process::id(),
            interpreter: python::interpreter(),
        };
        let on = ready.interpreter.to_string();
        let mut out = BytesMut::new();
        crate::wire::encode(0, &Frame::Ready(Box::new(ready)), &mut out);
        if let Err(e) = (&*sock).write_all(&out) {
            wlog!("writing to the master failed: {e}");
        }
        wlog!(
            "booted: app {} (ASGI, {loop_name} loop, up to {} connections), on {on}",
            args.app,
            args.worker_connections
        );
    };
    let signals = |waker: asgi::Waker| {
        if let Err(e) = signals::spawn_with(move |term| waker.wake(term)) {
            spawn_failed = Some(e);
        }
    };
    match asgi::serve(booted, sock, claims, opts, ready, signals) {
        Ok(why) => {
            if let Some(e) = spawn_failed {
                return Err(StartError::Thread(e));
            }
            Ok(shutdown(why, args.hooks.is_some()))
        }
        Err(e) => failed(e),
    }
}

fn options(args: &WorkerArgs) -> asgi::Options {
    asgi::Options {
        asgi_loop: args.asgi_loop.clone(),
        lifespan: args.asgi_lifespan.clone(),
        root_path: args.root_path.clone(),
        threads: args.threads.max(1),
        dev: args.dev,
    }
}

/// A failed lifespan startup is reported like an import failure (exit 3).
fn failed(e: asgi::Failed) -> Result<u8, StartError> {
    match e {
        asgi::Failed::Startup(failure) => {
            report(&failure);
            Ok(EXIT_APP_IMPORT)
        }
        asgi::Failed::Loop(text) => Err(StartError::Loop(text)),
    }
}
