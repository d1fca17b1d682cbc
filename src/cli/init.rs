//! `zdd init [DIR]`: scaffold a plan for an existing Django project, next to the shared Django fragment,
//! and check it, so that the first thing a team commits already passes `zdd check`.

use std::fs;
use std::path::{Path, PathBuf};

use zdd_engine::plan::Runtime;

use super::{PlanArgs, exit};
use crate::scaffold::facts::{self, FoundBy};
use crate::scaffold::{self, DjangoProject, SettingsChoice};

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

pub(super) fn run(dir: Option<&Path>, output: Option<&Path>, settings: Option<&str>, force: bool) -> i32 {
    let root = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let project = match scaffold::detect(&root, settings) {
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
    let app_dir = project.root.join(&project.app_dir);
    let source = scaffold::path_from(&plan_dir, &app_dir);
    let text = render_plan(&project, &source);
    let release_fragment_path = plan_dir.join("fragments/django-release.kdl");
    if let Err(e) = write(&release_fragment_path, DJANGO_RELEASE_FRAGMENT, force)
        .and_then(|()| write(&fragment_path, DJANGO_FRAGMENT, force))
        .and_then(|()| write(&plan_path, &text, true))
    {
        eprintln!("zdd init: {e}");
        return exit::INVALID;
    }
    // The plan names the project by a path relative to itself: make sure it leads there.
    if scaffold::resolved(&plan_dir.join(&source)) != scaffold::resolved(&app_dir) {
        eprintln!(
            "zdd init: the plan's source {source:?} does not lead from {} to {} (a bug in zdd init)",
            plan_dir.display(),
            app_dir.display()
        );
        return exit::INVALID;
    }
    outln!("wrote {} (and {})", plan_path.display(), fragment_path.display());
    outln!("  source:   {source} (from the plan's directory: {})", scaffold::resolved(&app_dir).display());
    report_settings(&project);
    match (&project.asgi, &project.wsgi) {
        (Some(asgi), _) => {
            outln!("  asgi:     {} ({}: served by gunicorn with uvicorn's worker class)", asgi.application, asgi.why);
            if let Some(r) = &project.requirements
                && scaffold::requirements_name(&project.root.join(r), "uvicorn-worker") == Some(false)
            {
                outln!(
                    "  warning: {} does not name uvicorn-worker, which serves the ASGI application under gunicorn: \
                     add `uvicorn-worker` and `uvicorn[standard]` (or set the plan's `server` to \"uvicorn\")",
                    r.display()
                );
            }
        }
        (None, Some(wsgi)) => outln!("  wsgi:     {wsgi}"),
        (None, None) => {}
    }
    match &project.requirements {
        Some(r) => {
            outln!("  requirements: {}", r.display());
            if scaffold::requirements_name_gunicorn(&project.root.join(r)) == Some(false) {
                outln!(
                    "  warning: {} does not name gunicorn, which the plan's `web` step runs from the release's venv: \
                     add a line `gunicorn` (or `pip freeze > {}` in a venv that has it)",
                    r.display(),
                    r.display()
                );
            }
        }
        None => outln!("  requirements: none found (the plan expects requirements.txt)"),
    }
    match &project.health_path {
        Some(h) => outln!("  health URL: {h}"),
        None => outln!(
            "  health URL: none found, so the plan checks / (it must answer 200 to an anonymous GET); a view that \
             touches nothing is cheaper and says more, e.g.:\n\n{HEALTH_VIEW_HINT}\n\n  then point the plan's health_path at it"
        ),
    }
    report_facts(&project, &app_dir);
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

/// Which settings module the plan uses, why, and how to choose another.
fn report_settings(project: &DjangoProject) {
    match &project.settings_choice {
        SettingsChoice::ManagePy => outln!("  settings: {} (manage.py's default)", project.settings),
        SettingsChoice::Given => outln!("  settings: {} (--settings)", project.settings),
        SettingsChoice::Production { manage_py_default } => outln!(
            "  settings: {} (chosen for production; manage.py and wsgi.py default to {manage_py_default}, for \
             development)",
            project.settings
        ),
    }
    if !project.settings_alternatives.is_empty() {
        outln!(
            "            others: {}; to use one: zdd init --settings MODULE --force",
            project.settings_alternatives.join(", ")
        );
    }
    if scaffold::module_file(&project.root.join(&project.app_dir), &project.settings).is_none() {
        outln!("  warning: no file for {} below {}", project.settings, project.root.join(&project.app_dir).display());
    }
}

/// What the settings say about static files and the database, how that was found, and what will not work.
fn report_facts(project: &DjangoProject, app_dir: &Path) {
    let (facts, found_by) = facts::gather(&project.root, app_dir, &project.settings);
    match &found_by {
        FoundBy::Django { python } => outln!("  asked Django ({}) for the effective settings:", python.display()),
        FoundBy::SettingsText { files, why } => {
            let names: Vec<String> = files.iter().map(|f| scaffold::path_from(app_dir, f)).collect();
            outln!("  read from the settings files ({}), literal values only, because {why}:", names.join(", "));
        }
    }
    let or_unset = |v: &Option<String>| v.clone().unwrap_or_else(|| "not set".to_owned());
    match facts.static_url.as_deref() {
        // Django puts the script prefix before a relative STATIC_URL: `static/` is served at `/static/`.
        Some(url) if !url.starts_with('/') && !url.contains("://") => {
            outln!("  STATIC_URL:  {url} (served at /{url})");
        }
        _ => outln!("  STATIC_URL:  {}", or_unset(&facts.static_url)),
    }
    match &facts.static_root {
        Some(root) => outln!("  STATIC_ROOT: {root}"),
        None => outln!("  STATIC_ROOT: not set (fine: zdd collects into the release and publishes to static_dir)"),
    }
    outln!(
        "  storage:     {}",
        facts.storage.clone().unwrap_or_else(|| "not set (Django's default StaticFilesStorage)".to_owned())
    );
    match (&facts.db_engine, &facts.db_name) {
        (Some(engine), Some(name)) => outln!("  database:    {engine} ({name})"),
        (Some(engine), None) => outln!("  database:    {engine}"),
        (None, _) => outln!("  database:    not found"),
    }
    for warning in facts.warnings(app_dir) {
        outln!("  warning: {warning}");
    }
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

/// The plan's variables that say what serves the project: its WSGI callable, or for an ASGI project the ASGI
/// application, the server and the WebSocket settings of plans/asgi.kdl.
fn application_vars(project: &DjangoProject) -> String {
    let mut vars = String::new();
    if let Some(wsgi) = &project.wsgi {
        vars.push_str(&format!("var \"wsgi\" \"{wsgi}\" doc=\"The WSGI callable gunicorn serves\"\n"));
    }
    if let Some(asgi) = &project.asgi {
        vars.push_str(&format!(
            "var \"asgi\" \"{}\" doc=\"The ASGI application ({})\"\n\
             var \"server\" \"uvicorn-worker\" doc=\"gunicorn with uvicorn's worker class (or uvicorn alone: uvicorn)\"\n\
             var \"read_timeout\" \"10m\" doc=\"How long Nginx lets a WebSocket be silent\"\n\
             var \"websocket_budget\" \"30s\" doc=\"How long the old instance keeps its WebSockets after the switch; \
             the rest are closed with 1012 (Service Restart)\"\n",
            asgi.application, asgi.why
        ));
    }
    vars
}

/// The plan's text; `source` is the path from the plan's directory to the directory of `manage.py`.
fn render_plan(project: &DjangoProject, source: &str) -> String {
    let app = app_name(project);
    let requirements = project.requirements.as_ref().map_or_else(
        || "requirements.txt".to_owned(),
        |r| scaffold::path_from(&project.root.join(&project.app_dir), &project.root.join(r)),
    );
    // Without a health view the home page is the best readiness check there is (a `wagtail start` site serves it
    // from the database): a /health/ that does not exist would fail every deploy at the health gate.
    let health = project.health_path.clone().unwrap_or_else(|| "/".to_owned());
    format!(
        r#"// Deploy plan for {app}, scaffolded by `zdd init`. Review every variable, then `zdd plan` this file.
// The steps themselves are in fragments/django.kdl (shared: edit there to change every environment).
plan "{app}-prod"

var "app" "{app}" doc="Name of the systemd units, directories and Nginx upstream"
var "source" "{source}" doc="The project to deploy (the directory of manage.py), relative to this file"
var "requirements" "{requirements}" doc="Requirements file, relative to the source directory"
var "root" "/srv/{app}" doc="Where releases, the shared directory and sockets live"
var "settings" "{settings}" doc="DJANGO_SETTINGS_MODULE"
{application}var "env_file" "/etc/{app}/{app}.env" doc="KEY=VALUE environment for Django (secrets): never printed"
var "health_path" "{health}" doc="A cheap view answering 200 when the app can serve"
var "server_name" "example.com" doc="Nginx server_name"
var "host" "example.com" doc="Host header of the health and smoke checks: one of ALLOWED_HOSTS"
var "shared_paths" "media/" doc="Space-separated paths kept in <root>/shared and linked into every release (settings/local.py, db.sqlite3...)"

include "fragments/django.kdl"

// What the host needs before the release (the fragment's first step waits for a step named "prepare").
step "prepare" kind="packages" {{
    description "Nginx and Python's venv module, installed only if missing"
    install "nginx" "python3-venv"
}}
"#,
        settings = project.settings,
        application = application_vars(project),
    )
}
