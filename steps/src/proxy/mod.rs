//! The `proxy-switch` kind: move traffic to the new instance behind Nginx.
//!
//! Socket mode (the default): the site's upstream is `unix:<root>/run/current.sock`, a symlink; the switch swaps it
//! atomically to `<slot>.sock` — Nginx resolves the path at every connect, so no reload and no dropped request.
//! The site file is (re)written, tested and reloaded only when its rendered content changes. Reload mode: the site
//! file is rewritten with the new port, tested (the old file is restored if the test fails) and Nginx reloaded.
//! Either way the step then confirms through the proxy that the new instance answers. With `lanes` (rolling
//! replacement) the upstream lists one link per lane and the step swaps only its own `lane`'s link.
//!
//! Its preflight (and a check right before the swap) makes sure Nginx's workers can reach the socket directory
//! and read the static directory ([`workers`]); a failed confirmation shows what Nginx's error log says.
//!
//! With `proxy "caddy"` the proxy is Caddy ([`caddy`]): the same link swap, the configuration loaded through
//! Caddy's admin API when it changes.
//!
//! With `tls-cert` and `tls-key` the site serves HTTPS on `tls-listen` and its plain `listen` redirects there
//! (301). The confirmation (and a `smoke` step that names this switch) trusts the system's roots plus the
//! certificate the site serves: the file the plan gave Nginx, so a self-signed one verifies, and nothing else
//! is let through unverified.

pub mod caddy;
pub mod error_log;
pub mod maintenance;
pub mod nginx;
pub mod workers;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::host::access::Need;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{Backoff, from_facts, sleep, to_facts};
use crate::health_gate::HOST;
use crate::manage::ROOT;
use crate::origin::OriginFilter;
use crate::probe::{self, ProbeUrl};
pub use error_log::ErrorLog;
use nginx::{Mode, Nginx};

pub struct ProxySwitch;

