//! The TOML file as written by users: raw structs, every key optional, unknown keys
//! refused. `config::Settings` is built from these plus the command line.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `MODULE:CALLABLE`, like the positional argument.
    pub app: Option<String>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub python: PythonSection,
    #[serde(default)]
    pub workers: WorkersSection,
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticSection>,
    #[serde(default)]
    pub static_cache: StaticCacheSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub reload: ReloadSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub compression: CompressionSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub enabled: Option<bool>,
    pub min_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub bind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub bind: Option<Vec<String>>,
    pub keep_alive: Option<u64>,
    pub graceful_timeout: Option<u64>,
    pub front_threads: Option<usize>,
    pub pid: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub proxy_protocol: Option<bool>,
    pub umask: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    pub chdir: Option<PathBuf>,
    pub pythonpath: Option<Vec<PathBuf>>,
    pub venv: Option<PathBuf>,
    pub interpreter: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    pub count: Option<usize>,
    pub threads: Option<usize>,
    pub timeout: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_requests_jitter: Option<u64>,
    pub backlog: Option<usize>,
    pub queue_timeout: Option<u64>,
    pub boot_timeout: Option<u64>,
    pub look_ahead: Option<usize>,
    pub look_ahead_stall_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    pub url: String,
    pub dir: PathBuf,
    pub cache_control: Option<String>,
    pub index: Option<String>,
    pub precompressed: Option<bool>,
    pub fallthrough: Option<bool>,
    pub dotfiles: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCacheSection {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<usize>,
    pub max_file_size: Option<u64>,
    pub revalidate_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_body_size: Option<u64>,
    pub body_buffer_size: Option<u64>,
    pub body_memory: Option<u64>,
    pub response_buffer_size: Option<usize>,
    pub request_line: Option<usize>,
    pub request_fields: Option<usize>,
    pub request_field_size: Option<usize>,
    pub head_timeout: Option<u64>,
    pub body_timeout: Option<u64>,
    pub write_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub http2_max_streams: Option<u32>,
    pub require_host: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub forwarded_allow_ips: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<String>,
    pub format: Option<String>,
    pub error_logfile: Option<PathBuf>,
    pub access_logfile: Option<String>,
    pub access_log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    pub enabled: Option<bool>,
    pub extra_files: Option<Vec<PathBuf>>,
}
