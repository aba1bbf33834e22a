//! The master's Python hooks (`[python] hooks`: `on_starting`, `when_ready`,
//! `child_exit`) run in a helper process of the app's interpreter, `python -m
//! ferricorn.hooks` (worker/python/ferricorn/hooks.py), since the master is not
//! Python. It is also what marks an exited worker's `prometheus_client` files dead
//! when `PROMETHEUS_MULTIPROC_DIR` is set, hooks file or not.
//!
//! Events go one a line to its stdin, in order, and the helper names each one back
//! on its stdout once its hook returned. Only `on_starting` is waited for, as
//! gunicorn runs it before any worker; the others never hold up the supervisor. What
//! the helper writes on stderr (what hooks print, a hook's traceback as one record)
//! is relayed into the error log. A reload starts a new helper with the new hooks.

use super::process;
use super::spec::WorkerSpec;
use crate::observe::worker_output;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// After this long, a boot still waiting on `on_starting` says so (once).
const SLOW_ON_STARTING: Duration = Duration::from_secs(10);

/// The environment variable prometheus_client's multiprocess mode reads.
const PROMETHEUS_MULTIPROC_DIR: &str = "PROMETHEUS_MULTIPROC_DIR";

pub struct HookHelper {
    events: mpsc::UnboundedSender<String>,
    /// Fires when the helper says `on_starting` returned (or it is gone); None
    /// without a hooks file, where there is nothing to wait for.
    on_starting_done: Option<oneshot::Receiver<()>>,
}

impl HookHelper {
    /// The helper for `spec`, if there is anything for it to do.
    pub fn start(spec: &WorkerSpec, generation: u64) -> Option<HookHelper> {
        if spec.hooks.is_none() && std::env::var_os(PROMETHEUS_MULTIPROC_DIR).is_none() {
            return None;
        }
        let spawned = process::records_pipe().and_then(|(records, records_end)| {
            Ok((process::spawn_hooks_helper(spec, records_end)?, records))
        });
        let (mut child, records) = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "hooks: cannot start the helper; no master hooks will run");
                return None;
            }
        };
        let pid = child.id().unwrap_or(0);
        if let Some(err) = child.stderr.take() {
            // Its records come on a pipe of their own, as a worker's do.
            tokio::spawn(worker_output::relay(pid, generation, err, records));
        }
        let (done_tx, done_rx) = oneshot::channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_done(out, done_tx));
        }
        let mut stdin = child.stdin.take()?;
        let (events, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    tracing::warn!(pid, "hooks: the helper is gone; master hooks no longer run");
                    break;
                }
            }
            // Its stdin closes here: the helper exits.
            drop(stdin);
            let _ = child.wait().await;
            process::forget(pid);
        });
        Some(HookHelper {
            events,
            on_starting_done: spec.hooks.is_some().then_some(done_rx),
        })
    }

    /// Runs `on_starting` and waits until it returned (or the helper is gone).
    pub async fn on_starting(&mut self) {
        self.send("on_starting");
        let Some(mut done) = self.on_starting_done.take() else {
            return;
        };
        if tokio::time::timeout(SLOW_ON_STARTING, &mut done)
            .await
            .is_err()
        {
            tracing::info!("waiting for the on_starting hook to return before starting workers");
            let _ = done.await;
        }
    }

    /// `on_starting`, `when_ready`, or `child_exit PID`.
    pub fn send(&self, event: &str) {
        let _ = self.events.send(format!("{event}\n"));
    }
}

/// Reads the helper's acknowledgements (one event name a line) until it exits;
/// fires `on_starting` at the first one. Read to the end, so a helper that outlives
/// many `child_exit`s never blocks on a full pipe.
async fn read_done(out: tokio::process::ChildStdout, on_starting: oneshot::Sender<()>) {
    let mut on_starting = Some(on_starting);
    let mut lines = tokio::io::BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "on_starting" {
            if let Some(tx) = on_starting.take() {
                let _ = tx.send(());
            }
        }
    }
}
