//! Records an RPATH to the libpython that pyo3 compiled against, so the binary
//! never silently loads another libpython3.11.so (see ../shared/FACTS.md).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
