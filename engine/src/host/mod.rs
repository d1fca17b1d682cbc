//! The host abstraction: the only way a step runs a command or touches a file.
//!
//! [`LocalHost`](local::LocalHost) works on this machine; [`SshHost`](ssh::SshHost) on another one, through the
//! system's OpenSSH (one multiplexed connection per host, every operation a remote command). A run holds its
//! hosts in a [`HostSet`](set::HostSet): each step acts on the one its plan step names.
//! Commands run as argument vectors (a shell only when the plan itself wrote a shell command), in their own
//! process group, and are cancelled by signalling that group (TERM, then KILL after a grace period) and
//! reaping the child: a child-process future is never just dropped.

pub mod access;
pub mod endpoint;
mod input;
pub mod local;
pub mod set;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use access::{Account, FileStat};
pub use endpoint::{Endpoint, Reached};
pub use input::InputStream;
pub use local::LocalHost;
pub use set::HostSet;
pub use ssh::{Destination, SshHost, SshOptions};

/// A command to run on a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to (not replacing) the host's environment.
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
    /// Between TERM and KILL when the command is cancelled or times out.
    pub kill_grace: Duration,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            kill_grace: Duration::from_secs(5),
        }
    }

    /// `sh -c SCRIPT`: only for commands the plan itself wrote as shell.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new("/bin/sh").arg("-c").arg(script)
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The command as a person would type it (arguments quoted where needed), for previews and logs.
    pub fn display(&self) -> String {
        let mut words = vec![shell_quote(&self.program)];
        words.extend(self.args.iter().map(|a| shell_quote(a)));
        let line = words.join(" ");
        match &self.cwd {
            Some(dir) => format!("(cd {} && {line})", shell_quote(&dir.to_string_lossy())),
            None => line,
        }
    }
}

/// Quote a word for a POSIX shell if it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("could not start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{program}` was cancelled (process group signalled and reaped)")]
    Cancelled { program: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    /// An SSH host could not be reached, refused the connection, or the connection was lost.
    #[error("SSH to {host}: {message}")]
    Connection { host: String, message: String },
}

/// Receives each line a command prints while it runs (for live step output).
pub type LineSink = Box<dyn Fn(&str) + Send + Sync>;

/// A machine that steps act on.
#[async_trait]
pub trait Host: Send + Sync + std::fmt::Debug {
    /// `local`, or the SSH destination.
    fn name(&self) -> &str;

    /// This host, if it is the machine zdd runs on: its paths are zdd's paths (a release's source is copied
    /// where it is, not streamed).
    fn local(&self) -> Option<&LocalHost>;

    /// Run a command to completion, or until `cancel` fires (then signal the process group and reap it).
    async fn run(
        &self,
        cmd: &Command,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError>;

    /// [`run`](Host::run) with `input` fed to the command's stdin (instead of [`Command::stdin`]) as the
    /// command reads it, so that it is never held whole: an archive unpacked on the host. A failure to read
    /// `input` fails the run (as [`HostError::Io`]); input the command leaves unread does not.
    async fn run_streaming(
        &self,
        cmd: &Command,
        input: InputStream,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError>;

    /// Start a command that outlives zdd (a gunicorn of the process backend), detached in its own
    /// session, output appended to `log`. Returns its pid.
    async fn spawn_detached(&self, cmd: &Command, log: &Path) -> Result<u32, HostError>;

    /// The file's content, or `None` if it does not exist.
    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError>;

    /// Write atomically (temp file in the same directory, fsync, rename) with this mode.
    async fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> Result<(), HostError>;

    /// Point `link` at `target` atomically (new link beside it, then rename over).
    async fn swap_symlink(&self, link: &Path, target: &Path) -> Result<(), HostError>;

    /// Where a symlink points, or `None` if it does not exist or is not a link.
    async fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError>;

    async fn exists(&self, path: &Path) -> Result<bool, HostError>;

    async fn create_dir_all(&self, path: &Path) -> Result<(), HostError>;

    /// Remove a file, a symlink or a whole directory tree; absent is fine.
    async fn remove_all(&self, path: &Path) -> Result<(), HostError>;

    /// Names of a directory's entries, sorted; empty if it does not exist.
    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, HostError>;

    /// Is a process with this pid alive?
    async fn process_alive(&self, pid: u32) -> Result<bool, HostError>;

    /// Send a signal (by name: `TERM`, `KILL`, `HUP`, `USR2`, `0`) to a process.
    async fn signal(&self, pid: u32, signal: &str) -> Result<(), HostError>;

    /// Mode and owner of a path (symlinks followed), or `None` if it does not exist. For preflights.
    async fn stat(&self, path: &Path) -> Result<Option<FileStat>, HostError>;

    /// A user of this host by name or uid, with the groups its processes carry (as `initgroups` sets them,
    /// with `gid` as the primary group when given), or `None` if there is no such user.
    async fn account(&self, user: &UserRef, gid: Option<u32>) -> Result<Option<Account>, HostError>;

    /// A group's id by name, or `None` if there is no such group.
    async fn group_id(&self, name: &str) -> Result<Option<u32>, HostError>;

    /// How zdd's own process reaches `endpoint` as this host sees it (its unix socket, its `127.0.0.1:8001`),
    /// for probes. This machine returns the endpoint itself; a remote host a forward to it, which lasts as
    /// long as the host's connection and is made once per endpoint.
    async fn reach(&self, endpoint: &Endpoint) -> Result<Reached, HostError>;
}

/// A user named in a config (`user www-data;`) or seen on a process (`Uid: 33`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Name(String),
    Uid(u32),
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Uid(u) => write!(f, "uid {u}"),
        }
    }
}
