//! Starting CPython inside the worker: the only raw FFI in the crate. A `PyConfig`
//! whose `program_name` is the venv's `bin/python` (or, without a venv, the
//! interpreter pyo3 was built against) lets CPython's own getpath find `pyvenv.cfg`,
//! so `sys.prefix`, `sys.executable` and site-packages are exactly what that
//! interpreter would have — `VIRTUAL_ENV` or `site.addsitedir` cannot do this for an
//! embedded interpreter (../shared/FACTS.md). Python installs no signal handlers:
//! the worker handles signals in Rust.

use pyo3::ffi;
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The interpreter pyo3 compiled and linked against (baked in by build.rs).
pub const BUILD_PYTHON: &str = env!("FERRICORN_PYTHON");

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("--venv {0}: {1} does not exist")]
    NoVenvPython(PathBuf, PathBuf),
    #[error("path {0:?} contains a NUL byte")]
    Nul(PathBuf),
    #[error("Python failed to start: {0}")]
    Status(String),
}

/// The `program_name` to hand to CPython.
pub fn program_name(venv: Option<&Path>) -> Result<PathBuf, InitError> {
    match venv {
        Some(v) => {
            let python = v.join("bin/python");
            if python.exists() {
                Ok(python)
            } else {
                Err(InitError::NoVenvPython(v.to_path_buf(), python))
            }
        }
        None => Ok(PathBuf::from(BUILD_PYTHON)),
    }
}

/// Initialises the interpreter once, then releases the GIL so any thread can attach
/// with `Python::attach`.
#[allow(unsafe_code)]
pub fn initialize(program: &Path) -> Result<(), InitError> {
    let program_c = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| InitError::Nul(program.to_path_buf()))?;
    let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
    let cfg = config.as_mut_ptr();
    // SAFETY: called once, from the main thread, before any other Python API.
    // PyConfig_InitPythonConfig fully initialises the struct behind `cfg` before we
    // read or write any field; fields are only touched through `cfg` (no aliasing
    // references); `program_c` outlives the SetBytesString call, which copies it;
    // PyConfig_Clear frees what the config owns on every path after init.
    unsafe {
        ffi::PyConfig_InitPythonConfig(cfg);
        // Our argv is ferricorn's, not Python's; signals are handled in Rust.
        (*cfg).parse_argv = 0;
        (*cfg).install_signal_handlers = 0;
        let status = ffi::PyConfig_SetBytesString(
            cfg,
            std::ptr::addr_of_mut!((*cfg).program_name),
            program_c.as_ptr(),
        );
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(cfg);
            return Err(InitError::Status(status_message(status)));
        }
        let status = ffi::Py_InitializeFromConfig(cfg);
        ffi::PyConfig_Clear(cfg);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(InitError::Status(status_message(status)));
        }
        // This thread holds the GIL after init; hand it back so `Python::attach`
        // works from every thread, this one included.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

#[allow(unsafe_code)]
fn status_message(status: ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        return "unknown error".into();
    }
    // SAFETY: a non-null err_msg of a PyStatus is a static NUL-terminated C string
    // set by CPython (PyStatus_Error takes a string literal).
    unsafe { CStr::from_ptr(status.err_msg) }
        .to_string_lossy()
        .into_owned()
}
