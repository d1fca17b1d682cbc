//! Django projects zdd never saw, written the way `django-admin startproject` writes them
//! (`tests/fixtures/projects/<name>`), deployed with a shipped plan and only plan variables set: a first deploy
//! and an upgrade under load, zero failed requests.
//!
//! A project's `v2` is its fixture with one visible change: the home page says `v2`, and (for a project with a
//! stylesheet) the stylesheet gains a rule, so its hashed name changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::{Load, LoadConfig};
use super::scenarios::{Outcome, check, check_no_failures, measured};
use super::zdd::{Stack, ZddRun};

/// A fixture project.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Project {
    /// Its directory under `tests/fixtures/projects`.
    pub fixture: &'static str,
    /// The Django project's package (`django-admin startproject <app>`): the plan's `app` variable.
    pub app: &'static str,
    /// The file that says `v1`, changed to `v2` in the upgrade.
    pub version_file: &'static str,
    /// A stylesheet whose hashed name the home page links, if it has one.
    pub stylesheet: Option<&'static str>,
}

pub(crate) const STARTPROJECT: Project = Project {
    fixture: "startproject",
    app: "mysite",
    version_file: "templates/home.html",
    stylesheet: Some("static/site.css"),
};

pub(crate) const JSONONLY: Project =
    Project { fixture: "jsononly", app: "api", version_file: "api/views.py", stylesheet: None };

impl Project {
    fn fixture_dir(self) -> PathBuf {
        super::shop::repo_root().join("tests/fixtures/projects").join(self.fixture)
    }

    /// The project at `version` (`v1` or `v2`) under the stack's sources, written once.
    pub(crate) fn source(self, stack: &Stack, version: &str) -> PathBuf {
        let dest = stack.sources.join(format!("{}-{version}", self.fixture));
        if dest.exists() {
            return dest;
        }
        copy_tree(&self.fixture_dir(), &dest).expect("copy the fixture project");
        if version != "v1" {
            let file = dest.join(self.version_file);
            let text = std::fs::read_to_string(&file).expect("version file");
            std::fs::write(&file, text.replace("v1", version)).expect("write version file");
            if let Some(css) = self.stylesheet {
                let css = dest.join(css);
                let mut text = std::fs::read_to_string(&css).expect("stylesheet");
                text.push_str(&format!("h1 {{ color: teal; }} /* {version} */\n"));
                std::fs::write(&css, text).expect("write stylesheet");
            }
        }
        dest
    }

    /// The plan variables on top of the stack's: this project's source and name, and an env file with the one
    /// thing these projects read from the environment (the secret key).
    fn vars(self, stack: &Stack, version: &str) -> Vec<String> {
        let env_file = stack.dir.join(&format!("{}.env", self.fixture));
        if !env_file.exists() {
            std::fs::write(&env_file, "SECRET_KEY=zdd-test-secret-key-not-for-production\n").expect("env file");
        }
        [
            ("source", self.source(stack, version).display().to_string()),
            ("app", self.app.to_string()),
            ("env_file", env_file.display().to_string()),
        ]
        .into_iter()
        .flat_map(|(name, value)| ["--var".to_string(), format!("{name}={value}")])
        .collect()
    }

    fn zdd(self, stack: &Stack, plan: &str, version: &str) -> ZddRun {
        stack.zdd_with_args("run", plan, "v1", &self.vars(stack, version))
    }
}

/// Copies `from` into `to` recursively, without Python's caches.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "__pycache__" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A page through Nginx: status and body.
pub(crate) fn get(stack: &Stack, path: &str) -> Option<(u16, String)> {
    get_at(stack.nginx.port, path)
}

