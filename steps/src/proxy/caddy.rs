//! Caddy as the proxy (`proxy "caddy"`): the whole Caddy configuration, JSON rendered from
//! `templates/caddy-site.json.hbs`, written to `site-conf` and loaded with `caddy reload` (a `POST /load` to the
//! admin endpoint: Caddy swaps configurations gracefully, keeping its listeners, so a change drops nothing). The
//! upstream is `unix/<root>/run/current.sock`, the same link Nginx's socket mode swaps, dialled anew for each
//! request (keep-alive to the upstream is off): after the swap every request reaches the new instance, with no
//! configuration change at all. Nginx-only settings (port mode, lanes, canaries, maintenance) are refused
//! ([`check`]).

use std::path::PathBuf;

use serde_json::json;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};
use zdd_engine::plan::Step;
use zdd_engine::settings::SettingsCtx;

use super::nginx::Nginx;
use crate::common::{path_text, words};
use crate::templates;

/// Where Caddy's admin API listens unless the step says otherwise (Caddy's own default).
pub const DEFAULT_ADMIN: &str = "localhost:2019";

/// A Caddy switch's own settings, recorded in its undo facts beside the common ones ([`Nginx`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Caddy {
    /// The caddy command words.
    pub caddy: Vec<String>,
    /// The admin endpoint (`localhost:2019`, `unix//run/caddy-admin.sock`): the config keeps it where it is.
    pub admin: String,
    /// The file zdd writes and loads (the step's `site-conf`).
    pub config: PathBuf,
    /// Where Caddy logs (the step's `error-log`): the config sends Caddy's log there.
    pub log: Option<PathBuf>,
}

impl Caddy {
    /// From a proxy-switch step's fields: `Some` with `proxy "caddy"`.
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Option<Self>, Diagnostics> {
        if ctx.str("proxy") != Some("caddy") {
            return Ok(None);
        }
        let caddy = words(ctx.str("caddy").unwrap_or("caddy"));
        Ok(Some(Self {
            caddy: if caddy.is_empty() { vec!["caddy".into()] } else { caddy },
            admin: ctx.given("caddy-admin").unwrap_or(DEFAULT_ADMIN).to_owned(),
            config: ctx.required_path("site-conf")?,
            log: ctx.path("error-log"),
        }))
    }

    /// The configuration for `ngx`'s site (its root, listen, static files, TLS), through its link.
    pub async fn render(&self, ngx: &Nginx, host: &dyn zdd_engine::host::Host) -> Result<String, StepError> {
        let static_url =
            if ngx.static_url.ends_with('/') { ngx.static_url.clone() } else { format!("{}/", ngx.static_url) };
        let data = json!({
            "app": ngx.app,
            "admin": self.admin,
            "log_file": self.log.as_deref().map(path_text),
            "upstream": path_text(&ngx.current_link()),
            "listen": listen_address(match &ngx.tls { Some(t) => &t.listen, None => &ngx.listen }),
            "static_dir": ngx.static_dir.as_deref().map(path_text),
            "static_url": static_url,
            "static_prefix": static_url.trim_end_matches('/'),
            "tls": ngx.tls.as_ref().map(|t| json!({
                "cert": path_text(&t.cert),
                "key": path_text(&t.key),
                "plain": listen_address(&ngx.listen),
                "redirect_port": t.redirect_port(),
            })),
        });
        let template = templates::load(host, ngx.template.as_deref(), templates::CADDY_SITE).await?;
        let content = templates::render(&path_text(&self.config), &template, &data)?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&content) {
            return Err(StepError::fatal(format!(
                "the Caddy configuration rendered for {} is not JSON: {e}",
                self.config.display()
            )));
        }
        Ok(content)
    }

    /// `caddy reload --config <file> --address <admin>`: a `POST /load` of the file to the admin endpoint.
    pub fn reload_command(&self) -> Command {
        Command::new(self.caddy[0].clone()).args(self.caddy[1..].iter().cloned()).args([
            "reload".to_owned(),
            "--config".to_owned(),
            path_text(&self.config),
            "--address".to_owned(),
            self.admin.clone(),
        ])
    }

    /// Write the configuration and load it; when Caddy refuses it (it keeps running the one it had), put the
    /// previous file back and fail with what the admin API answered.
    pub async fn install(&self, ctx: &UndoCtx, content: &str, previous: Option<&str>) -> Result<(), StepError> {
        super::install_checked(ctx, &self.config, content, previous, &self.reload_command(), |message| {
            format!(
                "Caddy's admin API ({}) refused the new configuration (it keeps the one it runs; previous file \
                 restored): {message}",
                self.admin
            )
        })
        .await
    }

    /// Load the previous configuration again; with none (a first deploy), one that keeps only the admin
    /// endpoint: Caddy serves nothing, as before.
    pub async fn restore(&self, ctx: &UndoCtx, previous: Option<&str>) -> Result<(), StepError> {
        let empty = json!({ "admin": { "listen": self.admin } }).to_string();
        ctx.host.write_file(&self.config, previous.unwrap_or(&empty).as_bytes(), 0o644).await?;
        ctx.exec_ok(&self.reload_command()).await?;
        Ok(())
    }
}

/// Caddy's listen address for Nginx-style `listen` words: the first word, a bare port made `:<port>`.
fn listen_address(words: &str) -> String {
    let first = words.split_whitespace().next().unwrap_or("80");
    if first.chars().all(|c| c.is_ascii_digit()) { format!(":{first}") } else { first.to_owned() }
}

