//! `--check-config`'s output: the effective settings as a config file that loads
//! back to the same settings.

use super::*;

impl Settings {
    /// The config as TOML, for `--check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let q = |s: &str| format!("{s:?}");
        let path = |p: &Path| q(&p.display().to_string());
        if let Some(app) = &self.app {
            out += &format!("app = {}\n", q(app));
        }
        out += "\n[server]\n";
        let binds: Vec<String> = self.binds.iter().map(|b| q(&b.to_string())).collect();
        out += &format!("bind = [{}]\n", binds.join(", "));
        out += &format!("keep_alive = {}\n", self.keep_alive.as_secs());
        out += &format!("graceful_timeout = {}\n", self.graceful_timeout.as_secs());
        out += &format!("front_threads = {}\n", self.front_threads);
        out += &format!("proxy_protocol = {}\n", self.proxy_protocol);
        if let Some(p) = &self.pid {
            out += &format!("pid = {}\n", path(p));
        }
        if let Some(p) = &self.runtime_dir {
            out += &format!("runtime_dir = {}\n", path(p));
        }
        if let Some(m) = self.umask {
            out += &format!("umask = 0o{m:03o}\n");
        }
        out += "\n[python]\n";
        if let Some(p) = &self.python.chdir {
            out += &format!("chdir = {}\n", path(p));
        }
        let pp: Vec<String> = self.python.pythonpath.iter().map(|p| path(p)).collect();
        out += &format!("pythonpath = [{}]\n", pp.join(", "));
        if let Some(p) = &self.python.venv {
            out += &format!("venv = {}\n", path(p));
        }
        if let Some(i) = &self.python.interpreter {
            out += &format!("interpreter = {}  # {}\n", path(&i.path), i.chosen_by);
        }
        let w = &self.workers;
        out += "\n[workers]\n";
        out += &format!("count = {}\nthreads = {}\n", w.count, w.threads);
        out += &format!(
            "timeout = {}\n",
            w.timeout.map(|t| t.as_secs()).unwrap_or(0)
        );
        out += &format!(
            "max_requests = {}\nmax_requests_jitter = {}\n",
            w.max_requests, w.max_requests_jitter
        );
        out += &format!(
            "backlog = {}\nqueue_timeout = {}\nboot_timeout = {}\n",
            w.backlog,
            w.queue_timeout.as_secs(),
            w.boot_timeout.as_secs()
        );
        out += &format!(
            "look_ahead = {}\nlook_ahead_stall_ms = {}\n",
            w.look_ahead,
            w.look_ahead_stall.as_millis()
        );
        for s in &self.statics {
            out += "\n[[static]]\n";
            out += &format!("url = {}\ndir = {}\n", q(&s.url), path(&s.dir));
            if let Some(cc) = &s.cache_control {
                out += &format!("cache_control = {}\n", q(cc));
            }
            out += &format!(
                "index = {}\nprecompressed = {}\nfallthrough = {}\ndotfiles = {}\n",
                q(&s.index),
                s.precompressed,
                s.fallthrough,
                s.dotfiles
            );
        }
        let c = &self.static_cache;
        out += "\n[static_cache]\n";
        out += &format!(
            "max_bytes = {}\nmax_entries = {}\nmax_file_size = {}\nrevalidate_ms = {}\n",
            c.max_bytes,
            c.max_entries,
            c.max_file_size,
            c.revalidate.as_millis()
        );
        let l = &self.limits;
        out += "\n[limits]\n";
        out += &format!(
            "max_body_size = {}\nbody_buffer_size = {}\nbody_memory = {}\nresponse_buffer_size = {}\nrequest_line = {}\nrequest_fields = {}\nrequest_field_size = {}\n",
            l.max_body_size, l.body_buffer_size, l.body_memory, l.response_buffer_size, l.request_line, l.request_fields, l.request_field_size
        );
        out += &format!(
            "head_timeout = {}\nbody_timeout = {}\nwrite_timeout = {}\nmax_connections = {}\nhttp2_max_streams = {}\nrequire_host = {}\n",
            l.head_timeout.as_secs(),
            l.body_timeout.as_secs(),
            l.write_timeout.as_secs(),
            l.max_connections,
            l.http2_max_streams,
            l.require_host
        );
        out += &format!(
            "\n[proxy]\nforwarded_allow_ips = {}\n",
            q(&self.forwarded_allow_ips.to_string())
        );
        if let Some((cert, key)) = &self.tls {
            out += &format!(
                "\n[tls]\ncertfile = {}\nkeyfile = {}\n",
                path(cert),
                path(key)
            );
        }
        out += &format!(
            "\n[compression]\nenabled = {}\nmin_size = {}\n",
            self.compression.enabled, self.compression.min_size
        );
        out += &format!("\n[log]\nlevel = {}\n", q(&self.log_level));
        out += &format!(
            "format = {}\n",
            q(match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            })
        );
        if let Some(p) = &self.error_logfile {
            out += &format!("error_logfile = {}\n", path(p));
        }
        if let Some(a) = &self.access_logfile {
            out += &format!("access_logfile = {}\n", q(a));
        }
        out += &format!(
            "access_log_format = {}\n",
            q(match &self.access_log_format {
                super::access_log_format::Format::Combined => "combined",
                super::access_log_format::Format::Json => "json",
                super::access_log_format::Format::Template(t) => t,
            })
        );
        if let Some(a) = &self.admin_bind {
            out += &format!("\n[admin]\nbind = {}\n", q(&a.to_string()));
        }
        out += &format!("\n[reload]\nenabled = {}\n", self.reload);
        let extra: Vec<String> = self.reload_extra_files.iter().map(|p| path(p)).collect();
        out += &format!("extra_files = [{}]\n", extra.join(", "));
        out
    }
}
