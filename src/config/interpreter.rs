//! Which Python runs the workers. The front is not Python, so it picks the app's
//! own interpreter, in this order: `--python` / `[python] interpreter`; else the
//! virtualenv of `--venv` / `[python] venv` / `$VIRTUAL_ENV`; else the `python`
//! beside the `ferricorn` executable (installed into a venv by pip, it sits in that
//! venv's `bin/`); else `python3` on `PATH`. Choosing only looks at paths; whether
//! the interpreter can run our worker is asked of it later (`supervisor::probe`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The interpreter the workers run on, and why it was picked (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// Run as given, never canonicalised: a venv's `bin/python` is a symlink, and
    /// CPython finds its `pyvenv.cfg` through the path it was started by.
    pub path: PathBuf,
    pub chosen_by: String,
}

/// A user's setting named something that is not there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChoiceError {
    #[error("{origin} {}: {} does not exist (is it a virtualenv? `python3 -m venv {}` makes one)", dir.display(), python.display(), dir.display())]
    NotAVenv {
        origin: &'static str,
        dir: PathBuf,
        python: PathBuf,
    },
    #[error("{origin} {}: no such file", path.display())]
    NoInterpreter { origin: &'static str, path: PathBuf },
    #[error("no Python interpreter: python3 is not on PATH; name the app's interpreter with --python or its virtualenv with --venv")]
    NotOnPath,
}

/// A setting and where it came from ("--venv", "[python] venv", "$VIRTUAL_ENV").
pub type Given<'a> = Option<(&'a Path, &'static str)>;

/// Picks the interpreter; `exe_dir` is the directory of the running `ferricorn`,
/// `path_var` the value of `PATH`.
pub fn choose(
    explicit: Given<'_>,
    venv: Given<'_>,
    exe_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<Interpreter, ChoiceError> {
    if let Some((path, origin)) = explicit {
        // A bare name ("python3.13") is looked up on PATH, as a shell would.
        let found = if path.components().count() == 1 {
            search_path(path.as_os_str(), path_var)
        } else {
            Some(path.to_path_buf()).filter(|p| p.exists())
        };
        let path = found.ok_or_else(|| ChoiceError::NoInterpreter {
            origin,
            path: path.to_path_buf(),
        })?;
        return Ok(Interpreter {
            path,
            chosen_by: origin.into(),
        });
    }
    if let Some((dir, origin)) = venv {
        let python = dir.join("bin/python");
        if !python.exists() {
            return Err(ChoiceError::NotAVenv {
                origin,
                dir: dir.to_path_buf(),
                python,
            });
        }
        return Ok(Interpreter {
            path: python,
            chosen_by: origin.into(),
        });
    }
    if let Some(python) = exe_dir.map(|d| d.join("python")).filter(|p| is_file(p)) {
        return Ok(Interpreter {
            path: python,
            chosen_by: "beside ferricorn".into(),
        });
    }
    match search_path(OsStr::new("python3"), path_var) {
        Some(path) => Ok(Interpreter {
            path,
            chosen_by: "python3 on PATH".into(),
        }),
        None => Err(ChoiceError::NotOnPath),
    }
}

fn search_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_file(p))
}

fn is_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn the_order_is_explicit_then_venv_then_beside_then_path() {
        let t = tempfile::tempdir().unwrap();
        let (venv, beside, on_path) = (t.path().join("v"), t.path().join("b"), t.path().join("p"));
        for p in [
            venv.join("bin/python"),
            beside.join("python"),
            on_path.join("python3"),
        ] {
            touch(&p);
        }
        let path_var = std::env::join_paths([t.path().join("nothing"), on_path.clone()]).unwrap();
        let path = Some(path_var.as_os_str());
        let pick = |e: Given<'_>, v: Given<'_>, b: Option<&Path>| choose(e, v, b, path).unwrap();
        let explicit = Path::new("/bin/sh");
        let got = pick(
            Some((explicit, "--python")),
            Some((&venv, "--venv")),
            Some(&beside),
        );
        assert_eq!(
            (got.path.as_path(), got.chosen_by.as_str()),
            (explicit, "--python")
        );
        let got = pick(None, Some((&venv, "$VIRTUAL_ENV")), Some(&beside));
        assert_eq!(got.path, venv.join("bin/python"));
        assert_eq!(got.chosen_by, "$VIRTUAL_ENV");
        assert_eq!(pick(None, None, Some(&beside)).path, beside.join("python"));
        assert_eq!(pick(None, None, Some(&venv)).path, on_path.join("python3"));
        assert_eq!(
            pick(Some((Path::new("python3"), "--python")), None, None).path,
            on_path.join("python3")
        );
    }

    #[test]
    fn what_is_not_there_is_named() {
        let t = tempfile::tempdir().unwrap();
        let err = choose(None, Some((t.path(), "--venv")), None, None).unwrap_err();
        assert!(matches!(
            err,
            ChoiceError::NotAVenv {
                origin: "--venv",
                ..
            }
        ));
        assert!(
            err.to_string().contains("bin/python does not exist"),
            "{err}"
        );
        let missing = t.path().join("python9");
        let err = choose(Some((&missing, "--python")), None, None, None).unwrap_err();
        assert!(err.to_string().starts_with("--python "), "{err}");
        let empty = std::ffi::OsString::new();
        assert_eq!(
            choose(None, None, None, Some(&empty)),
            Err(ChoiceError::NotOnPath)
        );
    }
}
