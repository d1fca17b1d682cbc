//! `zdd init [DIR]`: scaffold a plan for an existing Django project, next to the shared Django fragment,
//! and check it, so that the first thing a team commits already passes `zdd check`.

use std::fs;
use std::path::{Path, PathBuf};

use zdd_engine::plan::Runtime;

use super::{PlanArgs, exit};
use crate::scaffold::{self, DjangoProject};

/// The shared Django steps, shipped inside the binary: a scaffolded plan must work outside this repository.
const DJANGO_FRAGMENT: &str = include_str!("../../plans/fragments/django.kdl");
/// The build half of the Django steps (and their variables), which `fragments/django.kdl` includes.
const DJANGO_RELEASE_FRAGMENT: &str = include_str!("../../plans/fragments/django-release.kdl");

/// The three-line health view of the deploy guide, printed when the project has none.
const HEALTH_VIEW_HINT: &str = "\
# urls.py
from django.http import JsonResponse
def health(request): return JsonResponse({\"status\": \"ok\"})
urlpatterns += [path(\"health/\", health)]";

pub(super) fn run(dir: Option<&Path>, output: Option<&Path>, force: bool) -> i32 {
    let root = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let project = match scaffold::detect(&root) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zdd init: {e}");
            eprintln!("  help: run `zdd init DIR` with the directory that holds your Django project's manage.py");
            return exit::INVALID;
        }
    };
    let plan_path = output.map_or_else(|| root.join("deploy/prod.kdl"), Path::to_path_buf);
    if plan_path.exists() && !force {
        eprintln!("zdd init: {} already exists; not overwriting it", plan_path.display());
        eprintln!("  help: pass --force to replace it, or --output to write elsewhere");
        return exit::INVALID;
    }
    let plan_dir = plan_path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let fragment_path = plan_dir.join("fragments/django.kdl");
    let text = render_plan(&project, &plan_dir);
    let release_fragment_path = plan_dir.join("fragments/django-release.kdl");
    if let Err(e) = write(&release_fragment_path, DJANGO_RELEASE_FRAGMENT, force)
        .and_then(|()| write(&fragment_path, DJANGO_FRAGMENT, force))
        .and_then(|()| write(&plan_path, &text, true))
    {
        eprintln!("zdd init: {e}");
        return exit::INVALID;
    }
    outln!("wrote {} (and {})", plan_path.display(), fragment_path.display());
    outln!("  settings: {}", project.settings);
    outln!("  wsgi:     {}", project.wsgi);
    match &project.requirements {
        Some(r) => outln!("  requirements: {}", r.display()),
        None => outln!("  requirements: none found (the plan expects requirements.txt)"),
    }
    match &project.health_path {
        Some(h) => outln!("  health URL: {h}"),
        None => outln!("  health URL: none found; add one before deploying, e.g.:\n\n{HEALTH_VIEW_HINT}\n"),
    }
    let args = PlanArgs { plan: plan_path.clone(), vars: Vec::new() };
    let kinds = zdd_steps::builtin();
    let read = super::check::read_plan(&args, &Runtime::sample(), &kinds);
    if read.result.is_err() {
        eprintln!("zdd init: the scaffolded plan does not pass `zdd check` (a bug in zdd init):");
        return super::check::report_invalid(&read);
    }
    outln!("next: review the variables at the top of {}, then `zdd plan {}`", plan_path.display(), plan_path.display());
    exit::OK
}

/// Write a file, creating its directory; an existing file is kept unless `replace`.
fn write(path: &Path, content: &str, replace: bool) -> Result<(), String> {
    if path.exists() && !replace {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A name for systemd units and directories: the settings' top package, lower-case, `[a-z0-9-]`.
fn app_name(project: &DjangoProject) -> String {
    let base = project.settings.split('.').next().filter(|p| !matches!(*p, "config" | "settings" | "project"));
    let base = base.map_or_else(
        || {
            fs::canonicalize(&project.root)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "app".to_owned())
        },
        str::to_owned,
    );
    let name: String = base.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "app".to_owned() } else { name }
}

/// Path of `to` as seen from `from` (both relative to the same base, or absolute).
fn relative_to(from: &Path, to: &Path) -> String {
    let from = fs::canonicalize(from).unwrap_or_else(|_| from.to_path_buf());
    let to = fs::canonicalize(to).unwrap_or_else(|_| to.to_path_buf());
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let ups = from.components().count() - common;
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_owned(), ups).collect();
    parts.extend(to.components().skip(common).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() { ".".to_owned() } else { parts.join("/") }
}

fn render_plan(project: &DjangoProject, plan_dir: &Path) -> String {
    let app = app_name(project);
    let source = relative_to(plan_dir, &project.root.join(&project.app_dir));
    let requirements = project.requirements.as_ref().map_or_else(
        || "requirements.txt".to_owned(),
        |r| relative_to(&project.root.join(&project.app_dir), &project.root.join(r)),
    );
    let health = project.health_path.clone().unwrap_or_else(|| "/health/".to_owned());
    format!(
        r#"// Deploy plan for {app}, scaffolded by `zdd init`. Review every variable, then `zdd plan` this file.
// The steps themselves are in fragments/django.kdl (shared: edit there to change every environment).
plan "{app}-prod"

var "app" "{app}" doc="Name of the systemd units, directories and Nginx upstream"
var "source" "{source}" doc="The project to deploy (the directory of manage.py), relative to this file"
var "requirements" "{requirements}" doc="Requirements file, relative to the source directory"
var "root" "/srv/{app}" doc="Where releases, the shared directory and sockets live"
var "settings" "{settings}" doc="DJANGO_SETTINGS_MODULE"
var "wsgi" "{wsgi}" doc="The WSGI callable gunicorn serves"
var "env_file" "/etc/{app}/{app}.env" doc="KEY=VALUE environment for Django (secrets): never printed"
var "health_path" "{health}" doc="A cheap view answering 200 when the app can serve"
var "server_name" "example.com" doc="Nginx server_name"
var "host" "example.com" doc="Host header of the health and smoke checks: one of ALLOWED_HOSTS"

include "fragments/django.kdl"

// What the host needs before the release (the fragment's first step waits for a step named "prepare").
step "prepare" kind="packages" {{
    description "Nginx and Python's venv module, installed only if missing"
    install "nginx" "python3-venv"
}}
"#,
        settings = project.settings,
        wsgi = project.wsgi,
    )
}
