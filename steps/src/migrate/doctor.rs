//! What `zdd doctor` asks of a `migrate` step beyond its preflight: the Django that is installed and the database
//! server it migrates, asked through the **live** release (the new one does not exist before a run). A database
//! the live release cannot reach, or one this Django does not support, would fail the next `migrate`, so it is a
//! problem; with nothing live there is nothing to ask yet.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::doctor::Check;
use zdd_engine::preflight::PreflightCtx;
use zdd_engine::redact::Redactor;

use super::Settings;
use crate::common::tail;
use crate::envfile;
use crate::manage::Manage;

/// A connection that does not answer in this long counts as unreachable (doctor must not hang on a firewall).
const ASK_WITHIN: Duration = Duration::from_secs(20);

/// Sets Django up, connects to the alias given as `argv[1]` and prints one JSON object: Django's version, the
/// backend's vendor and the server's version as the backend reports it.
const SCRIPT: &str = r#"
import json, sys
import django
django.setup()
from django.db import connections
c = connections[sys.argv[1]]
c.ensure_connection()
server = ""
if c.vendor == "postgresql":
    v = c.pg_version
    server = "%d.%d" % (v // 10000, v % 10000) if v >= 100000 else "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100)
elif c.vendor == "sqlite":
    server = c.Database.sqlite_version
elif c.vendor == "mysql":
    server = ".".join(str(p) for p in c.mysql_version)
print(json.dumps({"django": django.get_version(), "vendor": c.display_name, "server": server}))
"#;

#[derive(serde::Deserialize)]
struct Answer {
    django: String,
    vendor: String,
    server: String,
}

/// The `versions` line for the database, or a problem when the live release cannot reach it.
pub(super) async fn database_version(s: &Settings, ctx: &PreflightCtx) -> Check {
    let target = &ctx.preview.target;
    let Some(live) = target.live_release.as_deref() else {
        return Check::ok("versions", "nothing is live yet: Django and the database are asked after the first deploy");
    };
    let host = ctx.preview.host.as_ref();
    let redactor = Redactor::new();
    let mut m = Manage::for_release(&s.manage, live);
    if let Some(file) = &m.env_file {
        match envfile::load(host, file, Some(&redactor)).await {
            Ok(env) => m.env = env,
            // The preflight's own line says what is wrong with the env file.
            Err(_) => return Check::ok("versions", "the database is not asked: the env file cannot be read"),
        }
    }
    let cancel = CancellationToken::new();
    let cmd = m.python_script(SCRIPT).arg(s.alias.clone());
    let unreachable = |detail: String| {
        Check::problem(
            Code::DoctorDatabase,
            "database",
            redactor.redact(&format!("the live release {live} cannot reach database `{}`: {detail}", s.alias)),
            "start the database, or fix DATABASES (or the env file that sets it): the next `migrate` would fail",
        )
    };
    let run = host.run(&cmd, &cancel, None);
    tokio::pin!(run);
    let asked = tokio::select! {
        asked = &mut run => asked,
        () = tokio::time::sleep(ASK_WITHIN) => {
            // Cancelled, never dropped: the host signals the process group and reaps it before `run` returns.
            cancel.cancel();
            let _ = run.await;
            return unreachable(format!("no answer within {} s", ASK_WITHIN.as_secs()));
        }
    };
    let out = match asked {
        Ok(out) => out,
        Err(e) => return unreachable(e.to_string()),
    };
    if !out.success() {
        let stderr = out.stderr_str();
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
        let detail = if last.is_empty() { tail(&out.stdout_str(), 3) } else { last };
        return unreachable(detail);
    }
    match out.stdout_str().lines().rev().find_map(|l| serde_json::from_str::<Answer>(l).ok()) {
        Some(a) => {
            let server = if a.server.is_empty() { a.vendor } else { format!("{} {}", a.vendor, a.server) };
            Check::ok(
                "versions",
                format!(
                    "Django {}, database `{}`: {server} (asked through the live release {live})",
                    a.django, s.alias
                ),
            )
        }
        None => unreachable(format!("an answer zdd cannot read: {}", tail(&out.stdout_str(), 3))),
    }
}
