//! The master's Python hooks (`[python] hooks`: `on_starting`, `when_ready`,
//! `child_exit`) run in a helper process of the app's interpreter, `python -m
//! ferricorn.hooks` (worker/python/ferricorn/hooks.py), since the master is not
//! Python. It is also what marks an exited worker's `prometheus_client` files dead
//! when `PROMETHEUS_MULTIPROC_DIR` is set, hooks file or not.
//!
//! Events go one a line to its stdin, in order, without waiting: a slow or broken
//! hook never holds up the supervisor. What the helper prints (a hook's traceback)
//! is relayed into the error log. A reload starts a new helper with the new hooks.

use super::process;
use super::spec::WorkerSpec;
use crate::observe::worker_output;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// The environment variable prometheus_client's multiprocess mode reads.
const PROMETHEUS_MULTIPROC_DIR: &str = "PROMETHEUS_MULTIPROC_DIR";

pub struct HookHelper {
    events: mpsc::UnboundedSender<String>,
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
        Some(HookHelper { events })
    }

    /// `on_starting`, `when_ready`, or `child_exit PID`.
    pub fn send(&self, event: &str) {
        let _ = self.events.send(format!("{event}\n"));
    }
}
