//! Thin entry point: the master. Errors are printed once, there, and mapped to
//! the documented exit status. (Workers are the app's own interpreter running
//! `python -m ferricorn.worker`, not this binary.)

use std::process::ExitCode;

fn main() -> ExitCode {
    ferricorn::master::main()
}
