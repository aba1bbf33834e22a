//! The access log's format setting: `combined`, `json` or a `{field}` template, and
//! the field names a template may use (the access log renders them).

/// Field names usable in a template, as `{name}`; also the JSON keys.
pub const FIELDS: &[&str] = &[
    "time",
    "remote",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "referer",
    "request_id",
    "worker_pid",
    "upstream_ms",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Combined,
    Json,
    Template(String),
}

impl Format {
    /// `combined`, `json`, or a template using `{field}` names from `FIELDS`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "combined" => Ok(Format::Combined),
            "json" => Ok(Format::Json),
            t if t.contains('{') => {
                for name in placeholders(t) {
                    if !FIELDS.contains(&name) {
                        return Err(format!(
                            "access log template field {{{name}}} is unknown; known: {}",
                            FIELDS.join(", ")
                        ));
                    }
                }
                Ok(Format::Template(t.to_string()))
            }
            other => Err(format!(
                "access log format {other:?}: expected combined, json or a template with {{field}}s"
            )),
        }
    }
}

pub fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
}
