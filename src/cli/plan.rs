//! `zdd plan`: the dry-run preview of a run, as text or JSON. Reads the plan and the state directory; changes
//! nothing.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use zdd_engine::host::{HostError, HostSet, LocalHost, SshOptions};
use zdd_engine::kind::DeployTarget;
use zdd_engine::plan::{Plan, PlanHeader};
use zdd_engine::preview::{self, PreviewInput};
use zdd_engine::saved::SaveInput;
use zdd_engine::state::{State, StateDir, StateError};

use super::check::{open_plan, report_diagnostics};
use super::run::Refusal;
use super::{PlanArgs, StateArgs, exit};

/// `zdd plan`, and with `out` (`--out FILE`) the saved plan written there.
pub(super) fn run(args: &PlanArgs, state: &StateArgs, release: Option<&str>, json: bool, out: Option<&Path>) -> i32 {
    if let Some(Err(e)) = release.map(zdd_engine::state::check_release_id) {
        eprintln!("zdd: --release: {e}");
        return exit::INVALID;
    }
    let kinds = zdd_steps::builtin();
    // A saved plan may be applied from another working directory: the state directory it names is absolute.
    let state_dir_given =
        state.state_dir.as_deref().map(|d| if out.is_some() { super::saved::absolute(d) } else { d.to_path_buf() });
    let opened = open_plan(args, state_dir_given.as_deref(), &kinds);
    let unbound = match &opened.result {
        Ok(unbound) => unbound,
        Err(diags) => return report_diagnostics(diags, &opened.sources),
    };
    let current = match read_state(unbound.header()) {
        Ok(current) => current,
        Err(refusal) => return refusal.print(),
    };
    let target = match current.deploy_target(&unbound.header().slots, release) {
        Ok(target) => target,
        Err(e) => return cannot_decide(e).print(),
    };
    warn_if_bad(&current, &target);
    let plan = match unbound.bind(&target, &kinds) {
        Ok(plan) => Arc::new(plan),
        Err(diags) => return report_diagnostics(&diags, unbound.sources()),
    };
    let state_dir = &unbound.header().state_dir;
    if let Some(out) = out {
        let input = SaveInput {
            plan: &plan,
            state_dir,
            state_dir_given: state_dir_given.as_deref(),
            target: &target,
            state: &current,
            cwd: &std::env::current_dir().unwrap_or_default(),
        };
        if let Err(refusal) = super::saved::write(out, &input) {
            return refusal.print();
        }
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("zdd: cannot start the async runtime");
        return exit::INVALID;
    };
    let p = rt.block_on(async {
        let hosts = preview_hosts(&plan).await;
        preview::build(PreviewInput { plan: &plan, kinds: &kinds, target: &target, state_dir, hosts }).await
    });
    if json {
        match serde_json::to_string_pretty(&p) {
            Ok(s) => outln!("{s}"),
            Err(e) => {
                eprintln!("zdd: cannot encode the preview: {e}");
                return exit::INVALID;
            }
        }
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        out!("{}", preview::render_text(&p, color));
    }
    exit::OK
}

/// This machine and the plan's SSH hosts, for reading only. A host that cannot be reached is said on stderr; the
/// preview of its steps then says why they cannot be previewed.
async fn preview_hosts(plan: &Plan) -> HostSet {
    let (hosts, failed) = read_only_hosts(plan).await;
    for (host, e) in failed {
        eprintln!("zdd: cannot reach {host}: {e}");
    }
    hosts
}

/// This machine and the plan's SSH hosts, connected for reading only, and those that could not be reached.
pub(super) async fn read_only_hosts(plan: &Plan) -> (HostSet, Vec<(String, HostError)>) {
    let mut hosts = HostSet::local(Arc::new(LocalHost::new()));
    let destinations = plan.fleet.destinations();
    if destinations.is_empty() {
        return (hosts, Vec::new());
    }
    let options = SshOptions { config_file: plan.fleet.ssh_config.clone(), ..SshOptions::default() };
    let failed = hosts.connect(destinations, &options, None).await;
    (hosts, failed)
}

/// The target a `zdd run` (with `--release`, if given) would take now, read from the state directory without
/// creating or locking it (a missing directory is a first deploy).
pub(super) fn preview_target(header: &PlanHeader, release: Option<&str>) -> Result<DeployTarget, Refusal> {
    let state = read_state(header)?;
    let target = state.deploy_target(&header.slots, release).map_err(cannot_decide)?;
    warn_if_bad(&state, &target);
    Ok(target)
}

/// A preview of a release marked bad says that `zdd run` would refuse it.
fn warn_if_bad(state: &State, target: &DeployTarget) {
    if let Some(bad) = state.bad(&target.release) {
        eprintln!(
            "zdd: release {} is marked bad ({}): `zdd run` refuses it without `--allow-bad`",
            target.release,
            bad.describe()
        );
    }
}

/// The state directory's state, read without creating or locking it (a missing directory: a first deploy).
pub(super) fn read_state(header: &PlanHeader) -> Result<State, Refusal> {
    if header.state_dir.exists() {
        StateDir::open(&header.state_dir).and_then(|dir| dir.load()).map_err(cannot_decide)
    } else {
        Ok(State::default())
    }
}

/// Why no target could be decided from the state directory.
pub(super) fn cannot_decide(e: StateError) -> Refusal {
    match e {
        // Its own diagnostic: the state directory is fine, this zdd is too old for it.
        StateError::Newer(_) => Refusal::from(e),
        e => Refusal::new(
            exit::INVALID,
            format!("cannot decide what to deploy: {e}\n  help: check the state directory (`zdd status`)"),
        ),
    }
}
