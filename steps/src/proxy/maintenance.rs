//! Maintenance mode for the site a `proxy-switch` renders (`zdd maintenance on|off`, and the `maintenance`
//! kind).
//!
//! The built-in site tests, at every request, whether `<root>/maintenance/on` exists; while it does, every
//! request but zdd's own probes (`X-Zdd-Probe`) gets `<root>/maintenance/index.html` with 503 and `Retry-After`.
//! So turning maintenance on or off is writing or removing one file: Nginx is not reloaded, and no connection,
//! in flight or kept alive, is dropped. The probes pass by so that a deploy wrapped in maintenance can still
//! check its new instance through the proxy.
//!
//! Turning it on writes the page first and checks that Nginx's workers can read it (a page they cannot read
//! would turn maintenance into Nginx's own error page), then the flag; then, with the switch's `confirm` URL,
//! checks that visitors get the page. Turning it off removes the flag and checks that they get the app.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zdd_engine::diag::Code;
use zdd_engine::host::Host;
use zdd_engine::host::access::Need;
use zdd_engine::kind::{StepCtx, StepError};

use super::nginx::Nginx;
use super::{Settings, workers};
use crate::common::{Backoff, sleep};
use crate::probe::{self, ProbeUrl};

/// What the built-in site's maintenance block sets: a site file without it cannot serve the page.
pub const MARKER: &str = "$zdd_maintenance";

/// The page served when the plan names none.
pub const DEFAULT_PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>
<body>
<h1>Down for maintenance</h1>
<p>We are making a change that needs a short pause. Please try again in a few minutes.</p>
</body>
</html>
";

/// `<root>/maintenance`: the page and the flag.
pub fn dir(root: &Path) -> PathBuf {
    root.join("maintenance")
}

/// The file whose existence turns maintenance on.
pub fn flag(root: &Path) -> PathBuf {
    dir(root).join("on")
}

/// The page Nginx serves while the flag exists.
pub fn page(root: &Path) -> PathBuf {
    dir(root).join("index.html")
}

/// Was maintenance on before? (What the `maintenance` kind's undo restores.)
pub async fn is_on(host: &dyn Host, ngx: &Nginx) -> Result<bool, StepError> {
    Ok(host.exists(&flag(&ngx.root)).await?)
}

/// Turn maintenance on or off for `s`'s site, then check what visitors get.
pub async fn switch(s: &Settings, ctx: &StepCtx, on: bool) -> Result<(), StepError> {
    let ngx = &s.nginx;
    let host = ctx.host.as_ref();
    if on {
        let page_content = match &s.maintenance_page {
            Some(file) => tokio::fs::read(file)
                .await
                .map_err(|e| StepError::fatal(format!("cannot read the maintenance page {}: {e}", file.display())))?,
            None => DEFAULT_PAGE.as_bytes().to_vec(),
        };
        turn_on(ngx, host, &page_content).await?;
    } else {
        host.remove_all(&flag(&ngx.root)).await?;
    }
    let seen = confirm(s, ctx, on).await?;
    let state = if on { "on" } else { "off" };
    ctx.message(match seen {
        Some(seen) => format!("maintenance {state}: {seen}"),
        None => {
            format!("maintenance {state}: {} {}", flag(&ngx.root).display(), if on { "written" } else { "removed" })
        }
    });
    Ok(())
}

/// The site must have the maintenance block; the page goes first, readable by the workers, then the flag.
pub async fn turn_on(ngx: &Nginx, host: &dyn Host, page_content: &[u8]) -> Result<(), StepError> {
    let site = host.read_file(&ngx.site_conf).await?;
    let site = site.map(|b| String::from_utf8_lossy(&b).into_owned());
    if !site.as_deref().is_some_and(|s| s.contains(MARKER)) {
        let why = match site {
            None => "does not exist: nothing is deployed yet".to_owned(),
            Some(_) => "has no maintenance block: an older zdd or a template of your own wrote it".to_owned(),
        };
        return Err(StepError::fatal(format!(
            "cannot serve the maintenance page: the site file {} {why} [{}]",
            ngx.site_conf.display(),
            Code::MaintenanceUnavailable
        ))
        .with_detail(
            "help: deploy once with this zdd (its site has the block), or copy the `$zdd_maintenance` lines and the \
             `@zdd_maintenance` location of the built-in template (templates/nginx-site.conf.hbs) into yours",
        ));
    }
    host.create_dir_all(&dir(&ngx.root)).await?;
    host.write_file(&page(&ngx.root), page_content, 0o644).await?;
    // Nginx's workers test the flag and read the page as their own user: a directory they cannot enter would
    // make the flag invisible to them, and maintenance would silently stay off.
    if let Ok(w) = workers::workers(ngx, host, None).await
        && let Some(f) = workers::check(host, &w, &page(&ngx.root), Need::Read, "the maintenance page").await
    {
        let detail = f.evidence.iter().map(String::as_str).chain([f.help.as_str()]).collect::<Vec<_>>();
        return Err(StepError::fatal(format!("{} [{}]", f.message, Code::MaintenanceUnavailable))
            .with_detail(detail.join("\n")));
    }
    host.write_file(&flag(&ngx.root), b"on\n", 0o644).await?;
    Ok(())
}

/// With a `confirm` URL: visitors (no probe header) get 503 with `Retry-After` (on) or the confirmation's
/// status (off), within `confirm-within`. Returns what was seen, or `None` without a URL.
async fn confirm(s: &Settings, ctx: &StepCtx, on: bool) -> Result<Option<String>, StepError> {
    let Some(c) = &s.confirm else {
        return Ok(None);
    };
    let url = ProbeUrl::parse(&c.url).map_err(StepError::fatal)?;
    let trust = s.nginx.tls.as_ref().map(|t| t.cert.as_path());
    let client = probe::client_trusting(ctx.host.as_ref(), &url, Duration::from_secs(2), trust).await?;
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        let last = match probe::get_as_visitor(&client, &url, c.host.as_deref()).await {
            Ok(a) if on && a.status == 503 && a.headers.contains_key("retry-after") => {
                let retry = a.headers.get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or_default();
                return Ok(Some(format!("GET {} answers 503 with the page (Retry-After: {retry})", url.url)));
            }
            Ok(a) if !on && a.status == c.status => {
                return Ok(Some(format!("GET {} answers {} from the app", url.url, a.status)));
            }
            Ok(a) => format!("status {}: {}", a.status, a.body.chars().take(200).collect::<String>()),
            Err(e) => e,
        };
        if start.elapsed() >= c.within {
            let expected = if on { "503 with Retry-After".to_owned() } else { c.status.to_string() };
            return Err(StepError::failed(format!(
                "maintenance {}: {} does not answer {expected} [{}]",
                if on { "on" } else { "off" },
                url.url,
                Code::MaintenanceUnavailable
            ))
            .with_detail(ctx.redactor.redact(&last)));
        }
        sleep(&ctx.cancel, backoff.next_delay()).await?;
    }
}