static SPEC: KindSpec = KindSpec {
    name: "proxy-switch",
    summary: "Switch Nginx (or Caddy) to the new instance: swap the upstream socket link, or rewrite the port and reload.",
    fields: &[
        FieldSpec::new(
            "proxy",
            ValueType::Enum(&["nginx", "caddy"]),
            "The proxy: `nginx`, or `caddy` (socket mode; the config is loaded through Caddy's admin API).",
        )
        .default("nginx"),
        FieldSpec::new("caddy", ValueType::String, "Caddy: the caddy command words.").default("caddy"),
        FieldSpec::new(
            "caddy-admin",
            ValueType::ConfigWord,
            "Caddy: its admin endpoint (`localhost:2019`, or `unix//path/admin.sock`); the config keeps it there.",
        )
        .default("localhost:2019"),
        FieldSpec::new("app", ValueType::Name, "The app's name (the upstream is `<app>_app`).").required(),
        ROOT,
        FieldSpec::new(
            "mode",
            ValueType::Enum(&["socket", "port", "reload"]),
            "`socket`: swap `<root>/run/current.sock`; `port` (or `reload`): rewrite the upstream port and reload.",
        )
        .default("socket"),
        FieldSpec::new(
            "site-conf",
            ValueType::Path,
            "The site file Nginx includes, e.g. /etc/nginx/sites-enabled/shop.conf; with Caddy, the JSON config zdd loads.",
        )
        .required(),
        FieldSpec::new("nginx-conf", ValueType::Path, "Nginx's main config, passed as `-c` (a private Nginx)."),
        FieldSpec::new("nginx", ValueType::String, "The nginx command words (e.g. `nginx -p /srv/nginx`).")
            .default("nginx"),
        FieldSpec::new("pid-file", ValueType::Path, "Nginx's pid file (to find the workers a reload replaces).")
            .default("/run/nginx.pid"),
        FieldSpec::new(
            "reload-command",
            ValueType::String,
            "How to reload Nginx, as words (e.g. `systemctl reload nginx`); default `<nginx> [-c <nginx-conf>] -s reload`.",
        ),
        FieldSpec::new("template", ValueType::Path, "Your own site template (handlebars) instead of the built-in one."),
        FieldSpec::new("listen", ValueType::ConfigWords, "The server block's `listen`.").default("80"),
        FieldSpec::new("server-name", ValueType::ConfigWords, "The server block's `server_name`.").default("_"),
        FieldSpec::new(
            "static-dir",
            ValueType::ConfigPath,
            "Served at `static-url` by Nginx; keep it outside releases (e.g. `<root>/shared/static`) so old pages' assets stay.",
        ),
        FieldSpec::new("static-url", ValueType::ConfigWord, "URL prefix of static files.").default("/static/"),
        FieldSpec::new(
            "tls-cert",
            ValueType::ConfigPath,
            "HTTPS: the certificate (PEM, chain included) Nginx serves on `tls-listen`; `listen` then redirects to \
             HTTPS. Needs `tls-key`. The confirmation trusts it.",
        ),
        FieldSpec::new("tls-key", ValueType::ConfigPath, "HTTPS: the certificate's private key. Needs `tls-cert`."),
        FieldSpec::new("tls-listen", ValueType::ConfigWords, "HTTPS: the server block's `listen` (`ssl` is added).")
            .default("443"),
        FieldSpec::new(
            "read-timeout",
            ValueType::Duration,
            "Nginx's `proxy_read_timeout`/`proxy_send_timeout`: how long a response, or an open WebSocket, may be silent.",
        )
        .default("60s"),
        FieldSpec::new(
            "maintenance-page",
            ValueType::Path,
            "The HTML page `zdd maintenance on` serves (with 503) instead of the app; default a short built-in page.",
        ),
        FieldSpec::new(
            "maintenance-retry-after",
            ValueType::Duration,
            "The maintenance page's `Retry-After`: when visitors (and crawlers) should come back.",
        )
        .default("60s"),
        FieldSpec::new("confirm", ValueType::Url, "A URL through the proxy that must answer after the switch."),
        HOST,
        FieldSpec::new("confirm-status", ValueType::Int, "Expected status of `confirm`.").default("200"),
        FieldSpec::new(
            "confirm-contains",
            ValueType::String,
            "Text the `confirm` answer must contain (e.g. the release id).",
        ),
        FieldSpec::new("confirm-within", ValueType::Duration, "How long the confirmation may take.").default("10s"),
        FieldSpec::new(
            "error-log",
            ValueType::Path,
            "Nginx's error log (with Caddy, the file its config logs to): a failed confirmation shows the lines written during it.",
        ),
        FieldSpec::new(
            "lane",
            ValueType::Name,
            "Rolling replacement: the lane this switch moves, by swapping `<root>/run/current-<lane>.sock` to \
             `<lane>-<slot>.sock` (the `lane` of its service step). Needs `lanes`.",
        ),
        FieldSpec::new(
            "lanes",
            ValueType::Strings,
            "Rolling replacement: every lane, in order (separate strings, or one string of lanes separated by spaces, \
             as `lanes \"{{lanes}}\"`); the upstream gets one server per lane, `current-<lane>.sock`.",
        ),
    ],
    effect: Effect::Reversible,
    undo: "Swaps the socket link back (socket mode) and/or restores the previous site file, tests it and reloads Nginx \
           (Caddy: loads the previous config).",
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Facts {
    /// The site file was rewritten; its previous content (None: there was none).
    site_written: bool,
    site_previous: Option<String>,
    /// The socket link was swapped; its previous target (None: there was none).
    link_swapped: bool,
    link_previous: Option<PathBuf>,
    /// The switch's settings (site file, link, reload command): what the undo restores with, with no plan.
    nginx: Option<Nginx>,
    /// With Caddy: its admin endpoint and config file (the site file above is the config it loaded).
    #[serde(default)]
    caddy: Option<caddy::Caddy>,
}

/// A proxy-switch step's settings: the switch itself ([`Nginx`], what its undo facts record) and the
/// confirmation after it.
#[derive(Debug)]
pub struct Settings {
    pub nginx: Nginx,
    /// `proxy "caddy"`: Caddy instead of Nginx (the common settings stay in `nginx`).
    pub caddy: Option<caddy::Caddy>,
    confirm: Option<Confirm>,
    /// Nginx's error log (absolute): a failed confirmation shows what Nginx wrote meanwhile.
    error_log: Option<PathBuf>,
    /// The page `zdd maintenance on` serves, a file on this machine (default [`maintenance::DEFAULT_PAGE`]).
    maintenance_page: Option<PathBuf>,
}

impl Settings {
    /// What this proxy's `error-log` is, for a failure's evidence.
    pub fn log_name(&self) -> &'static str {
        if self.caddy.is_some() { "Caddy's log" } else { "Nginx's error log" }
    }
}

