//! The `zdd` command: argument parsing, reporter choice and exit codes. The work is in `zdd-engine`.

mod cli;
mod scaffold;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = cli::dispatch(args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
