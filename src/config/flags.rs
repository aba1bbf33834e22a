//! The command line laid over the file: each flag that was given replaces its key in
//! the `FileConfig`, so one schema holds what the user asked for, either way. Flags
//! without a key (`--check-config`, `-c`) are read from `Cli` directly.

use super::file::{
    FileConfig, LimitsSection, LogSection, PythonSection, RouteSection, ServerSection,
    StaticSection, WorkersSection,
};
use super::ConfigError;
use crate::cli::Cli;

/// Lays `cli` over `f`. `--static URL=DIR` mounts come after the file's.
pub fn apply(cli: &Cli, f: &mut FileConfig) -> Result<(), ConfigError> {
    if let Some(class) = &cli.worker_class {
        f.workers.interface = Some(worker_class(class)?.into());
    }
    set(&mut f.app, &cli.app);
    server(cli, &mut f.server);
    python(cli, &mut f.python);
    workers(cli, &mut f.workers);
    limits(cli, &mut f.limits);
    log(cli, &mut f.log);
    set(&mut f.proxy.forwarded_allow_ips, &cli.forwarded_allow_ips);
    set(&mut f.proxy.real_ip_header, &cli.real_ip_header);
    set(&mut f.admin.bind, &cli.admin_bind);
    set(&mut f.tls.certfile, &cli.certfile);
    set(&mut f.tls.keyfile, &cli.keyfile);
    set(&mut f.tls.redirect_http, &cli.redirect_http);
    set(&mut f.tls.redirect_https_port, &cli.redirect_https_port);
    if cli.reload {
        f.reload.enabled = Some(true);
    }
    set_list(&mut f.reload.extra_files, &cli.reload_extra_file);
    for prefix in &cli.sticky {
        sticky(prefix, &mut f.routes);
    }
    for spec in &cli.statics {
        let (url, dir) = spec
            .split_once('=')
            .ok_or_else(|| ConfigError::invalid(format!("--static {spec:?}: expected URL=DIR")))?;
        f.statics.push(StaticSection::new(url, dir));
    }
    Ok(())
}

/// `--sticky PREFIX`: the file's `[[route]]` of that prefix becomes sticky, or a
/// new route with only that.
fn sticky(prefix: &str, routes: &mut Vec<RouteSection>) {
    match routes.iter_mut().find(|r| r.prefix == prefix) {
        Some(r) => r.sticky = Some(true),
        None => routes.push(RouteSection {
            prefix: prefix.to_owned(),
            timeout: None,
            max_body_size: None,
            rate: None,
            burst: None,
            ipv6_subnet: None,
            sticky: Some(true),
        }),
    }
}

/// gunicorn's `-k`: its sync and gthread workers are what ferricorn's threaded
/// workers are; async classes (gevent, eventlet, uvicorn's) are not supported.
/// The interface a gunicorn worker class stands for.
fn worker_class(class: &str) -> Result<&'static str, ConfigError> {
    match class {
        "sync" | "gthread" => Ok("wsgi"),
        "asgi"
        | "uvicorn.workers.UvicornWorker"
        | "uvicorn.workers.UvicornH11Worker"
        | "uvicorn_worker.UvicornWorker"
        | "uvicorn_worker.UvicornH11Worker" => Ok("asgi"),
        other => Err(ConfigError::invalid(format!(
            "-k {other}: not supported: use sync or gthread (a WSGI app on threads, \
             --threads N) or asgi (an ASGI app on an event loop; \
             uvicorn.workers.UvicornWorker is accepted too)"
        ))),
    }
}

fn set<T: Clone>(key: &mut Option<T>, flag: &Option<T>) {
    if let Some(v) = flag {
        *key = Some(v.clone());
    }
}

/// A repeatable flag replaces the key's list when given at least once.
fn set_list<T: Clone>(key: &mut Option<Vec<T>>, flag: &[T]) {
    if !flag.is_empty() {
        *key = Some(flag.to_vec());
    }
}

fn server(cli: &Cli, s: &mut ServerSection) {
    set_list(&mut s.bind, &cli.bind);
    set(&mut s.keep_alive, &cli.keep_alive);
    set(&mut s.graceful_timeout, &cli.graceful_timeout);
    set(&mut s.front_threads, &cli.front_threads);
    set(&mut s.pid, &cli.pid);
    set(&mut s.umask, &cli.umask);
    if cli.proxy_protocol {
        s.proxy_protocol = Some(true);
    }
}

fn python(cli: &Cli, p: &mut PythonSection) {
    set(&mut p.chdir, &cli.chdir);
    set_list(&mut p.pythonpath, &cli.pythonpath);
    set(&mut p.venv, &cli.venv);
    set(&mut p.interpreter, &cli.python);
    set(&mut p.hooks, &cli.hooks);
    set(&mut p.root_path, &cli.root_path);
}

fn workers(cli: &Cli, w: &mut WorkersSection) {
    set(&mut w.count, &cli.workers);
    set(&mut w.threads, &cli.threads);
    set(&mut w.timeout, &cli.timeout);
    set(&mut w.max_requests, &cli.max_requests);
    set(&mut w.max_requests_jitter, &cli.max_requests_jitter);
    set(&mut w.max_memory, &cli.max_memory);
    set(&mut w.max_lifetime, &cli.max_lifetime);
    if cli.preload {
        w.preload = Some(true);
    }
    set(&mut w.backlog, &cli.backlog);
    set(&mut w.boot_timeout, &cli.boot_timeout);
    set(&mut w.worker_connections, &cli.worker_connections);
    set(&mut w.asgi_loop, &cli.asgi_loop);
    set(&mut w.asgi_lifespan, &cli.asgi_lifespan);
}

fn limits(cli: &Cli, l: &mut LimitsSection) {
    set(&mut l.max_body_size, &cli.limit_request_body);
    set(&mut l.body_spool_files, &cli.body_spool_files);
    set(&mut l.body_spool_bytes, &cli.body_spool_bytes);
    set(&mut l.request_line, &cli.limit_request_line);
    set(&mut l.request_fields, &cli.limit_request_fields);
    set(&mut l.request_field_size, &cli.limit_request_field_size);
    set(&mut l.websocket_max, &cli.websocket_max);
    set(&mut l.websocket_idle_timeout, &cli.websocket_idle_timeout);
}

fn log(cli: &Cli, l: &mut LogSection) {
    set(&mut l.level, &cli.log_level);
    set(&mut l.format, &cli.log_format);
    set(&mut l.error_logfile, &cli.error_logfile);
    set(&mut l.access_logfile, &cli.access_logfile);
    set(&mut l.access_log_format, &cli.access_log_format);
}