/// A page from 127.0.0.1:`port`: status and body (for a thread that cannot hold the stack).
pub(crate) fn get_at(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The hashed stylesheet the home page links (`href=/static/site.<hash>.css`, unquoted).
fn linked_stylesheet(body: &str) -> Option<String> {
    let start = body.find("href=/static/site.")? + "href=".len();
    let end = body[start..].find(['>', ' ', '"'])?;
    Some(body[start..start + end].to_string())
}

/// The step messages of a step, for checking what the run said.
pub(crate) fn messages(run: &ZddRun, step: &str) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "step-message" && e["step"] == step)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// What the home page must show after deploying `version`: its version, and for a project with a stylesheet the
/// hashed stylesheet, loading through Nginx. Returns the stylesheet's path.
fn expect_serving(stack: &Stack, project: Project, version: &str, run: &ZddRun) -> Result<Option<String>, String> {
    let home = get(stack, "/");
    let Some((200, body)) = home else {
        return Err(format!("GET / through Nginx: {home:?}\n{}", run.describe()));
    };
    check(body.contains(version), || format!("GET / does not show {version}: {body}"))?;
    if project.stylesheet.is_none() {
        return Ok(None);
    }
    let css = linked_stylesheet(&body).ok_or_else(|| format!("GET / links no hashed stylesheet: {body}"))?;
    let status = get(stack, &css).map(|(s, _)| s);
    check(status == Some(200), || format!("{css} through Nginx: {status:?}\n{}", run.describe()))?;
    let published = stack.root.join("shared").join(css.trim_start_matches('/'));
    check(published.exists(), || format!("{} was not published", published.display()))?;
    Ok(Some(css))
}

/// Load over the project's own pages (these projects have no slow view).
fn load(stack: &Stack, stylesheet: Option<&str>) -> Load {
    let mut config = LoadConfig::standard(stack.nginx.port);
    config.slow_clients = 0;
    config.paths = vec!["/".into(), "/health/".into()];
    config.paths.extend(stylesheet.map(str::to_string));
    config.max_duration = Duration::from_mins(4);
    Load::start(config)
}

/// First deploy, then v1 -> v2 under load: zero failed requests, v2 serving, the old stylesheet still loading.
pub(crate) fn deploy_and_upgrade(stack: &Stack, plan: &str, project: Project) -> Outcome {
    let first = project.zdd(stack, plan, "v1");
    check(first.code == 0, || format!("first deploy of {} failed\n{}", project.fixture, first.describe()))?;
    let v1_css = expect_serving(stack, project, "v1", &first)?;
    let smoke_v1 = messages(&first, "smoke");

    let load = load(stack, v1_css.as_deref());
    std::thread::sleep(Duration::from_millis(700));
    let run = project.zdd(stack, plan, "v2");
    std::thread::sleep(Duration::from_millis(700));
    let report = load.finish();
    check(run.code == 0, || format!("v1 -> v2 of {} failed\n{}", project.fixture, run.describe()))?;
    let races = check_no_failures(stack, &report, &run)?;
    let v2_css = expect_serving(stack, project, "v2", &run)?;
    if let (Some(old), Some(new)) = (&v1_css, &v2_css) {
        check(old != new, || format!("the stylesheet's hashed name did not change: {new}"))?;
        // Pages rendered by v1 just before the switch still load their stylesheet.
        let status = get(stack, old).map(|(s, _)| s);
        check(status == Some(200), || format!("v1's {old} after the upgrade: {status:?}"))?;
    }
    let smoke = messages(&run, "smoke");
    match &v2_css {
        Some(css) => check(smoke.iter().any(|m| m == &format!("static asset {css} loads")), || {
            format!("smoke did not load {css}: {smoke:?}")
        })?,
        None => check(smoke.iter().chain(&smoke_v1).all(|m| !m.starts_with("static asset ")), || {
            format!("smoke loaded an asset from a JSON page: {smoke:?}")
        })
        .and_then(|()| {
            check(smoke.iter().any(|m| m.contains("static asset check skipped")), || {
                format!("smoke did not say it skipped the asset check: {smoke:?}")
            })
        })?,
    }
    Ok(format!("smoke: {smoke:?}; {}", measured(&report, races, &run)))
}
