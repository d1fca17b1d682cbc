//! The proxy's log as evidence (Nginx's error log, or the file Caddy's config logs to): where it ended when a
//! check started, and what the proxy appended while the check ran, for the detail of a failed proxy
//! confirmation or smoke check (the `connect() ... failed` behind a 502).

use std::path::{Path, PathBuf};

use zdd_engine::kind::StepCtx;

/// Nginx's error log from a point on: what it wrote while a check ran (the `connect() ... failed (13:
/// Permission denied)` behind a 502).
pub struct ErrorLog {
    path: PathBuf,
    from: usize,
    /// What the log is, for the reader (`Nginx's error log`, `Caddy's log`).
    name: &'static str,
}

impl ErrorLog {
    /// Start watching the step's `error-log`, if it has one.
    pub async fn open(path: Option<&Path>, name: &'static str, ctx: &StepCtx) -> Option<Self> {
        let path = path?.to_path_buf();
        let from = ctx.host.read_file(&path).await.ok().flatten().map_or(0, |b| b.len());
        Some(Self { path, from, name })
    }

    /// The last lines appended since [`ErrorLog::open`], as a block for a failure's detail.
    pub async fn written_since(&self, ctx: &StepCtx) -> String {
        let text = match ctx.host.read_file(&self.path).await {
            // A log rotated meanwhile is shorter than where reading started: all of it is new.
            Ok(Some(b)) => String::from_utf8_lossy(b.get(self.from..).unwrap_or(&b)).into_owned(),
            Ok(None) => return format!("\n{} does not exist", self.path.display()),
            Err(e) => return format!("\ncould not read {}: {e}", self.path.display()),
        };
        if text.trim().is_empty() {
            return format!("\nnothing was written to {} meanwhile", self.path.display());
        }
        let lines = text.lines().count();
        let shown = zdd_engine::kind::tail_lines(&text, 10);
        let note = if lines > 10 { format!(" (last 10 of {lines})") } else { String::new() };
        format!("\n{} ({}) meanwhile{note}:\n{shown}", self.name, self.path.display())
    }
}
