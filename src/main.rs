//! The `groundcrew` binary: parses the command line, runs the command, and
//! turns an error into one message on stderr and a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = groundcrew::cli::Cli::parse();
    match groundcrew::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("groundcrew: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Caps glibc's malloc at two arenas. By default every thread that
/// allocates may get its own (up to eight per core), and memory freed in
/// one stays with it: the integrity checks and feed readings run on
/// tokio's blocking threads, so the daemon's resident size grew with the
/// number of threads that ever ran one rather than with what it holds.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