/// Write a proxy's configuration file and run `check` (Nginx's test, Caddy's load); when the proxy refuses it,
/// put `previous` back (or remove the file) and fail for good with `refused`'s message: trying again writes
/// the same file.
async fn install_checked(
    ctx: &UndoCtx,
    path: &std::path::Path,
    content: &str,
    previous: Option<&str>,
    check: &zdd_engine::host::Command,
    refused: impl FnOnce(String) -> String,
) -> Result<(), StepError> {
    if let Some(dir) = path.parent() {
        ctx.host.create_dir_all(dir).await?;
    }
    ctx.host.write_file(path, content.as_bytes(), 0o644).await?;
    let Err(e) = ctx.exec_ok(check).await else { return Ok(()) };
    match previous {
        Some(old) => ctx.host.write_file(path, old.as_bytes(), 0o644).await?,
        None => ctx.host.remove_all(path).await?,
    }
    Err(match e {
        StepError::Failed { message, detail } => StepError::Fatal { message: refused(message), detail },
        other => other,
    })
}

/// `confirm`: a URL through the proxy that must answer after the switch.
#[derive(Debug)]
struct Confirm {
    url: String,
    host: Option<String>,
    status: u16,
    contains: Option<String>,
    within: Duration,
}

/// GET `confirm` through the proxy until it answers as expected, counting only the answers of the new instance
/// (`origin`, in port mode: see [`crate::origin`]).
async fn confirm(s: &Settings, ctx: &StepCtx, origin: Option<String>) -> Result<(), StepError> {
    let Some(c) = &s.confirm else {
        return Ok(());
    };
    let url = ProbeUrl::parse(&c.url).map_err(StepError::fatal)?;
    let (status, contains, within) = (c.status, c.contains.as_deref(), c.within);
    let trust = s.nginx.tls.as_ref().map(|t| t.cert.as_path());
    let client = probe::client_trusting(ctx.host.as_ref(), &url, Duration::from_secs(2), trust).await?;
    let mut filter = OriginFilter::new(origin);
    let error_log = ErrorLog::open(s.error_log.as_deref(), s.log_name(), ctx).await;
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        let last = match probe::get(&client, &url, c.host.as_deref()).await {
            Ok(a) if !filter.admits(&a) => format!("only {} (not the new instance)", filter.describe_ignored()),
            Ok(a) if a.status == status && contains.is_none_or(|c| a.body.contains(c)) => {
                let ignored = match filter.ignored() {
                    0 => String::new(),
                    _ => format!("; not counted: {}", filter.describe_ignored()),
                };
                ctx.message(format!("{} answers through the proxy{}{ignored}", url.url, filter.from_expected()));
                return Ok(());
            }
            Ok(a) => format!("status {}: {}", a.status, a.body.chars().take(200).collect::<String>()),
            Err(e) => e,
        };
        if start.elapsed() >= within {
            let mut detail = last;
            if let Some(log) = &error_log {
                detail.push_str(&log.written_since(ctx).await);
            }
            return Err(StepError::failed(format!(
                "the new instance does not answer through the proxy at {}",
                url.url
            ))
            .with_detail(ctx.redactor.redact(&detail)));
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
}

/// Can the workers reach the sockets (socket mode) and read the static directory?
async fn reach_findings(ngx: &Nginx, host: &dyn zdd_engine::host::Host, w: &workers::Workers) -> Vec<Finding> {
    let mut found = Vec::new();
    if ngx.mode == Mode::Socket {
        let run = ngx.root.join("run");
        found.extend(workers::check(host, w, &run, Need::Enter, "the upstream's socket directory").await);
    }
    if let Some(dir) = &ngx.static_dir {
        found.extend(workers::check(host, w, dir, Need::Read, "the static directory").await);
    }
    found
}

/// Refuse (fatal, with the evidence and the fix) when the running Nginx workers cannot connect to the new
/// instance's `socket`, or, with `dirs`, reach the socket directory and the static files: before traffic is sent
/// there (the switch's swap, a canary's split), rather than answer 502 after. Workers that cannot be found pass:
/// the preflight reported them.
pub(crate) async fn refuse_unreachable(
    ngx: &Nginx,
    host: &dyn zdd_engine::host::Host,
    socket: &std::path::Path,
    dirs: bool,
) -> Result<(), StepError> {
    let Ok(workers) = workers::workers(ngx, host, None).await else {
        return Ok(());
    };
    let mut found = workers::check(host, &workers, socket, Need::Connect, "the new instance's socket").await;
    if found.is_none() && dirs {
        found = reach_findings(ngx, host, &workers).await.into_iter().next();
    }
    match found {
        Some(f) => {
            let detail = f.evidence.iter().map(String::as_str).chain([f.help.as_str()]).collect::<Vec<_>>();
            Err(StepError::fatal(f.message).with_detail(detail.join("\n")))
        }
        None => Ok(()),
    }
}

/// The settings of the proxy-switch step `name`, for a step that names it (validation checked that it is one).
pub(crate) fn switch_settings<'p>(plan: &'p zdd_engine::plan::Plan, name: &str) -> Result<&'p Settings, StepError> {
    plan.step_by_name(name)
        .and_then(|s| s.settings.get::<Settings>())
        .ok_or_else(|| StepError::fatal(format!("`{name}` is not a proxy-switch step of this plan")))
}

