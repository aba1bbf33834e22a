//! Records an RPATH to the libpython that pyo3 compiled against, so the binary
//! never silently loads another libpython3.11.so (see ../shared/FACTS.md), and bakes
//! that interpreter's path in as `FERRICORN_PYTHON`: without `--venv` the worker gives
//! it to CPython as `program_name`, so `sys.prefix`/`sys.executable` are that install's.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let python = pyo3_build_config::get()
        .executable()
        .unwrap_or("python3")
        .to_string();
    println!("cargo:rustc-env=FERRICORN_PYTHON={python}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
