//! The `image` kind: the release's container image, `<app>:<release>`, built with `docker build` from the
//! release directory, for the `service` kind's `docker` manager to run.
//!
//! The project's own Dockerfile is used when the release has one (`dockerfile`, default `Dockerfile`); otherwise
//! zdd renders `templates/Dockerfile.hbs` (or the step's `template`) into `<release>/.zdd-Dockerfile`: a venv with
//! the requirements, gunicorn in exec form and a Python health check. A release without a `.dockerignore` gets
//! one that leaves the host's venv and `.git` out of the build context. `wheels` (a host directory) is copied
//! into the context as `.zdd-wheels` for a build without network (`pip install --no-index`), and removed after.
//!
//! Nothing live is touched: a failed build fails the step with docker's own last lines, before any instance
//! starts. With `build #false` the step only checks that `tag` exists (an image built elsewhere). A tag that
//! exists already (a rollback, a recovered run) is reused. Undo removes the image only if this run built it: a
//! release whose deploy failed is never a rollback's target. After a build, images of the app's older releases
//! beyond the newest `keep` are removed, never the live release's, nor one a container still uses.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use zdd_engine::diag::{Code, Diagnostics};
use zdd_engine::host::{Command, Host};
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, path_text, quiet, to_facts, words};
use crate::manage::{ROOT, release_dir};
use crate::templates;

pub struct Image;

/// The built-in Dockerfile, for a project without one.
pub const DOCKERFILE: &str = include_str!("../../templates/Dockerfile.hbs");

/// Where zdd writes the rendered Dockerfile and copies the wheels, inside the release (the build context).
const RENDERED: &str = ".zdd-Dockerfile";
const WHEELS: &str = ".zdd-wheels";

static SPEC: KindSpec = KindSpec {
    name: "image",
    summary: "Build the release's container image `<app>:<release>` (the project's Dockerfile, or zdd's template).",
    fields: &[
        FieldSpec::new("app", ValueType::Name, "The app's name: images are `<app>:<release>` and labelled `zdd.app`.")
            .required(),
        ROOT,
        FieldSpec::new(
            "tag",
            ValueType::String,
            "The image to build (or, with `build #false`, to use); default `<app>:<release>`.",
        ),
        FieldSpec::new("build", ValueType::Bool, "`#false`: use `tag` as it is (it must exist), build nothing.")
            .default("true"),
        FieldSpec::new(
            "dockerfile",
            ValueType::SubPath,
            "The project's Dockerfile, relative to the release; used if it exists.",
        )
        .default("Dockerfile"),
        FieldSpec::new("template", ValueType::Path, "Your own Dockerfile template (handlebars) instead of zdd's."),
        FieldSpec::new("base-image", ValueType::ConfigWord, "The rendered Dockerfile's `FROM`.")
            .default("python:3.11-slim"),
        FieldSpec::new("requirements", ValueType::SubPath, "The requirements file, relative to the release.")
            .default("requirements.txt"),
        FieldSpec::new("wsgi", ValueType::ConfigWord, "The rendered Dockerfile's default gunicorn application.")
            .default("<app>.wsgi:application"),
        FieldSpec::new("pip-args", ValueType::String, "Extra `pip install` arguments in the rendered Dockerfile."),
        FieldSpec::new(
            "wheels",
            ValueType::String,
            "An absolute directory of wheels on the host (empty: none), copied into the build context: the rendered Dockerfile installs \
             from it alone (`--no-index`), for builds without network.",
        ),
        FieldSpec::new("health-path", ValueType::ConfigWord, "The path the image's HEALTHCHECK asks for.")
            .default("/health/"),
        FieldSpec::new("health-host", ValueType::ConfigWord, "The Host header of the image's HEALTHCHECK.")
            .default("localhost"),
        FieldSpec::new("network", ValueType::String, "`docker build --network` (`none`: nothing is downloaded).")
            .default("default"),
        FieldSpec::new("build-args", ValueType::Strings, "Extra `docker build` arguments."),
        FieldSpec::new("keep", ValueType::Int, "How many of the app's newest release images are kept.").default("5"),
        FieldSpec::new("docker", ValueType::String, "The docker command words.").default("docker"),
    ],
    effect: Effect::Reversible,
    undo: "Removes the image if this run built it (a failed release is no rollback's target).",
};

/// An image step's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    app: String,
    root: PathBuf,
    tag: Option<String>,
    build: bool,
    dockerfile: String,
    template: Option<PathBuf>,
    base_image: String,
    requirements: String,
    wsgi: String,
    pip_args: String,
    wheels: Option<PathBuf>,
    health_path: String,
    health_host: String,
    network: String,
    build_args: Vec<String>,
    keep: usize,
    docker: Vec<String>,
}

