//! `zdd plan`: the dry-run preview of a run, as text or JSON. Reads the plan and the state directory; changes
//! nothing.

use std::io::IsTerminal;
use std::sync::Arc;

use zdd_engine::host::LocalHost;
use zdd_engine::kind::DeployTarget;
use zdd_engine::plan::{PlanHeader, Runtime, TargetSource};
use zdd_engine::preview::{self, PreviewInput};
use zdd_engine::state::{State, StateDir};

use super::check::{read_plan, report_invalid};
use super::{PlanArgs, StateArgs, exit};

pub(super) fn run(args: &PlanArgs, state: &StateArgs, release: Option<&str>, json: bool) -> i32 {
    if let Some(Err(e)) = release.map(zdd_engine::state::check_release_id) {
        eprintln!("zdd: --release: {e}");
        return exit::INVALID;
    }
    let kinds = zdd_steps::builtin();
    let decide = |header: &PlanHeader| preview_target(header, release);
    let runtime = Runtime { state_dir: state.state_dir.as_deref(), target: TargetSource::Decide(&decide) };
    let read = read_plan(args, &runtime, &kinds);
    let (Ok(plan), Some(target), Some(state_dir)) = (&read.result, &read.target, &read.state_dir) else {
        return report_invalid(&read);
    };
    let plan = Arc::new(plan.clone());
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("zdd: cannot start the async runtime");
        return exit::INVALID;
    };
    let input = PreviewInput { plan: &plan, kinds: &kinds, target, state_dir, host: Arc::new(LocalHost::new()) };
    let p = rt.block_on(preview::build(input));
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

/// The target a `zdd run` (with `--release`, if given) would take now, read from the state directory without
/// creating or locking it (a missing directory is a first deploy).
fn preview_target(header: &PlanHeader, release: Option<&str>) -> Result<DeployTarget, String> {
    let state = if header.state_dir.exists() {
        StateDir::open(&header.state_dir).and_then(|dir| dir.load()).map_err(|e| e.to_string())?
    } else {
        State::default()
    };
    state.deploy_target(&header.slots, release).map_err(|e| e.to_string())
}
