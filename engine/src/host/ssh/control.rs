//! The directory of an SSH host's control socket: private (0700, ours) and short enough for a unix socket path.

use std::path::PathBuf;

use super::SshOptions;

/// The control socket's path beyond the control directory: `/.ssh-connectionXXXXXX/master` plus the random
/// suffix ssh binds before renaming (`.XXXXXXXXXXXXXXXX`).
const SOCKET_NAME_LEN: usize = 46;

/// The longest unix socket path (`sun_path` is 108 bytes, one is the NUL).
pub(super) const SOCKET_PATH_MAX: usize = 107;

/// Where the control sockets go: created 0700 if missing, refused if someone else could reach it, and short
/// enough for a socket path.
pub(super) fn prepare_control_dir(options: &SshOptions) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = options.control_dir.clone().unwrap_or_else(|| match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) if !runtime.is_empty() => PathBuf::from(runtime).join("zdd-ssh"),
        _ => std::env::temp_dir().join(format!("zdd-ssh-{uid}")),
    });
    if dir.as_os_str().len() + SOCKET_NAME_LEN > SOCKET_PATH_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the control directory {} is too long for a unix socket path (at most {} bytes)",
                dir.display(),
                SOCKET_PATH_MAX - SOCKET_NAME_LEN
            ),
        ));
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("create {}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the control directory {} must be a directory of uid {uid} with mode 0700", dir.display()),
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_control_dir_others_can_enter_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("c");
        let options = SshOptions { control_dir: Some(dir.clone()), ..SshOptions::default() };
        assert_eq!(prepare_control_dir(&options).unwrap(), dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(prepare_control_dir(&options).unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
        let long = SshOptions { control_dir: Some(PathBuf::from(format!("/tmp/{}", "x".repeat(80)))), ..options };
        assert!(prepare_control_dir(&long).unwrap_err().to_string().contains("too long"));
    }
}
