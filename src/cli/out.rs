//! Writing a command's result to stdout without panicking when the reader went away.
//!
//! `println!` panics when stdout is a closed pipe (`zdd history | head -1`), and Rust ignores SIGPIPE, so every
//! command that prints its result writes through [`outln!`]/[`out!`] instead. A reader that stopped reading
//! wanted no more: the rest is dropped and the command ends as it would have (its lock released, its exit code
//! kept). Any other write error is said once on stderr.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// `println!` to stdout that survives a closed pipe.
macro_rules! outln {
    () => { $crate::cli::out::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to stdout that survives a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write_stdout(format_args!($($arg)*)) };
}

/// Set once a write failed: later writes are skipped rather than failing (and warned about) again.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Write to stdout and flush; see the module doc for what happens when that fails.
pub(super) fn write_stdout(args: std::fmt::Arguments<'_>) {
    write_with(|stdout| stdout.write_fmt(args));
}

/// Write bytes already rendered (completions, the man page) the same way.
pub(super) fn write_stdout_bytes(bytes: &[u8]) {
    write_with(|stdout| stdout.write_all(bytes));
}

fn write_with(write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    if FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = write(&mut stdout).and_then(|()| stdout.flush()) {
        FAILED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("zdd: cannot write to stdout: {e}");
        }
    }
}
