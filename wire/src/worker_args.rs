//! The worker's command line, defined once: the master builds it with `to_args` and
//! the worker parses it with clap, so the two ends cannot drift apart.

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

/// A worker started by hand, or by a master of another version.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgs(String);

/// `--worker-connections` by default: gunicorn's `worker_connections` default.
pub const WORKER_CONNECTIONS: usize = 1000;

/// The interface the app is served through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Interface {
    /// PEP 3333: `app(environ, start_response)` on threads.
    #[default]
    Wsgi,
    /// ASGI 3.0: `await app(scope, receive, send)` on an event loop.
    Asgi,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Wsgi => "wsgi",
            Interface::Asgi => "asgi",
        }
    }
}

/// Arguments after `python -m ferricorn.worker`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "ferricorn.worker")]
pub struct WorkerArgs {
    /// The master's Unix socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// The claim table shared with the master (see `crate::claims`); without it
    /// every request read is run.
    #[arg(long)]
    pub claims: Option<PathBuf>,
    /// MODULE:CALLABLE
    #[arg(long, allow_hyphen_values = true)]
    pub app: String,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long)]
    pub chdir: Option<PathBuf>,
    #[arg(long)]
    pub pythonpath: Vec<PathBuf>,
    /// Development mode: show tracebacks in responses.
    #[arg(long)]
    pub dev: bool,
    /// Import the app, then exit 0 (used by --check-config).
    #[arg(long)]
    pub check: bool,
    /// Server hooks: a Python file or module (see `ferricorn._hooks`).
    #[arg(long)]
    pub hooks: Option<String>,
    /// Preload: import the app, then fork workers for the master, which asks over
    /// stdin (a seqpacket socket). `socket` is unused.
    #[arg(long)]
    pub zygote: bool,
    /// WSGI (threads) or ASGI (an event loop).
    #[arg(long, value_enum, default_value_t = Interface::Wsgi)]
    pub interface: Interface,
    /// ASGI: requests and WebSockets in flight at once in this worker.
    #[arg(long, default_value_t = WORKER_CONNECTIONS)]
    pub worker_connections: usize,
    /// ASGI: the event loop, `auto` (uvloop when it imports), `asyncio` or `uvloop`.
    #[arg(long, default_value = "auto")]
    pub asgi_loop: String,
    /// ASGI: the lifespan protocol, `auto`, `on` or `off`.
    #[arg(long, default_value = "auto")]
    pub asgi_lifespan: String,
    /// ASGI: the scope's `root_path` (the prefix the app is mounted under).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub root_path: String,
    /// The pipe the worker's own log records go to (`crate::log_record`), apart
    /// from the app's output; without it they are plain lines on stderr.
    #[arg(long)]
    pub log_fd: Option<i32>,
}

/// Clap's defaults (one definition of them), with an empty socket and app.
impl Default for WorkerArgs {
    fn default() -> Self {
        WorkerArgs {
            socket: PathBuf::new(),
            app: String::new(),
            ..WorkerArgs::parse_from(["ferricorn.worker", "--socket", "-", "--app", "-"])
        }
    }
}

impl WorkerArgs {
    /// The argv that `parse_from` turns back into `self` (without argv[0]).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["--socket".into(), self.socket.clone().into()];
        if let Some(c) = &self.claims {
            out.extend(["--claims".into(), c.clone().into()]);
        }
        out.extend([
            "--app".into(),
            self.app.clone().into(),
            "--threads".into(),
            self.threads.to_string().into(),
        ]);
        if let Some(d) = &self.chdir {
            out.extend(["--chdir".into(), d.clone().into()]);
        }
        for p in &self.pythonpath {
            out.extend(["--pythonpath".into(), p.clone().into()]);
        }
        if self.dev {
            out.push("--dev".into());
        }
        if self.check {
            out.push("--check".into());
        }
        if let Some(h) = &self.hooks {
            out.extend(["--hooks".into(), h.into()]);
        }
        if self.zygote {
            out.push("--zygote".into());
        }
        if let Some(fd) = self.log_fd {
            out.extend(["--log-fd".into(), fd.to_string().into()]);
        }
        if self.interface == Interface::Asgi {
            out.extend([
                "--interface".into(),
                "asgi".into(),
                "--worker-connections".into(),
                self.worker_connections.to_string().into(),
                "--asgi-loop".into(),
                self.asgi_loop.clone().into(),
                "--asgi-lifespan".into(),
                self.asgi_lifespan.clone().into(),
                "--root-path".into(),
                self.root_path.clone().into(),
            ]);
        }
        out
    }

    /// Parses what `to_args` built.
    pub fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Self, BadArgs> {
        let all = std::iter::once(OsString::from("ferricorn.worker")).chain(argv);
        Self::try_parse_from(all).map_err(|e| BadArgs(e.to_string().trim_end().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_master_builds_the_worker_parses_back() {
        let full = WorkerArgs {
            socket: "/run/x/w1.sock".into(),
            claims: Some("/run/x/w1.claims".into()),
            app: "pkg.mod:make()".into(),
            threads: 4,
            chdir: Some("/srv/app dir".into()),
            pythonpath: vec!["/a".into(), "/b,c".into()],
            dev: true,
            check: true,
            hooks: Some("conf/hooks.py".into()),
            zygote: true,
            log_fd: Some(3),
            interface: Interface::Asgi,
            worker_connections: 77,
            asgi_loop: "uvloop".into(),
            asgi_lifespan: "on".into(),
            root_path: "/api".into(),
        };
        assert_eq!(WorkerArgs::parse_args(full.to_args()).unwrap(), full);
        let bare = WorkerArgs {
            socket: "/dev/null".into(),
            app: "--looks-like-a-flag".into(),
            threads: 1,
            ..Default::default()
        };
        assert_eq!(WorkerArgs::parse_args(bare.to_args()).unwrap(), bare);
    }
}
