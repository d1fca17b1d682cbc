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

/// One page: the commands, then each command's synopsis, description and options under its own heading (clap's
/// page alone lists the commands, not their options).
pub(super) fn man() -> i32 {
    let mut cli = Cli::command();
    cli.build();
    let mut buf = Vec::new();
    let mut rendered = clap_mangen::Man::new(cli.clone()).render(&mut buf);
    for command in cli.get_subcommands().filter(|c| c.get_name() != "help") {
        let page = clap_mangen::Man::new(command.clone());
        let mut section = Vec::new();
        rendered = rendered
            .and_then(|()| page.render_synopsis_section(&mut section))
            .and_then(|()| page.render_description_section(&mut section))
            .and_then(|()| page.render_options_section(&mut section));
        let heading = format!(".SH \"ZDD {}\"", command.get_name().to_uppercase());
        let section = String::from_utf8_lossy(&section)
            .replacen(".SH SYNOPSIS", &heading, 1)
            .replacen(".SH DESCRIPTION", ".SS Description", 1)
            .replacen(".SH OPTIONS", ".SS Options", 1);
        buf.extend_from_slice(section.as_bytes());
    }
    if let Err(e) = rendered {
        eprintln!("zdd: could not render the man page: {e}");
        return exit::INVALID;
    }
    super::out::write_stdout_bytes(&buf);
    exit::OK
}