/// The Nginx settings of the proxy-switch step `name`, for a canary: refused (fatal) for a Caddy switch, whose
/// configuration carries no split.
pub(crate) fn nginx_switch<'p>(plan: &'p zdd_engine::plan::Plan, name: &str) -> Result<&'p Nginx, StepError> {
    let s = switch_settings(plan, name)?;
    if s.caddy.is_some() {
        return Err(StepError::fatal(format!(
            "a canary splits requests in Nginx's site: `{name}` is `proxy \"caddy\"` (set canary_weight to 0, or use Nginx)"
        )));
    }
    Ok(&s.nginx)
}

/// The certificate and key exist, zdd can read them (the confirmation trusts the certificate), and so can
/// Nginx's master: it loads them at every reload, as root on a usual install; a master running as another user
/// (a private Nginx) must be able to read them itself.
async fn tls_findings(ngx: &Nginx, ctx: &PreflightCtx) -> Vec<Finding> {
    let Some(tls) = &ngx.tls else {
        return Vec::new();
    };
    let host = ctx.preview.host.as_ref();
    let mut found = Vec::new();
    for (path, what) in [(&tls.cert, "the TLS certificate"), (&tls.key, "the TLS key")] {
        if let Some(f) = crate::preflight::readable_file(host, path, what, &ctx.provided).await {
            found.push(f);
        } else if let Some(master) = workers::live_master(host, &ngx.pid_file).await
            && master.account.uid != 0
            && let Some(f) = workers::check_as(host, "master", &master, path, Need::Read, what).await
        {
            found.push(f);
        }
    }
    found
}

/// The site's configuration for a deploy into `slot`: Nginx's site file, or Caddy's config.
async fn site_content(s: &Settings, host: &dyn zdd_engine::host::Host, slot: &str) -> Result<String, StepError> {
    match &s.caddy {
        Some(c) => c.render(&s.nginx, host).await,
        None => s.nginx.render_site(host, slot).await,
    }
}

/// Caddy's preflight: the program is there (or a `packages` step installs `caddy`), and zdd can read the TLS
/// files (Caddy loads them as its own user: not checked).
async fn caddy_findings(c: &caddy::Caddy, ngx: &Nginx, ctx: &PreflightCtx) -> Vec<Finding> {
    let host = ctx.preview.host.as_ref();
    if let Some(f) = crate::preflight::program(host, &c.caddy[0], "caddy", &ctx.provided).await {
        return vec![f];
    }
    let mut found = Vec::new();
    if let Some(tls) = &ngx.tls {
        for (path, what) in [(&tls.cert, "the TLS certificate"), (&tls.key, "the TLS key")] {
            found.extend(crate::preflight::readable_file(host, path, what, &ctx.provided).await);
        }
    }
    found
}

