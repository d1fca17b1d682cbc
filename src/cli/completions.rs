//! `zdd completions SHELL` and `zdd man`: generated from the clap definitions, so they never drift.

use clap::CommandFactory;

use super::{Cli, Shell, exit};

pub(super) fn completions(shell: Shell) -> i32 {
    let mut cmd = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Rendered in memory first: `generate` panics when its writer fails (`zdd completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut cmd, "zdd", &mut script);
    super::out::write_stdout_bytes(&script);
    exit::OK
}

pub(super) fn man() -> i32 {
    let page = clap_mangen::Man::new(Cli::command());
    let mut buf = Vec::new();
    if let Err(e) = page.render(&mut buf) {
        eprintln!("zdd: could not render the man page: {e}");
        return exit::INVALID;
    }
    super::out::write_stdout_bytes(&buf);
    exit::OK
}
