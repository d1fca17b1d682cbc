//! Nginx as the proxy: the site file rendered from `templates/nginx-site.conf.hbs`, config tests, reloads, and the
//! worker processes alive before a reload (which `drain-stop` waits for in port mode). With `lanes` (rolling
//! replacement) the upstream has one server per lane, each through the lane's own link `current-<lane>.sock`.
//! With [`Tls`] the site serves HTTPS and its plain listen only redirects to it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use zdd_engine::diag::Diagnostics;
use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};
use zdd_engine::settings::SettingsCtx;

use crate::common::{path_text, quiet, words};
use crate::{origin, templates};

/// How the site's upstream follows the new instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// `unix:<root>/run/current.sock`, a symlink swapped to the new slot's socket: no reload.
    Socket,
    /// `127.0.0.1:<port>` rewritten, tested and reloaded.
    Reload,
}

/// A proxy-switch step's settings, paths absolute; recorded in its undo facts, which its undo acts on alone.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Nginx {
    pub app: String,
    pub root: PathBuf,
    pub mode: Mode,
    pub site_conf: PathBuf,
    pub nginx_conf: Option<PathBuf>,
    pub nginx: Vec<String>,
    pub pid_file: PathBuf,
    /// A reload command of the plan's own (`systemctl reload nginx`), as words; default `nginx [-c conf] -s reload`.
    pub reload: Option<Vec<String>>,
    pub template: Option<PathBuf>,
    pub listen: String,
    pub server_name: String,
    pub static_dir: Option<PathBuf>,
    pub static_url: String,
    /// Socket mode with several instances (rolling replacement): the lane this switch moves...
    pub lane: Option<String>,
    /// ...and every lane, each a server of the upstream through its own link.
    pub lanes: Vec<String>,
    /// `proxy_read_timeout` and `proxy_send_timeout`: how long a response, or a WebSocket, may be silent.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// HTTPS at the edge: `listen` then only redirects to it. Absent in undo facts written before TLS existed.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The maintenance page's `Retry-After` (the site's maintenance block: [`super::maintenance`]).
    #[serde(default = "default_retry_after")]
    pub maintenance_retry_after: Duration,
}

/// The site's HTTPS server: the certificate and key Nginx's master loads (as root, at start and at every
/// reload) and the listen it serves them on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The HTTPS server's `listen` words, without `ssl` (the template adds it).
    pub listen: String,
}

impl Tls {
    /// What follows `$host` in the redirect to HTTPS: nothing for 443, `:<port>` for another port, so the
    /// redirect lands where the HTTPS server listens. `$host` never carries the port the client asked for.
    pub fn redirect_port(&self) -> String {
        let first = self.listen.split_whitespace().next().unwrap_or_default();
        // `443`, `127.0.0.1:8443`, `[::]:443`: the port is after the last colon, or the whole word.
        let port = first.rsplit(':').next().unwrap_or_default();
        match port.parse::<u16>() {
            Ok(443) | Err(_) => String::new(),
            Ok(port) => format!(":{port}"),
        }
    }
}

/// The `read-timeout` default (Nginx's own).
fn default_read_timeout() -> Duration {
    Duration::from_mins(1)
}

/// The `maintenance-retry-after` default.
fn default_retry_after() -> Duration {
    Duration::from_mins(1)
}

impl Nginx {
    /// From a proxy-switch step's fields, at validation.
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Self, Diagnostics> {
        let nginx = words(ctx.str("nginx").unwrap_or("nginx"));
        Ok(Self {
            app: ctx.required("app")?.to_owned(),
            root: ctx.required_path("root")?,
            mode: if matches!(ctx.str("mode"), Some("reload" | "port")) { Mode::Reload } else { Mode::Socket },
            site_conf: ctx.required_path("site-conf")?,
            nginx_conf: ctx.path("nginx-conf"),
            nginx: if nginx.is_empty() { vec!["nginx".into()] } else { nginx },
            pid_file: ctx.path("pid-file").unwrap_or_else(|| PathBuf::from("/run/nginx.pid")),
            reload: ctx.given("reload-command").map(words).filter(|w| !w.is_empty()),
            template: ctx.path("template"),
            listen: ctx.str("listen").unwrap_or("80").to_owned(),
            server_name: ctx.str("server-name").unwrap_or("_").to_owned(),
            static_dir: ctx.path("static-dir"),
            static_url: ctx.given("static-url").unwrap_or("/static/").to_owned(),
            lane: ctx.given("lane").map(str::to_owned),
            lanes: super::lane_list(&ctx.strings("lanes")),
            read_timeout: ctx.duration("read-timeout", default_read_timeout()),
            // Validation reported a certificate without its key (or the reverse): both, or no TLS.
            tls: match (ctx.path("tls-cert"), ctx.path("tls-key")) {
                (Some(cert), Some(key)) => {
                    Some(Tls { cert, key, listen: ctx.given("tls-listen").unwrap_or("443").to_owned() })
                }
                _ => None,
            },
            maintenance_retry_after: ctx.duration("maintenance-retry-after", default_retry_after()),
        })
    }