/// The lanes of `lanes` strings: each split on whitespace, so a plan variable can hold the list (`lanes
/// "{{lanes}}"`, as the `repeat` over the lanes uses it). The check and the settings read them alike.
pub(crate) fn lane_list(strings: &[String]) -> Vec<String> {
    strings.iter().flat_map(|s| s.split_whitespace()).map(str::to_owned).collect()
}

#[async_trait]
impl TypedKind for ProxySwitch {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            nginx: Nginx::from_fields(ctx)?,
            caddy: caddy::Caddy::from_fields(ctx)?,
            confirm: ctx.given("confirm").map(|url| Confirm {
                url: url.to_owned(),
                host: ctx.given("host").map(str::to_owned),
                status: u16::try_from(ctx.int("confirm-status").unwrap_or(200)).unwrap_or(200),
                contains: ctx.given("confirm-contains").map(str::to_owned),
                within: ctx.duration("confirm-within", Duration::from_secs(10)),
            }),
            error_log: ctx.path("error-log"),
            maintenance_page: ctx.path("maintenance-page"),
        })
    }

    /// The switch is the cutover: once it succeeded, Nginx sends the live traffic to the new instance.
    fn cuts_over(&self, _settings: &Settings) -> bool {
        true
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        caddy::check(step, diags);
        // `tls-cert` and `tls-key` go together: a certificate without its key (or the reverse) is not HTTPS. An
        // empty value (a plan variable left empty) is no value.
        let given = |name: &str| {
            step.fields.path(name).filter(|p| !p.as_os_str().is_empty()).and(step.fields.all(name).first())
        };
        let half_tls = match (given("tls-cert"), given("tls-key")) {
            (Some(cert), None) => {
                Some((cert.span, "`tls-cert` needs `tls-key`, the certificate's private key", "no key"))
            }
            (None, Some(key)) => {
                Some((key.span, "`tls-key` needs `tls-cert`, the certificate it belongs to", "no certificate"))
            }
            _ => None,
        };
        if let Some((span, message, label)) = half_tls {
            diags.push(Diagnostic::error(Code::ProxyTls, message).at(span, label).help(
                "give both, `tls-cert \"/etc/ssl/shop.pem\"` and `tls-key \"/etc/ssl/private/shop.key\"`, or neither",
            ));
        }
        let lanes = lane_list(&step.fields.strings("lanes"));
        let lane = step.fields.all("lane").first();
        let problem = match (lane, step.fields.all("lanes").first()) {
            (None, None) => return,
            (Some(field), None) => Some((
                field.span,
                "a `lane` needs `lanes`, every lane of the upstream",
                "which lanes does the upstream list?",
            )),
            (None, Some(field)) => Some((
                field.span,
                "`lanes` needs `lane`, the one this step switches",
                "which lane does this step switch?",
            )),
            (Some(field), Some(_)) if !step.fields.str("lane").is_some_and(|l| lanes.iter().any(|x| x == l)) => {
                Some((field.span, "this `lane` is not one of `lanes`", "not in the upstream"))
            }
            (Some(field), Some(_)) if matches!(step.fields.str("mode"), Some("port" | "reload")) => Some((
                field.span,
                "lanes need `mode \"socket\"`: each lane is a socket link",
                "a lane without a socket link",
            )),
            (Some(_), Some(field)) => {
                let mut seen = std::collections::BTreeSet::new();
                // A lane names a socket link and lands in the site file.
                if let Some(problem) = lanes.iter().find_map(|l| crate::service::config::lane_name_problem(l)) {
                    Some((field.span, problem, "it names a socket link"))
                } else {
                    lanes.iter().any(|l| !seen.insert(l)).then_some((
                        field.span,
                        "a lane is listed twice",
                        "each lane is one server",
                    ))
                }
            }
        };
        if let Some((span, message, label)) = problem {
            diags.push(
                Diagnostic::error(Code::ProxyLanes, message)
                    .at(span, label)
                    .help("write `lanes \"1\" \"2\" \"3\"` and `lane \"1\"` (one of them) in socket mode"),
            );
        }
    }

    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        let (p, ngx) = (&ctx.preview, &s.nginx);
        let mut found = Vec::new();
        if let Some(c) = &s.caddy {
            return caddy_findings(c, ngx, ctx).await;
        }
        if let Some(f) = crate::preflight::program(p.host.as_ref(), &ngx.nginx[0], "nginx", &ctx.provided).await {
            found.push(f);
            return found;
        }
        let conf_step = ngx.nginx_conf.as_deref().and_then(|c| ctx.provided.path(c));
        let workers = match workers::workers(ngx, p.host.as_ref(), conf_step).await {
            Ok(w) => w,
            Err(f) => {
                found.push(f);
                return found;
            }
        };
        found.extend(reach_findings(ngx, p.host.as_ref(), &workers).await);
        found.extend(tls_findings(ngx, ctx).await);
        found
    }

    /// The preflight (nginx there, its workers able to reach the sockets and static files, the TLS files
    /// readable), then its version.
    async fn doctor(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<zdd_engine::doctor::Check> {
        let mut checks = zdd_engine::doctor::from_findings(self.preflight(s, ctx).await);
        let host = ctx.preview.host.as_ref();
        checks.extend(match &s.caddy {
            Some(c) => crate::doctor::version(host, &c.caddy, "version").await,
            None => crate::doctor::version(host, &s.nginx.nginx, "-v").await,
        });
        checks
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let ngx = &s.nginx;
        let slot = &ctx.target.slot;
        let content = site_content(s, ctx.host.as_ref(), slot).await?;
        let current = ctx.host.read_file(&ngx.site_conf).await?.map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut preview = Preview::default();
        if current.as_deref() != Some(content.as_str()) {
            let reload = match &s.caddy {
                Some(c) => c.reload_command().display(),
                None => ngx.reload_command().display(),
            };
            preview.actions.push(PlannedAction::Write { path: ngx.site_conf.clone(), content, mode: 0o644 });
            if s.caddy.is_none() {
                preview.actions.push(PlannedAction::Run { command: ngx.test_command().display() });
            }
            preview.actions.push(PlannedAction::Run { command: reload.clone() });
            preview.undo.push(match current {
                Some(old) => PlannedAction::Write { path: ngx.site_conf.clone(), content: old, mode: 0o644 },
                None if s.caddy.is_some() => {
                    PlannedAction::Note { text: "Caddy loads a config with only its admin endpoint".into() }
                }
                None => PlannedAction::Remove { path: ngx.site_conf.clone() },
            });
            preview.undo.push(PlannedAction::Run { command: reload });
        }
        if ngx.mode == Mode::Socket {
            let link = ngx.current_link();
            let previous = ctx.host.read_link(&link).await?;
            preview.actions.push(PlannedAction::Link { link: link.clone(), target: ngx.slot_socket(slot) });
            preview.undo.insert(
                0,
                match previous {
                    Some(t) => PlannedAction::Link { link, target: t },
                    None => PlannedAction::Remove { path: link },
                },
            );
        }
        if let Some(c) = &s.confirm {
            preview.checks.push(format!(
                "GET {} answers {} through the proxy{}",
                c.url,
                c.status,
                OriginFilter::new(ngx.origin(slot)?).from_expected()
            ));
        }
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let ngx = &s.nginx;
        let slot = &ctx.target.slot;
        let content = site_content(s, ctx.host.as_ref(), slot).await?;
        let current = ctx.host.read_file(&ngx.site_conf).await?.map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut facts = Facts { nginx: Some(ngx.clone()), caddy: s.caddy.clone(), ..Facts::default() };
        if current.as_deref() != Some(content.as_str()) {
            facts.site_written = true;
            facts.site_previous = current.clone();
            ctx.record_undo(to_facts(&facts)).await?;
            if let Some(c) = &s.caddy {
                c.install(ctx, &content, current.as_deref()).await?;
                ctx.message(format!(
                    "{} written and loaded through Caddy's admin API ({})",
                    c.config.display(),
                    c.admin
                ));
            } else {
                ngx.install_site(ctx, &content, current.as_deref()).await?;
                ctx.message(format!("{} written, tested, Nginx reloaded", ngx.site_conf.display()));
            }
        }
        if ngx.mode == Mode::Socket {
            let link = ngx.current_link();
            let target = ngx.slot_socket(slot);
            if !ctx.host.exists(&target).await? {
                return Err(StepError::failed(format!("{} does not exist: is the new instance up?", target.display())));
            }
            // The preflight may not have known the workers' user (a config written by an earlier step); the
            // running workers are known now. Refuse before the swap rather than answer 502 after it.
            if s.caddy.is_none() {
                refuse_unreachable(ngx, ctx.host.as_ref(), &target, true).await?;
            }
            facts.link_swapped = true;
            facts.link_previous = ctx.host.read_link(&link).await?;
            ctx.record_undo(to_facts(&facts)).await?;
            ctx.host.swap_symlink(&link, &target).await?;
            ctx.message(format!("{} -> {}", link.display(), target.display()));
        }
        confirm(s, ctx, ngx.origin(slot)?).await
    }

    async fn maintenance(&self, s: &Settings, ctx: &StepCtx, on: bool) -> Result<bool, StepError> {
        if s.caddy.is_some() {
            return Err(StepError::fatal("maintenance mode needs an Nginx switch: this one is `proxy \"caddy\"`"));
        }
        maintenance::switch(s, ctx, on).await.map(|()| true)
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("proxy-switch", facts)?;
        let Some(ngx) = &facts.nginx else {
            return Err(StepError::fatal("these proxy-switch undo facts do not say which site and link to restore"));
        };
        if facts.link_swapped {
            let link = ngx.current_link();
            match &facts.link_previous {
                Some(prev) => ctx.host.swap_symlink(&link, prev).await?,
                None => ctx.host.remove_all(&link).await?,
            }
        }
        if facts.site_written {
            match &facts.caddy {
                Some(c) => c.restore(ctx, facts.site_previous.as_deref()).await?,
                None => ngx.restore_site(ctx, facts.site_previous.as_deref()).await?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use zdd_engine::plan::Value;

    use super::*;
    use crate::testing::FakeProxy;

    fn step(fields: &[(&str, Value)]) -> Step {
        crate::testing::step("switch-1", "proxy-switch", fields)
    }

    fn lanes(names: &[&str]) -> (&'static str, Value) {
        ("lanes", Value::Strings(names.iter().map(|s| (*s).to_owned()).collect()))
    }

    fn messages(fields: &[(&str, Value)]) -> Vec<String> {
        let mut diags = Diagnostics::new();
        ProxySwitch.check(&step(fields), &mut diags);
        diags.iter().map(|d| format!("{}: {}", d.code, d.message)).collect()
    }

    /// The settings of a switch that confirms at `base` within `within`.
    fn confirm_step(base: &str, within: Duration) -> Settings {
        let step = step(&[
            ("app", Value::Str("shop".into())),
            ("root", Value::Path("/srv/shop".into())),
            ("site-conf", Value::Path("/etc/nginx/sites-enabled/shop.conf".into())),
            ("confirm", Value::Str(format!("{base}/health/"))),
            ("confirm-within", Value::Duration(within)),
            ("host", Value::Str("localhost".into())),
        ]);
        ProxySwitch.settings(&SettingsCtx::new(&step, std::path::Path::new("/"))).unwrap()
    }

    fn ctx() -> StepCtx {
        crate::testing::ctx("switch-1", std::path::Path::new("/"), std::sync::Arc::default())
    }

    const OLD: Option<&str> = Some("127.0.0.1:8001");
    const NEW: Option<&str> = Some("127.0.0.1:8002");

    /// Right after a reload, Nginx workers from before it still answer from the old port: those answers are
    /// asked again, not counted, until the new instance answers.
    #[tokio::test]
    async fn the_confirmation_counts_only_the_new_instance() {
        let proxy = FakeProxy::start(|n| if n < 4 { (200, OLD, "ok") } else { (200, NEW, "ok") });
        let step = confirm_step(&proxy.base, Duration::from_secs(10));
        confirm(&step, &ctx(), Some("127.0.0.1:8002".into())).await.unwrap();
        assert_eq!(proxy.requests(), 5, "four old answers asked again, the fifth (new) counted");
        assert!(proxy.probes.lock().unwrap().iter().all(|p| *p), "every check asks the proxy to name the instance");
    }

    #[tokio::test]
    async fn the_confirmation_fails_when_only_the_old_instance_answers() {
        let proxy = FakeProxy::start(|n| if n % 2 == 0 { (200, OLD, "ok") } else { (200, None, "ok") });
        let step = confirm_step(&proxy.base, Duration::from_millis(300));
        let err = confirm(&step, &ctx(), Some("127.0.0.1:8002".into())).await.unwrap_err();
        let StepError::Failed { message, detail } = err else { panic!("{err}") };
        assert!(message.contains("does not answer through the proxy"), "{message}");
        let detail = detail.unwrap_or_default();
        assert!(detail.contains("from 127.0.0.1:8001") && detail.contains("naming no instance"), "{detail}");
    }

    /// Socket mode: the answers cannot name the instance (the upstream is the link) and need not: all count.
    #[tokio::test]
    async fn without_an_origin_the_first_good_answer_confirms() {
        let proxy = FakeProxy::start(|_| (200, None, "ok"));
        confirm(&confirm_step(&proxy.base, Duration::from_secs(5)), &ctx(), None).await.unwrap();
        assert_eq!(proxy.requests(), 1);
    }

    #[test]
    fn a_certificate_and_its_key_go_together() {
        let path = |name: &'static str, p: &str| (name, Value::Path(p.into()));
        assert!(messages(&[path("tls-cert", "/etc/ssl/a.pem"), path("tls-key", "/etc/ssl/a.key")]).is_empty());
        // A plan variable left empty is no TLS, not half of it.
        assert!(messages(&[path("tls-cert", ""), path("tls-key", "")]).is_empty());
        assert_eq!(
            messages(&[path("tls-cert", "/etc/ssl/a.pem"), path("tls-key", "")]),
            ["zdd::proxy-tls: `tls-cert` needs `tls-key`, the certificate's private key"]
        );
        assert_eq!(
            messages(&[path("tls-key", "/etc/ssl/a.key")]),
            ["zdd::proxy-tls: `tls-key` needs `tls-cert`, the certificate it belongs to"]
        );
    }

    #[test]
    fn lanes_and_lane_go_together() {
        let lane = |l: &str| ("lane", Value::Str(l.into()));
        assert!(messages(&[]).is_empty());
        assert!(messages(&[lane("2"), lanes(&["1", "2", "3"])]).is_empty());
        assert_eq!(messages(&[lane("2")]), ["zdd::proxy-lanes: a `lane` needs `lanes`, every lane of the upstream"]);
        assert_eq!(messages(&[lanes(&["1"])]), ["zdd::proxy-lanes: `lanes` needs `lane`, the one this step switches"]);
        assert_eq!(messages(&[lane("4"), lanes(&["1", "2"])]), ["zdd::proxy-lanes: this `lane` is not one of `lanes`"]);
        let port = ("mode", Value::Str("port".into()));
        assert_eq!(messages(&[lane("1"), lanes(&["1"]), port]).len(), 1);
        assert_eq!(messages(&[lane("1"), lanes(&["1", "1"])]), ["zdd::proxy-lanes: a lane is listed twice"]);
        // One string of lanes separated by spaces (`lanes "{{lanes}}"`) is the same list.
        assert!(messages(&[lane("3"), lanes(&["1 2  3"])]).is_empty());
        assert_eq!(messages(&[lane("1"), lanes(&["1 1"])]), ["zdd::proxy-lanes: a lane is listed twice"]);
        assert_eq!(messages(&[lane("1"), lanes(&["1", "x;y"])]).len(), 1);
        // Names that could meet another lane's: `1-a` + slot `b` is `1` + slot `a-b`; `current-a.sock` is lane a's.
        assert_eq!(
            messages(&[lane("1"), lanes(&["1", "1-a"])]),
            ["zdd::proxy-lanes: a lane name is letters and digits only"]
        );
        assert_eq!(
            messages(&[lane("a"), lanes(&["a", "current"])]),
            ["zdd::proxy-lanes: `current` cannot name a lane: it is the links' prefix"]
        );
    }
}
