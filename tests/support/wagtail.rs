//! A Wagtail site made the way its users make one, deployed with the plan `zdd init` writes for it and only plan
//! variables set: `wagtail start mysite` by the real `wagtail` (a venv of the wheel cache, shared across test
//! runs), requirements pinned to what that venv installed (`pip freeze`, gunicorn included), the secrets and
//! allowed hosts in `mysite/settings/local.py` and the SQLite file kept in `<root>/shared` (`shared_paths`).
//! Nothing in the generated project is changed for zdd.
//!
//! Its `v2` is the same site with one visible change: the home page says `Release v2` and the site's
//! stylesheet gains a rule, so its hashed name changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::load::{Load, LoadConfig};
use super::projects::{copy_tree, get, messages};
use super::scenarios::{Outcome, check, check_no_failures, measured};
use super::zdd::{Stack, ZddRun};

/// What v2 adds to the home page.
const V2_MARKER: &str = "Release v2";

/// The files `wagtail start` leaves out of git that every release must share: its settings' `local.py` (where it
/// expects the secret key and allowed hosts) and the SQLite database its settings put beside `manage.py`.
const SHARED_PATHS: &str = "media/ mysite/settings/local.py db.sqlite3";

/// The venv with the newest Wagtail in the wheel cache and gunicorn, shared across test runs (rebuilt when the
/// cache's Wagtail wheels change).
fn wagtail_venv() -> PathBuf {
    let wheels = super::venv::wagtail_wheels();
    super::venv::cached("wagtail-venv", &format!("wagtail\ngunicorn\n# wheels in the cache: {}\n", wheels.join(" ")))
}

/// One site, both versions, and the plan `zdd init` wrote for it.
pub(crate) struct Site {
    /// The directory of `manage.py` for each version (`<sources>/wagtail-<version>/mysite`).
    v1: PathBuf,
    v2: PathBuf,
    /// What `zdd init` said.
    pub init_said: String,
}

