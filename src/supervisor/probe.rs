//! Asks the chosen interpreter, once, before any port answers, whether it can run
//! our worker: CPython >= 3.9 with the `ferricorn._worker` module of this very
//! ferricorn. Each way it cannot is one line that names the interpreter and the fix
//! (the master exits 2), instead of workers that fail one by one later.

use crate::config::interpreter::Interpreter;
use ferricorn_wire::{PROTOCOL, VERSION};
use std::process::Stdio;
use std::time::Duration;

/// Python 2 parses this too, so even a wrong interpreter answers.
const SCRIPT: &str = r#"
import sys
v = sys.version_info
name = getattr(getattr(sys, "implementation", None), "name", "python")
out = [name, "%d.%d.%d" % tuple(v[:3]), sys.executable or "", sys.prefix]
if name == "cpython" and tuple(v[:2]) >= (3, 9):
    try:
        from ferricorn import _worker
        out += ["ok", _worker.__version__, str(_worker.PROTOCOL), _worker.__file__]
    except Exception as e:
        out += ["missing", "%s: %s" % (type(e).__name__, e)]
sys.stdout.write("\n".join(out) + "\n")
"#;

/// A cold disk can make a first `import` slow; a hung interpreter must not be.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the interpreter said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub implementation: String,
    pub version: String,
    pub executable: String,
    pub prefix: String,
    pub module: Module,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Module {
    /// Not looked for: the interpreter cannot run it anyway.
    NotTried,
    Missing(String),
    Present {
        version: String,
        protocol: u32,
        file: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot run the Python interpreter {} ({}): {err}", .python.path.display(), .python.chosen_by)]
    Run {
        python: Interpreter,
        err: std::io::Error,
    },
    #[error("the Python interpreter {} ({}) did not answer: {why}", .python.path.display(), .python.chosen_by)]
    NoAnswer { python: Interpreter, why: String },
    #[error("{} is {} {}; ferricorn's workers need CPython 3.9 or newer: name another with --python or --venv", .python.path.display(), .found.implementation, .found.version)]
    Unsupported { python: Interpreter, found: Found },
    #[error("{} (CPython {}, prefix {}) has no ferricorn worker module ({why}): install ferricorn {VERSION} there, from the clone this server was built from (`{} -m pip install /path/to/ferricorn`, or `pip install git+https://…` of it) until ferricorn is on PyPI, then with `{} -m pip install ferricorn=={VERSION}`; or point --venv at the environment ferricorn is installed in", .python.path.display(), .found.version, .found.prefix, .python.path.display(), .python.path.display())]
    NoModule {
        python: Interpreter,
        found: Found,
        why: String,
    },
    #[error("{} has the worker module of ferricorn {theirs} (protocol {protocol}, {file}), but this server is ferricorn {VERSION} (protocol {PROTOCOL}): install the same version in both places (`{} -m pip install ferricorn=={VERSION}`)", .python.path.display(), .python.path.display())]
    OtherVersion {
        python: Interpreter,
        theirs: String,
        protocol: u32,
        file: String,
    },
}

/// Runs the probe; Ok when the workers can start on this interpreter.
pub async fn check(python: &Interpreter) -> Result<Found, Box<ProbeError>> {
    let mut cmd = tokio::process::Command::new(&python.path);
    super::process::without_master_env(&mut cmd);
    cmd.arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Tracked: the master reaps children it does not know (it is a subreaper), and
    // would take this one's exit status from tokio.
    let run = async {
        let child = super::process::spawn_tracked(&mut cmd)?;
        let pid = child.id();
        let out = child.wait_with_output().await;
        if let Some(pid) = pid {
            super::process::forget(pid);
        }
        out
    };
    let no_answer = |why: String| {
        Box::new(ProbeError::NoAnswer {
            python: python.clone(),
            why,
        })
    };
    let out = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Err(_) => return Err(no_answer(format!("no answer within {PROBE_TIMEOUT:?}"))),
        Ok(Err(err)) => {
            return Err(Box::new(ProbeError::Run {
                python: python.clone(),
                err,
            }))
        }
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found = parse(&stdout).ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .last()
            .unwrap_or("no output")
            .trim()
            .to_string();
        no_answer(format!("{}, {last}", out.status))
    })?;
    judge(python, found)
}

fn parse(stdout: &str) -> Option<Found> {
    let lines: Vec<&str> = stdout.lines().collect();
    let [implementation, version, executable, prefix, rest @ ..] = &lines[..] else {
        return None;
    };
    let module = match rest {
        [] => Module::NotTried,
        ["missing", why] => Module::Missing(why.to_string()),
        ["ok", version, protocol, file] => Module::Present {
            version: version.to_string(),
            protocol: protocol.parse().ok()?,
            file: file.to_string(),
        },
        _ => return None,
    };
    Some(Found {
        implementation: implementation.to_string(),
        version: version.to_string(),
        executable: executable.to_string(),
        prefix: prefix.to_string(),
        module,
    })
}

fn judge(python: &Interpreter, found: Found) -> Result<Found, Box<ProbeError>> {
    let python = python.clone();
    let err = match &found.module {
        Module::NotTried => ProbeError::Unsupported {
            python,
            found: found.clone(),
        },
        Module::Missing(why) => ProbeError::NoModule {
            python,
            why: why.clone(),
            found: found.clone(),
        },
        Module::Present {
            version,
            protocol,
            file,
        } if version != VERSION || *protocol != PROTOCOL => ProbeError::OtherVersion {
            python,
            theirs: version.clone(),
            protocol: *protocol,
            file: file.clone(),
        },
        Module::Present { .. } => return Ok(found),
    };
    Err(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python() -> Interpreter {
        Interpreter {
            path: "/srv/venv/bin/python".into(),
            chosen_by: "--venv".into(),
        }
    }

    fn said(tail: &str) -> Result<Found, Box<ProbeError>> {
        let text = format!("cpython\n3.12.3\n/srv/venv/bin/python\n/srv/venv\n{tail}");
        judge(&python(), parse(&text).unwrap())
    }

    #[test]
    fn each_answer_is_judged() {
        let ours = format!("ok\n{VERSION}\n{PROTOCOL}\n/x/_worker.abi3.so\n");
        assert_eq!(said(&ours).unwrap().version, "3.12.3");
        let err = said("missing\nModuleNotFoundError: No module named 'ferricorn'\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("has no ferricorn worker module (ModuleNotFoundError"),
            "{msg}"
        );
        assert!(
            msg.contains("/srv/venv/bin/python -m pip install ferricorn=="),
            "{msg}"
        );
        // What works before a release: the local build.
        assert!(
            msg.contains("/srv/venv/bin/python -m pip install /path/to/ferricorn`"),
            "{msg}"
        );
        let err = said("ok\n0.0.1\n1\n/x/_worker.abi3.so\n").unwrap_err();
        assert!(
            err.to_string().contains("ferricorn 0.0.1 (protocol 1"),
            "{err}"
        );
        let err = said("").unwrap_err();
        assert!(
            err.to_string()
                .contains("is cpython 3.12.3; ferricorn's workers need CPython 3.9"),
            "{err}"
        );
        assert!(parse("python2\n").is_none());
    }
}