/// Refuse what only Nginx does on a `proxy "caddy"` switch: port mode, lanes, a maintenance page. (Nginx-only
/// fields the shared fragment always passes, `nginx`, `nginx-conf`, `pid-file`, `reload-command`,
/// `read-timeout`, are not used.)
pub fn check(step: &Step, diags: &mut Diagnostics) {
    if step.fields.str("proxy") != Some("caddy") {
        return;
    }
    let port_mode = matches!(step.fields.str("mode"), Some("port" | "reload"));
    let lanes = ["lane", "lanes"].into_iter().find(|f| !step.fields.all(f).is_empty());
    let given = |name: &str| step.fields.str(name).is_some_and(|v| !v.is_empty()) || step.fields.path(name).is_some();
    let problems = [
        port_mode.then_some(("mode", "Caddy switches by the socket link only: `mode \"port\"` reloads Nginx")),
        lanes.map(|f| (f, "lanes (rolling replacement) are Nginx's: Caddy's switch has one socket link")),
        given("maintenance-page").then_some(("maintenance-page", "maintenance mode is Nginx's: Caddy has none here")),
    ];
    // Caddy's log path lands in the JSON config it loads: refused here, not when the config is rendered.
    let log = step.fields.path("error-log").map(|p| p.to_string_lossy().into_owned());
    let bad_log = log.and_then(|p| zdd_engine::template::check_config_word(&p).err());
    let bad_log =
        bad_log.is_some().then_some(("error-log", "Caddy's log path goes into its config: it cannot hold this"));
    let problems = problems.into_iter().chain([bad_log]);
    for (field, message) in problems.into_iter().flatten() {
        let Some(value) = step.fields.all(field).first() else { continue };
        diags.push(
            Diagnostic::error(Code::ProxyCaddy, message).at(value.span, "not with `proxy \"caddy\"`").help(
                "remove it, or use `proxy \"nginx\"` (the default) for port mode, lanes, canaries and maintenance",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::nginx::{Mode, Tls};

    fn site() -> (Nginx, Caddy) {
        let ngx = Nginx {
            app: "shop".into(),
            root: PathBuf::from("/srv/shop"),
            mode: Mode::Socket,
            site_conf: PathBuf::from("/etc/caddy/zdd-shop.json"),
            nginx_conf: None,
            nginx: vec!["nginx".into()],
            pid_file: PathBuf::from("/run/nginx.pid"),
            reload: None,
            template: None,
            listen: "127.0.0.1:8080".into(),
            server_name: "_".into(),
            static_dir: Some(PathBuf::from("/srv/shop/shared/static")),
            static_url: "/static/".into(),
            lane: None,
            lanes: vec![],
            read_timeout: Duration::from_mins(1),
            tls: None,
            maintenance_retry_after: Duration::from_mins(1),
        };
        let caddy = Caddy {
            caddy: vec!["caddy".into()],
            admin: DEFAULT_ADMIN.into(),
            config: ngx.site_conf.clone(),
            log: Some(PathBuf::from("/var/log/caddy/shop.log")),
        };
        (ngx, caddy)
    }

    #[tokio::test]
    async fn renders_the_socket_site() {
        let (ngx, caddy) = site();
        let text = caddy.render(&ngx, &zdd_engine::host::LocalHost::new()).await.unwrap();
        insta::assert_snapshot!(text);
    }

    /// HTTPS on `tls-listen` with the plan's certificate; the plain listen only redirects, to the HTTPS port.
    #[tokio::test]
    async fn renders_the_tls_site() {
        let (mut ngx, mut caddy) = site();
        ngx.tls =
            Some(Tls { cert: "/etc/ssl/shop.pem".into(), key: "/etc/ssl/shop.key".into(), listen: "8443".into() });
        caddy.log = None;
        let text = caddy.render(&ngx, &zdd_engine::host::LocalHost::new()).await.unwrap();
        insta::assert_snapshot!(text);
    }

    fn refusals(fields: &[(&str, zdd_engine::plan::Value)]) -> Vec<String> {
        let mut all = vec![("proxy", zdd_engine::plan::Value::Str("caddy".into()))];
        all.extend(fields.iter().cloned());
        let mut diags = Diagnostics::new();
        check(&crate::testing::step("switch", "proxy-switch", &all), &mut diags);
        diags.iter().map(|d| format!("{}: {}", d.code, d.message)).collect()
    }

    /// Port mode, lanes and a maintenance page are Nginx's; the socket switch with its defaults is fine.
    #[test]
    fn nginx_only_settings_are_refused() {
        use zdd_engine::plan::Value;
        assert!(refusals(&[("mode", Value::Str("socket".into()))]).is_empty());
        assert_eq!(
            refusals(&[("mode", Value::Str("port".into()))]),
            ["zdd::proxy-caddy: Caddy switches by the socket link only: `mode \"port\"` reloads Nginx"]
        );
        assert_eq!(refusals(&[("lane", Value::Str("1".into()))]).len(), 1);
        assert_eq!(refusals(&[("maintenance-page", Value::Path("/srv/down.html".into()))]).len(), 1);
    }

    #[test]
    fn listen_words_become_caddy_addresses() {
        assert_eq!(listen_address("80"), ":80");
        assert_eq!(listen_address("127.0.0.1:8080 default_server"), "127.0.0.1:8080");
        assert_eq!(listen_address("[::]:443"), "[::]:443");
    }

    #[test]
    fn reload_posts_to_the_admin_endpoint() {
        let (_, mut caddy) = site();
        caddy.admin = "unix//run/caddy-admin.sock".into();
        assert_eq!(
            caddy.reload_command().display(),
            "caddy reload --config /etc/caddy/zdd-shop.json --address unix//run/caddy-admin.sock"
        );
    }
}