    /// The symlink Nginx's upstream points through, in socket mode (this lane's, with lanes).
    pub fn current_link(&self) -> PathBuf {
        self.lane_link(self.lane.as_deref())
    }

    /// `current.sock`, or a lane's `current-<lane>.sock`.
    fn lane_link(&self, lane: Option<&str>) -> PathBuf {
        let name = lane.map_or_else(|| "current.sock".to_owned(), |l| format!("current-{l}.sock"));
        self.root.join("run").join(name)
    }

    /// The socket of the new instance in `slot` (of this lane: `<lane>-<slot>.sock`, as the service names it).
    pub fn slot_socket(&self, slot: &str) -> PathBuf {
        let name = match &self.lane {
            Some(lane) => format!("{lane}-{slot}.sock"),
            None => format!("{slot}.sock"),
        };
        self.root.join("run").join(name)
    }

    /// The upstream's servers: the one socket link, every lane's link, or the new port.
    fn servers(&self, slot: &str) -> Result<Vec<String>, StepError> {
        Ok(match self.mode {
            Mode::Socket if self.lanes.is_empty() => vec![format!("unix:{}", path_text(&self.current_link()))],
            Mode::Socket => {
                self.lanes.iter().map(|l| format!("unix:{}", path_text(&self.lane_link(Some(l))))).collect()
            }
            Mode::Reload => {
                let port: u16 = slot.parse().map_err(|_| {
                    StepError::fatal(format!("slot `{slot}` is not a port: in reload mode the plan's slots are ports"))
                })?;
                vec![format!("127.0.0.1:{port}")]
            }
        })
    }

    /// The upstream address that names the new instance in `slot` in its answers' `X-Zdd-Upstream` (port mode:
    /// `127.0.0.1:<port>`). `None` in socket mode: the upstream is the link, whichever instance is behind it.
    pub fn origin(&self, slot: &str) -> Result<Option<String>, StepError> {
        Ok(match self.mode {
            Mode::Socket => None,
            Mode::Reload => self.servers(slot)?.into_iter().next(),
        })
    }

    /// Can the site carry a canary (see [`crate::canary`])? Socket mode with one link: the canary's share goes to
    /// the new instance's own socket, the rest through the link.
    pub fn takes_canaries(&self) -> bool {
        self.mode == Mode::Socket && self.lanes.is_empty()
    }

    /// Where the canary's flags live: `on`, `sticky`, and `split/<bucket>` for each bucket sent to the canary.
    pub fn canary_dir(&self) -> PathBuf {
        self.root.join("run").join("canary")
    }

    /// The link to the new instance's socket that the canary's upstream names.
    pub fn canary_link(&self) -> PathBuf {
        self.root.join("run").join("canary.sock")
    }

    /// The access log of the canary's requests, by side.
    pub fn canary_log(&self) -> PathBuf {
        self.root.join("run").join("canary.log")
    }

    /// The app's name as the suffix of the site's canary variables (Nginx variable names are letters, digits and
    /// `_`; an app name may hold `-` and `.`).
    fn canary_id(&self) -> String {
        self.app.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
    }

    /// Does this site file carry the canary's split (a site zdd rendered before canaries existed does not)?
    pub fn site_takes_canaries(content: &str) -> bool {
        content.contains("$zdd_canary_side_")
    }

    /// The file `drain-stop` reads: pids of the workers that existed before the last reload.
    pub fn old_workers_file(&self) -> PathBuf {
        self.root.join("run").join("nginx-workers-before-reload")
    }

