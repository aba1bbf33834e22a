//! Reload (HUP, or a code change with `--reload`): a new generation of workers,
//! started with the new settings, replaces the old one, each new worker ready before
//! an old one drains. A HUP during a reload restarts it with the newer settings.
//!
//! A reload whose new worker cannot serve (the app does not import, speaks the
//! other interface, or the venv's worker module is another ferricorn's) is called
//! off and leaves the server as it was, as gunicorn and nginx users expect: the old
//! workers serve on, and the settings in force before it (the first, when a reload
//! restarted one under way) are put back: the spec, the pool size and the master's
//! hooks helper. Without that, every worker started later (after a crash,
//! max-requests, a timeout, max-lifetime) got the failed settings, failed for ever,
//! and the pool emptied. A worker a called-off reload did start runs the settings
//! given up: it is replaced like a recycled one.

use super::policy;
use super::spec::WorkerSpec;
use super::start::StartError;
use super::{hooks, Purpose, Supervisor, WorkerState};
use crate::observe::RestartReason;
use std::collections::HashSet;
use std::time::Duration;

/// What a reload changes, as it was before the first of the reloads under way.
pub(super) struct Settled {
    spec: WorkerSpec,
    /// TTIN and TTOU during the reload change it too.
    pub(super) target: usize,
    hooks: Option<hooks::HookHelper>,
    /// The last generation started with these settings.
    generation: u64,
    /// The workers the reload set to be replaced (not those already being recycled).
    marked: HashSet<u32>,
}

impl Supervisor {
    pub(super) fn reload(&mut self, spec: WorkerSpec) {
        if self.reload_pending > 0 {
            tracing::info!("reload already in progress; restarting it with the new settings");
        }
        self.generation += 1;
        self.max_memory_warned = false;
        // The hooks file is read again, as the app is.
        let hooks = hooks::HookHelper::start(&spec, self.generation);
        let target = std::mem::replace(&mut self.target, spec.count);
        let before = Settled {
            spec: std::mem::replace(&mut self.spec, spec),
            target,
            hooks: std::mem::replace(&mut self.hooks, hooks),
            generation: self.generation - 1,
            marked: HashSet::new(),
        };
        // A restarted reload's settings were never in force: dropped (its hooks
        // helper exits).
        let settled = self.settled.get_or_insert(before);
        let mut old = 0;
        for (pid, w) in self.workers.iter_mut() {
            if w.state != WorkerState::Serving {
                continue;
            }
            old += 1;
            if !w.old {
                w.old = true;
                if w.generation <= settled.generation {
                    settled.marked.insert(*pid);
                }
            }
        }
        tracing::info!(
            old,
            new = self.target,
            "reloading: starting a new generation of workers"
        );
        // Production: one new worker at a time, each ready before an old one drains.
        // Development: all at once, so the new code serves as soon as possible.
        let at_once = if self.spec.dev { self.target } else { 1 };
        self.reload_pending = self.target;
        self.reload_to_start = self.target - at_once;
        for _ in 0..at_once {
            self.start_worker(Purpose::Reload, Duration::ZERO);
        }
    }

    /// A new-generation worker is ready (and an old one drains): the next starts,
    /// or the reload is complete.
    pub(super) fn reload_step(&mut self) {
        self.reload_pending = self.reload_pending.saturating_sub(1);
        if self.reload_to_start > 0 {
            self.reload_to_start -= 1;
            self.start_worker(Purpose::Reload, Duration::ZERO);
        } else if self.reload_pending == 0 {
            self.finish_reload();
        }
    }

    /// After a reload: any old worker left (the pool shrank) drains too, and the
    /// settings before it are let go.
    fn finish_reload(&mut self) {
        let old: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.old && w.state == WorkerState::Serving)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in old {
            self.metrics.worker_restarted(RestartReason::Reload);
            self.drain(pid);
        }
        self.settled = None;
        tracing::info!(workers = self.target, "reload complete");
        crate::systemd::notify("READY=1");
    }

    /// The reload's new worker cannot serve: it is called off and the settings
    /// before it come back (module doc).
    pub(super) fn reload_failed(&mut self, e: &StartError) {
        if e.is_import_failure() {
            tracing::error!("reload failed: the new code does not import (traceback above); old workers keep serving");
        } else if e.is_interface_mismatch() {
            tracing::error!("reload failed: the app speaks the other interface (said above); old workers keep serving");
        } else {
            tracing::error!(error = %e, "reload failed: the venv's worker module is another ferricorn's; old workers keep serving");
        }
        self.reload_pending = 0;
        self.reload_to_start = 0;
        // The failures were the given-up settings', not those put back.
        self.failures = 0;
        if let Some(settled) = self.settled.take() {
            self.restore(settled);
        }
        crate::systemd::notify("READY=1");
        self.fill();
    }

    /// Puts back the settings before a called-off reload, in a generation of their
    /// own: the called-off one's starts still under way are superseded, and
    /// (preload) a zygote is started again for them.
    fn restore(&mut self, settled: Settled) {
        self.generation += 1;
        self.spec = settled.spec;
        self.target = settled.target;
        self.hooks = settled.hooks;
        for (pid, w) in self.workers.iter_mut() {
            if w.state != WorkerState::Serving {
                continue;
            }
            let marked = settled.marked.contains(pid);
            let replaced = policy::replaced_after_failed_reload(
                w.generation,
                settled.generation,
                marked,
                w.old,
            );
            if replaced && w.generation > settled.generation {
                self.metrics.worker_restarted(RestartReason::Reload);
            }
            w.old = replaced;
        }
        tracing::info!(
            workers = self.target,
            "the settings before the reload are back in force"
        );
    }
}
