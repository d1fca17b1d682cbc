//! `zdd doctor` checks several kinds share, beyond their preflights: a program's version, a directory zdd must
//! be able to write into (or create), and the size of a release's source. Each reads only.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::doctor::Check;
use zdd_engine::host::{Command, Host};

/// The first line `program --version` (or `-v`, as `flag` says) prints, on stdout or stderr, as an ok check;
/// nothing when it cannot be run (the preflight reports a missing program). `command` is the program's words as
/// the plan gives them (`nginx -p /srv/shop/nginx`).
pub async fn version(host: &dyn Host, command: &[String], flag: &str) -> Option<Check> {
    let (program, words) = command.split_first()?;
    let cmd = Command::new(program.clone()).args(words.iter().cloned()).arg(flag);
    let out = host.run(&cmd, &CancellationToken::new(), None).await.ok()?;
    if !out.success() {
        return None;
    }
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(Check::ok("versions", line.to_owned()))
}

/// Can zdd's user write into `dir`, or create it (its nearest existing ancestor is a directory it may write
/// into)? `what` names it in the detail (`the unit directory`); `field` is the plan field that sets it.
pub async fn writable_dir(host: &dyn Host, dir: &Path, what: &str, field: &str) -> Check {
    let problem = |detail: String| {
        Check::problem(
            Code::DoctorUnwritable,
            "permissions",
            detail,
            format!("run zdd as a user who may write there (root for /etc/systemd/system), or set `{field}`"),
        )
    };
    let mut at: Option<PathBuf> = Some(dir.to_path_buf());
    // Under a file, `stat` fails (ENOTDIR): the file above says why, so the walk goes on up.
    let mut failed: Option<zdd_engine::host::HostError> = None;
    while let Some(path) = at {
        match host.stat(&path).await {
            Ok(Some(st)) if st.is_dir && failed.is_some() => {
                let e = failed.take().map(|e| e.to_string()).unwrap_or_default();
                return problem(format!("{what} {}: {e}", dir.display()));
            }
            Ok(Some(st)) if st.is_dir => {
                let probe = Command::new("sh").args(["-c", "test -w \"$1\"", "sh"]).arg(path.display().to_string());
                let writable = host.run(&probe, &CancellationToken::new(), None).await.is_ok_and(|o| o.success());
                return match (writable, path == dir) {
                    (true, true) => Check::ok("permissions", format!("{what} {} is writable", dir.display())),
                    (true, false) => Check::ok(
                        "permissions",
                        format!("{what} {} can be created (in {})", dir.display(), path.display()),
                    ),
                    (false, _) => problem(format!("{what} {}: {} is not writable", dir.display(), path.display())),
                };
            }
            Ok(Some(_)) if path == dir => {
                return problem(format!("{what} {} is not a directory", dir.display()));
            }
            Ok(Some(_)) => {
                return problem(format!(
                    "{what} {} cannot be created: {} is not a directory",
                    dir.display(),
                    path.display()
                ));
            }
            Ok(None) => at = path.parent().map(Path::to_path_buf),
            Err(e) => {
                failed.get_or_insert(e);
                at = path.parent().map(Path::to_path_buf);
            }
        }
    }
    problem(format!("{what} {}: no part of the path exists", dir.display()))
}

/// Does a TCP socket on the host listen on `port` (any address)? From `/proc/net/tcp` and `tcp6`, read as
/// files (through SSH too); `None` when neither can be read (not Linux).
pub async fn port_listening(host: &dyn Host, port: u16) -> Option<bool> {
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(Some(bytes)) = host.read_file(Path::new(table)).await else { continue };
        readable = true;
        if listens(&String::from_utf8_lossy(&bytes), port) {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// A row of `/proc/net/tcp` in state `0A` (LISTEN) whose local address ends in `:<port in hex>`.
fn listens(table: &str, port: u16) -> bool {
    let hex = format!("{port:04X}");
    table.lines().skip(1).any(|row| {
        let mut cols = row.split_whitespace();
        let local = cols.nth(1).unwrap_or_default();
        let state = cols.nth(1).unwrap_or_default();
        state == "0A" && local.rsplit(':').next() == Some(hex.as_str())
    })
}

/// The bytes of the files under `dir` on this machine, `.git` left out (a release copies the files, not the
/// repository); what cannot be read counts nothing.
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(entry.path());
                }
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::listens;

    #[test]
    fn a_listening_row_of_proc_net_tcp_is_found_by_its_port() {
        let table = "  sl  local_address rem_address   st tx_queue\n\
                     0: 0100007F:1F41 00000000:0000 0A 00000000:00000000\n\
                     1: 0100007F:1F42 0100007F:D431 01 00000000:00000000\n";
        assert!(listens(table, 8001));
        // Connected, not listening.
        assert!(!listens(table, 8002));
        assert!(!listens(table, 80));
    }
}