impl Settings {
    fn tag(&self, release: &str) -> String {
        self.tag.clone().unwrap_or_else(|| format!("{}:{release}", self.app))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    tag: String,
    docker: Vec<String>,
}

/// `docker ARGS` with the step's docker words.
fn docker<S: AsRef<str>>(words: &[String], args: &[S]) -> Command {
    let mut cmd = Command::new(words.first().cloned().unwrap_or_else(|| "docker".into()));
    cmd.args.extend(words.iter().skip(1).cloned());
    cmd.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
    cmd
}

/// A clear error when the Docker engine does not answer (no CLI, no daemon, no permission on its socket).
pub async fn engine_finding(host: &dyn Host, docker_words: &[String]) -> Option<Finding> {
    let cmd = docker(docker_words, &["version", "--format", "{{.Server.Version}}"]);
    let out = host.run(&cmd, &CancellationToken::new(), None).await;
    let (ok, evidence) = match &out {
        Ok(o) => (o.success(), o.stderr_str().lines().last().unwrap_or_default().to_owned()),
        Err(e) => (false, e.to_string()),
    };
    (!ok).then(|| {
        Finding::error(
            Code::PreflightDocker,
            format!("the Docker engine does not answer `{}`", cmd.display()),
            "install Docker (`apt-get install docker.io`) and start it (`systemctl start docker`), or set the step's \
             `docker` to a command that reaches it",
        )
        .evidence(evidence)
    })
}

/// Does the image exist on the host?
async fn exists(ctx: &UndoCtx, words: &[String], tag: &str) -> Result<bool, StepError> {
    Ok(quiet(ctx, &docker(words, &["image", "inspect", "--format", "{{.Id}}", tag])).await?.success())
}

fn render(s: &Settings, template: &str, release: &str) -> Result<String, StepError> {
    let data = json!({
        "app": s.app,
        "release": release,
        "base_image": s.base_image,
        "wsgi": s.wsgi,
        "requirements": s.requirements,
        "pip_args": s.pip_args,
        "wheels": s.wheels.is_some(),
        "health_path": s.health_path,
        "health_host": s.health_host,
    });
    templates::render(RENDERED, template, &data)
}

fn build_command(s: &Settings, release: &str, dockerfile: &str) -> Command {
    let dir = release_dir(&s.root, release);
    let mut args: Vec<String> = vec!["build".into(), "--network".into(), s.network.clone()];
    args.extend(["--label".into(), format!("zdd.app={}", s.app), "--label".into(), format!("zdd.release={release}")]);
    args.extend(["--tag".into(), s.tag(release), "--file".into(), path_text(&dir.join(dockerfile))]);
    args.extend(s.build_args.iter().cloned());
    args.push(path_text(&dir));
    docker(&s.docker, &args)
}

#[async_trait]
impl TypedKind for Image {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        let app = ctx.required("app")?.to_owned();
        let docker_words = words(ctx.given("docker").unwrap_or("docker"));
        Ok(Settings {
            root: ctx.required_path("root")?,
            tag: ctx.given("tag").map(str::to_owned),
            build: ctx.bool("build", true),
            dockerfile: ctx.given("dockerfile").unwrap_or("Dockerfile").to_owned(),
            template: ctx.path("template"),
            base_image: ctx.given("base-image").unwrap_or("python:3.11-slim").to_owned(),
            requirements: ctx.given("requirements").unwrap_or("requirements.txt").to_owned(),
            wsgi: ctx.given("wsgi").map_or_else(|| format!("{app}.wsgi:application"), str::to_owned),
            pip_args: ctx.given("pip-args").unwrap_or_default().to_owned(),
            wheels: ctx.given("wheels").map(PathBuf::from),
            health_path: ctx.given("health-path").unwrap_or("/health/").to_owned(),
            health_host: ctx.given("health-host").unwrap_or("localhost").to_owned(),
            network: ctx.given("network").unwrap_or("default").to_owned(),
            build_args: ctx.strings("build-args").iter().flat_map(|a| words(a)).collect(),
            keep: usize::try_from(ctx.int("keep").unwrap_or(5)).unwrap_or(5).max(1),
            docker: if docker_words.is_empty() { vec!["docker".into()] } else { docker_words },
            app,
        })
    }

    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        engine_finding(ctx.preview.host.as_ref(), &s.docker).await.into_iter().collect()
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let release = &ctx.target.release;
        let tag = s.tag(release);
        let mut preview = Preview::default();
        if !s.build {
            preview.checks.push(format!("the image {tag} exists"));
            return Ok(preview);
        }
        let dir = release_dir(&s.root, release);
        preview.actions.push(PlannedAction::Note {
            text: format!(
                "reuse {tag} if it exists; else build it with {}/{} if the release has it",
                dir.display(),
                s.dockerfile
            ),
        });
        let template = templates::load(ctx.host.as_ref(), s.template.as_deref(), DOCKERFILE).await?;
        preview.actions.push(PlannedAction::Write {
            path: dir.join(RENDERED),
            content: render(s, &template, release)?,
            mode: 0o644,
        });
        if let Some(wheels) = &s.wheels {
            let copy =
                Command::new("cp").arg("-a").arg(format!("{}/.", wheels.display())).arg(path_text(&dir.join(WHEELS)));
            preview.actions.push(PlannedAction::Run { command: copy.display() });
        }
        preview.actions.push(PlannedAction::Run { command: build_command(s, release, RENDERED).display() });
        preview.checks.push(format!("the image {tag} exists"));
        preview.undo.push(PlannedAction::Run { command: docker(&s.docker, &["image", "rm", &tag]).display() });
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let release = &ctx.target.release;
        let tag = s.tag(release);
        if exists(ctx, &s.docker, &tag).await? {
            ctx.message(format!("image {tag} exists: using it"));
            return Ok(());
        }
        if !s.build {
            return Err(StepError::fatal(format!(
                "image {tag} does not exist (`build #false`: zdd builds nothing); build or load it on this host first"
            )));
        }
        let dir = release_dir(&s.root, release);
        let host = ctx.host.as_ref();
        let dockerfile = if host.read_file(&dir.join(&s.dockerfile)).await?.is_some() {
            ctx.message(format!("building {tag} with the project's {}", s.dockerfile));
            s.dockerfile.clone()
        } else {
            let template = templates::load(host, s.template.as_deref(), DOCKERFILE).await?;
            host.write_file(&dir.join(RENDERED), render(s, &template, release)?.as_bytes(), 0o644).await?;
            ctx.message(format!("building {tag} with zdd's Dockerfile (the project has no {})", s.dockerfile));
            RENDERED.to_owned()
        };
        let ignore = dir.join(".dockerignore");
        if host.read_file(&ignore).await?.is_none() {
            // The python-env step's venv is the host's, not the image's: keep it (and .git) out of the context.
            host.write_file(&ignore, b"venv\n.git\n", 0o644).await?;
        }
        ctx.record_undo(to_facts(&Facts { tag: tag.clone(), docker: s.docker.clone() })).await?;
        if let Some(wheels) = &s.wheels {
            let context_wheels = dir.join(WHEELS);
            host.remove_all(&context_wheels).await?;
            let copy =
                Command::new("cp").arg("-a").arg(format!("{}/.", wheels.display())).arg(path_text(&context_wheels));
            host.create_dir_all(&context_wheels).await?;
            ctx.exec_ok(&copy).await?;
        }
        let started = std::time::Instant::now();
        let built = ctx.exec_ok(&build_command(s, release, &dockerfile)).await;
        if s.wheels.is_some() {
            host.remove_all(&dir.join(WHEELS)).await?;
        }
        built?;
        ctx.message(format!("built {tag} in {:.1} s", started.elapsed().as_secs_f64()));
        prune(ctx, s, release).await
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("image", facts)?;
        let out = quiet(ctx, &docker(&facts.docker, &["image", "rm", &facts.tag])).await?;
        if out.success() {
            ctx.message(format!("removed image {}", facts.tag));
        } else if exists(ctx, &facts.docker, &facts.tag).await? {
            ctx.message(format!("image {} kept: {}", facts.tag, out.stderr_str().trim()));
        }
        Ok(())
    }

    fn releases_kept(&self, s: &Settings) -> Option<usize> {
        Some(s.keep)
    }
}

/// Remove the app's release images beyond the newest `keep` (release ids sort by time), never the one just
/// built or the live release's; an image a container still uses is refused by docker and stays.
async fn prune(ctx: &StepCtx, s: &Settings, release: &str) -> Result<(), StepError> {
    let list = docker(
        &s.docker,
        &["image", "ls", "--filter", &format!("label=zdd.app={}", s.app), "--format", "{{.Repository}}:{{.Tag}}"],
    );
    let out = quiet(ctx, &list).await?;
    let tags = out.stdout_str();
    let mut ours: Vec<&str> = tags.lines().map(str::trim).filter(|t| t.starts_with(&format!("{}:", s.app))).collect();
    ours.sort_unstable();
    ours.dedup();
    let keep_from = ours.len().saturating_sub(s.keep);
    let live = ctx.target.live_release.as_deref().map(|r| format!("{}:{r}", s.app));
    for tag in &ours[..keep_from] {
        if *tag == s.tag(release) || live.as_deref() == Some(*tag) {
            continue;
        }
        if quiet(ctx, &docker(&s.docker, &["image", "rm", tag])).await?.success() {
            ctx.message(format!("removed old image {tag}"));
        }
    }
    Ok(())
}
