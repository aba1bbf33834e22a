//! Thin entry point: the hidden worker subcommand, or the master. Errors are
//! printed once, here, and mapped to the documented exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(std::ffi::OsStr::new(ferricorn::worker::SUBCOMMAND)) {
        return ferricorn::worker::main();
    }
    ferricorn::master::main()
}
