//! The doctor's disk-space check: is there room where a new release (its files and its venv) will be written?
//! On this machine the answer is `statvfs(3)` of the directory (or the nearest ancestor that exists: the
//! release directory is created by the run); on an SSH host, `df -Pk` there.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::Check;
use crate::diag::Code;
use crate::host::{Command, Host};

const MIB: u64 = 1024 * 1024;

/// Is there `need` bytes free on the file system `dir` is (or will be) on?
pub async fn free_space(host: &dyn Host, dir: &Path, need: u64) -> Check {
    let Some(existing) = nearest_existing(host, dir).await else {
        return Check::warning(
            Code::DoctorDiskSpace,
            "disk space",
            format!("no directory above {} exists to measure", dir.display()),
            "check the path: it should be on a mounted file system",
        );
    };
    let available = match host.local() {
        Some(_) => statvfs_available(&existing),
        None => df_available(host, &existing).await,
    };
    let available = match available {
        Ok(bytes) => bytes,
        Err(why) => {
            return Check::warning(
                Code::DoctorDiskSpace,
                "disk space",
                format!("cannot measure the free space at {}: {why}", existing.display()),
                "check it by hand (`df -h`)",
            );
        }
    };
    let (free, needed) = (available / MIB, need.div_ceil(MIB));
    if available < need {
        return Check::problem(
            Code::DoctorDiskSpace,
            "disk space",
            format!("{free} MiB free at {}; a new release and its venv need about {needed} MiB", existing.display()),
            "free space there (`zdd` keeps `keep` releases: a lower `keep` prunes more), or move `root`",
        );
    }
    Check::ok(
        "disk space",
        format!("{free} MiB free at {} (a new release needs about {needed} MiB)", existing.display()),
    )
}

/// `dir`, or its nearest ancestor that exists.
async fn nearest_existing(host: &dyn Host, dir: &Path) -> Option<PathBuf> {
    let mut at = Some(dir);
    while let Some(path) = at {
        if host.exists(path).await.unwrap_or(false) {
            return Some(path.to_path_buf());
        }
        at = path.parent();
    }
    None
}

/// Bytes an unprivileged process may still write on the file system of `path`.
fn statvfs_available(path: &Path) -> Result<u64, String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// The same, from `df -Pk` on the host (POSIX output: the fourth column of the second line, in KiB).
async fn df_available(host: &dyn Host, path: &Path) -> Result<u64, String> {
    let cancel = CancellationToken::new();
    let cmd = Command::new("df").args(["-Pk", "--"]).arg(path.display().to_string());
    let out = host.run(&cmd, &cancel, None).await.map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.stderr_str().trim().to_owned());
    }
    parse_df(&out.stdout_str()).ok_or_else(|| "`df -Pk` printed something unexpected".to_owned())
}

fn parse_df(text: &str) -> Option<u64> {
    let kib: u64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_posix_output_reads_as_bytes() {
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 263174212 14 81000000 15% /\n";
        assert_eq!(parse_df(text), Some(81_000_000 * 1024));
        assert_eq!(parse_df("Filesystem\n"), None);
    }

    #[tokio::test]
    async fn a_directory_to_be_created_is_measured_where_it_will_be() {
        let dir = tempfile::tempdir().unwrap();
        let host = crate::host::LocalHost::new();
        let check = free_space(&host, &dir.path().join("releases/new"), 1).await;
        assert_eq!(check.outcome, super::super::CheckOutcome::Ok, "{check:?}");
        assert!(check.detail.contains(&dir.path().display().to_string()), "{check:?}");
        let check = free_space(&host, dir.path(), u64::MAX).await;
        assert_eq!(check.outcome, super::super::CheckOutcome::Problem, "{check:?}");
    }
}
