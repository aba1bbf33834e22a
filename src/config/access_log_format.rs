//! The access log's format setting: `combined`, `json`, a `{field}` template, or a
//! gunicorn `%(h)s`-style format translated to a template; and the field names a
//! template may use (the access log renders them).

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
    // Bytes received from the client: a WebSocket's, at its close; `-` otherwise.
    "bytes_in",
    "duration_ms",
    "user_agent",
    "referer",
    "request_id",
    "worker_pid",
    "upstream_ms",
    "queue_ms",
];

/// Fields only a template uses: the JSON line has the same facts under `FIELDS`.
pub const TEMPLATE_FIELDS: &[&str] = &[
    "request",
    "time_local",
    "duration",
    "duration_s",
    "duration_us",
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
            t if t.contains("%(") => Ok(Format::Template(from_gunicorn(t)?)),
            t if t.contains('{') => {
                for name in placeholders(t) {
                    if !FIELDS.contains(&name) && !TEMPLATE_FIELDS.contains(&name) {
                        return Err(format!(
                            "access log template field {{{name}}} is unknown; known: {}, {}",
                            FIELDS.join(", "),
                            TEMPLATE_FIELDS.join(", ")
                        ));
                    }
                }
                Ok(Format::Template(t.to_string()))
            }
            other => Err(format!(
                "access log format {other:?}: expected combined, json, a template with \
                 {{field}}s or gunicorn's %(h)s codes"
            )),
        }
    }
}

pub fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
}

/// gunicorn's `access_log_format` (`%(h)s %(l)s %(u)s %(t)s "%(r)s" ...`) as a
/// template. Header and environ codes (`%({name}i)s`, `%({name}o)s`, `%({name}e)s`)
/// have no equivalent and are refused, as are literal braces.
fn from_gunicorn(format: &str) -> Result<String, String> {
    let literal = |text: &str, out: &mut String| {
        if text.contains(['{', '}']) {
            return Err(format!(
                "access log format {format:?}: a gunicorn format cannot hold {{ or }}"
            ));
        }
        out.push_str(text);
        Ok(())
    };
    let mut out = String::with_capacity(format.len() + 32);
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        literal(&rest[..at], &mut out)?;
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        let code = after
            .strip_prefix('(')
            .and_then(|b| b.split_once(")s"))
            .ok_or_else(|| format!("access log format {format:?}: a lone % (write %%)"))?;
        out.push_str(gunicorn_code(code.0)?);
        rest = code.1;
    }
    literal(rest, &mut out)?;
    Ok(out)
}

/// One gunicorn atom and what it becomes. `l` and `u` are always `-` here: ferricorn
/// does not decode Basic credentials into the log.
fn gunicorn_code(code: &str) -> Result<&'static str, String> {
    Ok(match code {
        "h" => "{remote}",
        "l" | "u" => "-",
        "t" => "{time_local}",
        "r" => "{request}",
        "m" => "{method}",
        "U" => "{path}",
        "q" => "{query}",
        "H" => "{protocol}",
        "s" => "{status}",
        "B" | "b" => "{bytes}",
        "f" => "{referer}",
        "a" => "{user_agent}",
        "T" => "{duration_s}",
        "D" => "{duration_us}",
        "L" => "{duration}",
        "M" => "{duration_ms}",
        "p" => "{worker_pid}",
        other => {
            return Err(format!(
                "gunicorn access log code %({other})s is not supported; \
                 supported: h l u t r m U q H s B b f a T D L M p"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorns_default_format_becomes_a_template() {
        let gunicorn = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
        assert_eq!(
            Format::parse(gunicorn),
            Ok(Format::Template(
                r#"{remote} - - {time_local} "{request}" {status} {bytes} "{referer}" "{user_agent}""#
                    .into()
            ))
        );
        assert_eq!(
            Format::parse("%(D)sus %(L)ss 100%%"),
            Ok(Format::Template("{duration_us}us {duration}s 100%".into()))
        );
    }

    #[test]
    fn gunicorn_codes_without_an_equivalent_are_refused() {
        for bad in ["%({x-forwarded-for}i)s", "%(Z)s", "50% %(h)s", "{%(h)s}"] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
    }
}