    /// The site file's content for a deploy into `slot`.
    pub async fn render_site(&self, ctx_host: &dyn zdd_engine::host::Host, slot: &str) -> Result<String, StepError> {
        let servers = self.servers(slot)?;
        let static_url =
            if self.static_url.ends_with('/') { self.static_url.clone() } else { format!("{}/", self.static_url) };
        let data = json!({
            "app": self.app,
            // `upstream` is the first server: what site templates written before lanes existed use.
            "upstream": servers.first(),
            "servers": servers,
            "lanes": !self.lanes.is_empty(),
            "socket": self.mode == Mode::Socket,
            "listen": self.listen,
            "server_name": self.server_name,
            "static_dir": self.static_dir.as_deref().map(path_text),
            "static_url": static_url,
            "root": path_text(&self.root),
            "read_timeout": format!("{}s", self.read_timeout.as_secs().max(1)),
            "tls": self.tls.as_ref().map(|t| json!({
                "cert": path_text(&t.cert),
                "key": path_text(&t.key),
                "listen": t.listen,
                "redirect_port": t.redirect_port(),
            })),
            "canary": self.takes_canaries().then(|| json!({
                "id": self.canary_id(),
                "dir": path_text(&self.canary_dir()),
                "link": path_text(&self.canary_link()),
                "log": path_text(&self.canary_log()),
                // 0-8 at 10% each, then `*` (the rest) is 9: a hash at the very top of the range gets a digit too.
                "digits": (0..9).collect::<Vec<u8>>(),
            })),
            "maintenance": {
                "dir": path_text(&super::maintenance::dir(&self.root)),
                "flag": path_text(&super::maintenance::flag(&self.root)),
                "retry_after": self.maintenance_retry_after.as_secs().max(1),
            },
        });
        let template = templates::load(ctx_host, self.template.as_deref(), templates::NGINX_SITE).await?;
        let content = templates::render(&path_text(&self.site_conf), &template, &data)?;
        if self.mode == Mode::Reload
            && !content.to_ascii_lowercase().contains(&origin::UPSTREAM_HEADER.to_ascii_lowercase())
        {
            return Err(StepError::fatal(format!(
                "the site template does not add the {} header: in port mode the checks after the switch count only \
                 the answers that name the new instance (Nginx workers from before the reload still answer from the \
                 old one); copy the `map $http_x_zdd_probe ...` block and the `add_header` line of the built-in \
                 template (templates/nginx-site.conf.hbs) into yours",
                origin::UPSTREAM_HEADER
            )));
        }
        Ok(content)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(self.nginx[0].clone()).args(self.nginx[1..].iter().cloned());
        if let Some(conf) = &self.nginx_conf {
            cmd = cmd.arg("-c").arg(path_text(conf));
        }
        cmd.args(extra.iter().copied())
    }

    pub fn test_command(&self) -> Command {
        self.command(&["-t", "-q"])
    }

    pub fn reload_command(&self) -> Command {
        match &self.reload {
            Some(words) => Command::new(words[0].clone()).args(words[1..].iter().cloned()),
            None => self.command(&["-s", "reload"]),
        }
    }

    /// Write the site file, test the whole configuration, restore the previous file if the test fails, reload.
    pub async fn install_site(&self, ctx: &UndoCtx, content: &str, previous: Option<&str>) -> Result<(), StepError> {
        super::install_checked(ctx, &self.site_conf, content, previous, &self.test_command(), |message| {
            format!("nginx rejected the new site file (previous file restored): {message}")
        })
        .await?;
        self.record_workers(ctx).await?;
        ctx.exec_ok(&self.reload_command()).await?;
        Ok(())
    }

    /// Put the previous site file back (or remove it), test and reload.
    pub async fn restore_site(&self, ctx: &UndoCtx, previous: Option<&str>) -> Result<(), StepError> {
        match previous {
            Some(old) => ctx.host.write_file(&self.site_conf, old.as_bytes(), 0o644).await?,
            None => ctx.host.remove_all(&self.site_conf).await?,
        }
        ctx.exec_ok(&self.test_command()).await?;
        self.record_workers(ctx).await?;
        ctx.exec_ok(&self.reload_command()).await?;
        Ok(())
    }

    /// After a reload: wait until none of the workers from before it still takes new requests (each has gone, or
    /// says it is shutting down), at most `timeout`; `Ok(false)` if one still does. Nginx's reload only signals
    /// the master, which starts new workers and then tells the old ones to stop: until then they still proxy
    /// new requests by the old site.
    pub async fn wait_old_workers_retired(&self, ctx: &UndoCtx, timeout: Duration) -> Result<bool, StepError> {
        let Some(bytes) = ctx.host.read_file(&self.old_workers_file()).await? else {
            return Ok(true);
        };
        let pids: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let start = std::time::Instant::now();
        let mut backoff = crate::common::Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
        for pid in pids {
            loop {
                let args = quiet(ctx, &Command::new("ps").args(["-o", "args=", "-p", &pid])).await?;
                let args = args.stdout_str();
                // Gone, or a pid reused by something else, or retiring.
                if !args.contains("nginx: worker") || args.contains("shutting down") {
                    break;
                }
                if start.elapsed() >= timeout {
                    return Ok(false);
                }
                crate::common::sleep(&ctx.cancel, backoff.next_delay()).await?;
            }
        }
        Ok(true)
    }

