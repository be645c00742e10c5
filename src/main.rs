//! The `groundcrew` binary: parses the command line, runs the command, and
//! turns an error into one message on stderr and a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = groundcrew::cli::Cli::parse();
    match groundcrew::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("groundcrew: {e:#}");
            ExitCode::FAILURE
        }
    }
}