impl Site {
    /// `wagtail start mysite`, pinned, `zdd init`-ed; then v2 as a copy with the visible change.
    pub(crate) fn create(stack: &Stack) -> Result<Site, String> {
        let venv = wagtail_venv();
        let parent = stack.sources.join("wagtail-v1");
        std::fs::create_dir_all(&parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        super::proc::run(
            "wagtail start mysite",
            Command::new(super::venv::bin(&venv, "wagtail")).args(["start", "mysite"]).current_dir(&parent),
        );
        let v1 = parent.join("mysite");
        // What Debian 12's Python installs (wagtail start asks for a Django this Python cannot run), gunicorn with it.
        let frozen = super::proc::run("pip freeze", Command::new(super::venv::bin(&venv, "pip")).arg("freeze"));
        write(&v1.join("requirements.txt"), &frozen)?;
        let init = Command::new(super::zdd::zdd_bin()).arg("init").arg(&v1).env("NO_COLOR", "1").output();
        let init = init.map_err(|e| format!("zdd init: {e}"))?;
        let init_said = format!("{}{}", String::from_utf8_lossy(&init.stdout), String::from_utf8_lossy(&init.stderr));
        check(init.status.success(), || format!("zdd init {} failed:\n{init_said}", v1.display()))?;

        let v2 = stack.sources.join("wagtail-v2/mysite");
        copy_tree(&v1, &v2).map_err(|e| format!("copy the site: {e}"))?;
        edit(&v2.join("home/templates/home/home_page.html"), |page| {
            page.replacen(
                "{% block content %}",
                &format!("{{% block content %}}\n<p class=\"release\">{V2_MARKER}</p>"),
                1,
            )
        })?;
        edit(&v2.join("mysite/static/css/mysite.css"), |css| format!("{css}\n.release {{ color: teal; }}\n"))?;
        Ok(Site { v1, v2, init_said })
    }

    fn plan(&self, version: &str) -> PathBuf {
        let dir = if version == "v1" { &self.v1 } else { &self.v2 };
        dir.join("deploy/prod.kdl")
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn edit(path: &Path, change: impl FnOnce(&str) -> String) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let changed = change(&text);
    check(changed != text, || format!("{} did not change", path.display()))?;
    write(path, &changed)
}

/// What the operator puts in `<root>/shared` before the first deploy: `local.py` with the secret key and the
/// hosts (the checks' `host` among them), and the (empty) SQLite file that every release links to.
fn prepare_shared(stack: &Stack) -> Result<(), String> {
    let shared = stack.root.join("shared");
    write(
        &shared.join("mysite/settings/local.py"),
        "SECRET_KEY = \"zdd-test-secret-key-not-for-production\"\nALLOWED_HOSTS = [\"127.0.0.1\", \"localhost\"]\n",
    )?;
    write(&shared.join("db.sqlite3"), "")
}

/// The stack's variables and the one this site needs: the files shared by every release. (A `wagtail start`
/// site has no health view: `zdd init` makes `/`, served from the database, the health page.)
fn vars(stack: &Stack) -> Vec<(String, String)> {
    let mut vars = stack.stack_vars();
    vars.push(("shared_paths".into(), SHARED_PATHS.into()));
    vars
}

fn zdd(stack: &Stack, command: &str, site: &Site, version: &str) -> ZddRun {
    ZddRun::of(&mut stack.command_for(command, &site.plan(version), &vars(stack)))
}

/// The site's own hashed stylesheet the home page links (`/static/css/mysite.<hash>.css`).
fn site_stylesheet(body: &str) -> Option<String> {
    let start = body.find("/static/css/mysite.")?;
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}

/// The home page through Nginx shows `version` (v2's marker or its absence) and its stylesheet loads; returns
/// the stylesheet's path.
fn expect_serving(stack: &Stack, version: &str, run: &ZddRun) -> Result<String, String> {
    let home = get(stack, "/");
    let Some((200, body)) = home else {
        return Err(format!("GET / through Nginx: {home:?}\n{}\n{}", run.describe(), stack.nginx.error_log()));
    };
    let shows_v2 = body.contains(V2_MARKER);
    check(shows_v2 == (version == "v2"), || format!("GET / should show {version}, v2 marker {shows_v2}:\n{body}"))?;
    let css = site_stylesheet(&body).ok_or_else(|| format!("GET / links no hashed mysite.css:\n{body}"))?;
    check(css != "/static/css/mysite.css", || format!("the stylesheet is not hashed: {css}"))?;
    let status = get(stack, &css).map(|(s, _)| s);
    check(status == Some(200), || format!("{css} through Nginx: {status:?}\n{}", run.describe()))?;
    Ok(css)
}

/// Wagtail's admin login page (anonymous) through Nginx, and the first of Wagtail's own hashed assets it links:
/// collected and published with the site's.
fn expect_admin_assets(stack: &Stack) -> Result<String, String> {
    let login = get(stack, "/admin/login/");
    let Some((200, body)) = login else {
        return Err(format!("GET /admin/login/ through Nginx: {login:?}"));
    };
    let start = body.find("/static/wagtailadmin/").ok_or_else(|| format!("the login page links no asset:\n{body}"))?;
    let end = body[start..].find(['"', '\'']).ok_or_else(|| "an unterminated asset URL".to_string())?;
    let asset = &body[start..start + end];
    let status = get(stack, asset).map(|(s, _)| s);
    check(status == Some(200), || format!("{asset} through Nginx: {status:?}"))?;
    Ok(asset.to_string())
}

fn load(stack: &Stack, stylesheet: &str) -> Load {
    let mut config = LoadConfig::standard(stack.nginx.port);
    config.slow_clients = 0;
    config.paths = vec!["/".into(), stylesheet.into(), "/".into(), "/static/js/mysite.js".into()];
    config.max_duration = Duration::from_mins(6);
    Load::start(config)
}

/// `command` (`run` of `version`, or `rollback`) under load: zero failed requests.
fn under_load(stack: &Stack, site: &Site, command: &str, version: &str, stylesheet: &str) -> Result<String, String> {
    let load = load(stack, stylesheet);
    std::thread::sleep(Duration::from_millis(700));
    let run = zdd(stack, command, site, version);
    std::thread::sleep(Duration::from_millis(700));
    let report = load.finish();
    check(run.code == 0, || format!("zdd {command} ({version}) failed\n{}", run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    Ok(format!("{} ({})", measured(&report, races, &run), run.step_times()))
}

/// The site from `wagtail start`: first deploy of v1, v1 -> v2 under load, then `zdd rollback` to v1 under load.
pub(crate) fn deploy_upgrade_and_roll_back(stack: &Stack) -> Outcome {
    let site = Site::create(stack)?;
    check(site.init_said.contains("settings: mysite.settings.production (chosen for production"), || {
        format!("zdd init did not choose the production settings:\n{}", site.init_said)
    })?;
    check(site.init_said.contains("none found, so the plan checks /"), || {
        format!("zdd init did not make / the health page:\n{}", site.init_said)
    })?;
    check(!site.init_said.contains("does not name gunicorn"), || {
        format!("zdd init missed gunicorn in the frozen requirements:\n{}", site.init_said)
    })?;
    prepare_shared(stack)?;

    let first = zdd(stack, "run", &site, "v1");
    check(first.code == 0, || format!("first deploy of the Wagtail site failed\n{}", first.describe()))?;
    let v1_css = expect_serving(stack, "v1", &first)?;
    let smoke = messages(&first, "smoke");
    check(smoke.iter().any(|m| m.starts_with("static asset /static/") && m.ends_with(" loads")), || {
        format!("smoke loaded no static asset: {smoke:?}")
    })?;
    let first_took = format!("{:.1} s ({})", first.duration.as_secs_f64(), first.step_times());

    let upgrade = under_load(stack, &site, "run", "v2", &v1_css)?;
    let v2_css = expect_serving(stack, "v2", &first)?;
    check(v2_css != v1_css, || format!("the stylesheet's hashed name did not change: {v2_css}"))?;
    // Pages v1 rendered just before the switch still load their stylesheet.
    let old = get(stack, &v1_css).map(|(s, _)| s);
    check(old == Some(200), || format!("v1's {v1_css} after the upgrade: {old:?}"))?;
    let admin_asset = expect_admin_assets(stack)?;

    let rollback = under_load(stack, &site, "rollback", "v2", &v2_css)?;
    let back = expect_serving(stack, "v1", &first)?;
    check(back == v1_css, || format!("after the rollback / links {back}, v1 linked {v1_css}"))?;
    Ok(format!("first deploy {first_took}; v1 -> v2: {upgrade}; {admin_asset} loads; rollback: {rollback}"))
}
