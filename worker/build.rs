//! The extension module itself links no libpython (maturin builds it with
//! PYO3_BUILD_EXTENSION_MODULE, so the interpreter that imports it provides the
//! symbols). `cargo test` of this crate links one, though: record its directory so
//! the unit-test binary finds it.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