    /// Remember the worker pids alive now, before a reload replaces them.
    async fn record_workers(&self, ctx: &UndoCtx) -> Result<(), StepError> {
        let pids = self.worker_pids(ctx).await?;
        let text = pids.iter().map(|p| format!("{p}\n")).collect::<Vec<_>>().concat();
        ctx.host.create_dir_all(&self.root.join("run")).await?;
        ctx.host.write_file(&self.old_workers_file(), text.as_bytes(), 0o644).await?;
        Ok(())
    }

    async fn worker_pids(&self, ctx: &UndoCtx) -> Result<Vec<u32>, StepError> {
        let Some(bytes) = ctx.host.read_file(&self.pid_file).await? else {
            return Ok(vec![]);
        };
        let master = String::from_utf8_lossy(&bytes).trim().to_owned();
        if master.is_empty() {
            return Ok(vec![]);
        }
        let out = quiet(ctx, &Command::new("pgrep").arg("-P").arg(master)).await?;
        Ok(out.stdout_str().lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx(mode: Mode) -> Nginx {
        Nginx {
            app: "shop".into(),
            root: PathBuf::from("/srv/shop"),
            mode,
            site_conf: PathBuf::from("/etc/nginx/sites-enabled/shop.conf"),
            nginx_conf: Some(PathBuf::from("/etc/nginx/nginx.conf")),
            nginx: vec!["nginx".into()],
            pid_file: PathBuf::from("/run/nginx.pid"),
            reload: None,
            template: None,
            listen: "80".into(),
            server_name: "shop.example.com".into(),
            static_dir: Some(PathBuf::from("/srv/shop/shared/static")),
            static_url: "/static/".into(),
            lane: None,
            lanes: vec![],
            read_timeout: Duration::from_mins(1),
            tls: None,
            maintenance_retry_after: Duration::from_mins(1),
        }
    }

    fn tls(listen: &str) -> Tls {
        Tls { cert: "/etc/ssl/shop.pem".into(), key: "/etc/ssl/private/shop.key".into(), listen: listen.into() }
    }

    /// HTTPS on 443 with WebSockets and the static files on it; the plain listen only redirects.
    #[tokio::test]
    async fn renders_the_tls_site() {
        let mut ngx = nginx(Mode::Socket);
        ngx.tls = Some(tls("443"));
        let text = ngx.render_site(&zdd_engine::host::LocalHost::new(), "b").await.unwrap();
        insta::assert_snapshot!(text);
    }

    /// Lanes and port mode keep their upstream and the probe header on the HTTPS server.
    #[tokio::test]
    async fn renders_tls_with_lanes_and_in_port_mode() {
        let host = zdd_engine::host::LocalHost::new();
        let mut ngx = nginx(Mode::Socket);
        ngx.lanes = vec!["1".into(), "2".into()];
        ngx.lane = Some("1".into());
        ngx.tls = Some(tls("127.0.0.1:8443"));
        let text = ngx.render_site(&host, "b").await.unwrap();
        assert!(text.contains("server unix:/srv/shop/run/current-2.sock max_fails=0;"), "{text}");
        assert!(text.contains("listen 127.0.0.1:8443 ssl;"), "{text}");
        assert!(text.contains("return 301 https://$host:8443$request_uri;"), "{text}");
        let mut ngx = nginx(Mode::Reload);
        ngx.tls = Some(tls("443"));
        let text = ngx.render_site(&host, "8002").await.unwrap();
        let https = &text[text.find("ssl;").unwrap()..];
        assert!(https.contains("add_header X-Zdd-Upstream $zdd_probe_upstream always;"), "{text}");
    }

    #[test]
    fn the_redirect_names_the_https_port_unless_it_is_443() {
        assert_eq!(tls("443").redirect_port(), "");
        assert_eq!(tls("[::]:443 default_server").redirect_port(), "");
        assert_eq!(tls("8443").redirect_port(), ":8443");
        assert_eq!(tls("127.0.0.1:8443").redirect_port(), ":8443");
        assert_eq!(tls("unix:/run/https.sock").redirect_port(), "");
    }

    #[tokio::test]
    async fn renders_the_socket_site() {
        let text = nginx(Mode::Socket).render_site(&zdd_engine::host::LocalHost::new(), "b").await.unwrap();
        insta::assert_snapshot!(text);
    }

    /// The socket site carries the canary's split, off until the canary's flag files exist; with lanes (or in
    /// port mode) there is none.
    #[tokio::test]
    async fn the_socket_site_carries_a_canary_split_that_files_turn_on() {
        let host = zdd_engine::host::LocalHost::new();
        let mut ngx = nginx(Mode::Socket);
        ngx.app = "shop-eu.1".into();
        let text = ngx.render_site(&host, "b").await.unwrap();
        assert!(Nginx::site_takes_canaries(&text), "{text}");
        assert!(text.contains("proxy_pass http://$zdd_canary_upstream_shop_eu_1;"), "{text}");
        assert!(
            text.contains("if (-f /srv/shop/run/canary/split/$zdd_canary_tens_shop_eu_1$zdd_canary_units_shop_eu_1)")
        );
        assert!(text.contains("server unix:/srv/shop/run/canary.sock;"), "{text}");
        ngx.lanes = vec!["1".into()];
        ngx.lane = Some("1".into());
        assert!(!Nginx::site_takes_canaries(&ngx.render_site(&host, "b").await.unwrap()));
        assert!(!Nginx::site_takes_canaries(&nginx(Mode::Reload).render_site(&host, "8002").await.unwrap()));
    }

    #[tokio::test]
    async fn renders_a_server_per_lane() {
        let mut ngx = nginx(Mode::Socket);
        ngx.lanes = vec!["1".into(), "2".into(), "3".into()];
        ngx.lane = Some("2".into());
        assert_eq!(ngx.current_link(), PathBuf::from("/srv/shop/run/current-2.sock"));
        assert_eq!(ngx.slot_socket("b"), PathBuf::from("/srv/shop/run/2-b.sock"));
        let text = ngx.render_site(&zdd_engine::host::LocalHost::new(), "b").await.unwrap();
        insta::assert_snapshot!(text);
    }

    #[tokio::test]
    async fn renders_the_port_site() {
        let text = nginx(Mode::Reload).render_site(&zdd_engine::host::LocalHost::new(), "8002").await.unwrap();
        insta::assert_snapshot!(text);
    }

    #[tokio::test]
    async fn port_mode_needs_port_slots() {
        let err = nginx(Mode::Reload).render_site(&zdd_engine::host::LocalHost::new(), "blue").await.unwrap_err();
        assert!(format!("{err:?}").contains("not a port"));
    }

    #[test]
    fn the_new_instance_is_named_by_its_port_in_port_mode_only() {
        assert_eq!(nginx(Mode::Reload).origin("8002").unwrap().as_deref(), Some("127.0.0.1:8002"));
        assert_eq!(nginx(Mode::Socket).origin("b").unwrap(), None);
    }

    /// The checks after a port switch count only answers naming the new instance: a site without the header
    /// could never be confirmed, so it is refused before anything is written.
    #[tokio::test]
    async fn a_port_site_of_your_own_must_name_the_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("site.conf.hbs");
        std::fs::write(&template, "upstream {{app}}_app { server {{upstream}}; }\n").unwrap();
        let mut ngx = nginx(Mode::Reload);
        ngx.template = Some(template.clone());
        let host = zdd_engine::host::LocalHost::new();
        let err = ngx.render_site(&host, "8002").await.unwrap_err();
        assert!(err.to_string().contains("does not add the X-Zdd-Upstream header"), "{err}");
        std::fs::write(&template, "upstream {{app}}_app { server {{upstream}}; }\nadd_header x-zdd-upstream $u;\n")
            .unwrap();
        ngx.render_site(&host, "8002").await.unwrap();
        // Socket mode: the answers cannot tell the instances apart, and need not.
        std::fs::write(&template, "upstream {{app}}_app { server {{upstream}}; }\n").unwrap();
        ngx.mode = Mode::Socket;
        ngx.render_site(&host, "b").await.unwrap();
    }

    #[test]
    fn commands_use_the_private_config() {
        let n = nginx(Mode::Socket);
        assert_eq!(n.test_command().display(), "nginx -c /etc/nginx/nginx.conf -t -q");
        assert_eq!(n.reload_command().display(), "nginx -c /etc/nginx/nginx.conf -s reload");
    }
}
