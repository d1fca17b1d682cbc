//! The plan's SSH hosts, connected before anything runs: one connection per destination the plan declares (and,
//! for `recover`, per destination its journal names), through the plan's `ssh-config` if it has one.

use std::sync::Arc;

use zdd_engine::host::{Host, HostError, HostSet, LocalHost, SshOptions};
use zdd_engine::plan::Plan;
use zdd_engine::run;
use zdd_engine::state::StateDir;

use super::exit;
use super::run::Refusal;

/// This machine (with the state directory's process log) and a connection to each of the plan's hosts and
/// `extra`; the destinations that could not be connected to are returned with why (they are in the set as
/// unreachable hosts, whose every operation fails naming them).
pub(super) async fn connect<'a>(
    plan: &'a Plan,
    state: &StateDir,
    extra: impl IntoIterator<Item = &'a str>,
) -> (HostSet, Vec<(String, HostError)>) {
    let log = run::process_log_path(state.path());
    let local: Arc<dyn Host> = Arc::new(LocalHost::with_process_log(log.clone()));
    let mut hosts = HostSet::local(local);
    let options = SshOptions { config_file: plan.fleet.ssh_config.clone(), ..SshOptions::default() };
    let mut wanted: Vec<&str> = plan.fleet.destinations();
    wanted.extend(extra);
    let failed = if wanted.is_empty() { Vec::new() } else { hosts.connect(wanted, &options, Some(&log)).await };
    (hosts, failed)
}

/// One line per host that could not be reached.
pub(super) fn describe(failed: &[(String, HostError)]) -> String {
    failed.iter().map(|(host, e)| format!("  {host}: {e}")).collect::<Vec<_>>().join("\n")
}

/// A run refused because some host could not be reached: nothing has changed yet.
pub(super) fn refusal(failed: &[(String, HostError)]) -> Refusal {
    let n = failed.len();
    Refusal::new(
        exit::INVALID,
        format!(
            "preflight: cannot reach {n} host{} before the first step; nothing was changed\n{}\n  help: check that \
             the host is up, that ssh reaches it with the plan's ssh config (`ssh -F <ssh-config> <host> true`), and \
             that its key is in known_hosts",
            if n == 1 { "" } else { "s" },
            describe(failed)
        ),
    )
}
