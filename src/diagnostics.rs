//! zdd's own debugging output, apart from the reporters: color-eyre's report of a panic (a bug in zdd, with
//! where it happened), and `tracing` events — every command zdd runs, with its step — on stderr when asked
//! for with `-v`/`-vv` or `ZDD_LOG` (an `EnvFilter`, e.g. `ZDD_LOG=zdd_engine=debug`).

use std::io::IsTerminal;

/// Install the panic report and, if asked for, the debug log. `verbose` counts `-v` flags.
pub(crate) fn install(verbose: u8) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // color-eyre ignores NO_COLOR and non-terminals by itself: pick the theme here.
    let theme = if color { color_eyre::config::Theme::dark() } else { color_eyre::config::Theme::new() };
    // A hook that cannot be installed (one is already) leaves Rust's default panic message: not worth failing for.
    let _ = color_eyre::config::HookBuilder::default().theme(theme).display_env_section(false).install();

    let filter = match (std::env::var("ZDD_LOG"), verbose) {
        (Ok(spec), _) if !spec.trim().is_empty() => spec,
        (_, 0) => return,
        (_, 1) => "zdd=debug,zdd_engine=debug,zdd_steps=debug".to_owned(),
        _ => "zdd=trace,zdd_engine=trace,zdd_steps=trace".to_owned(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}
