//! [`SshHost`]: a machine reached over SSH, through the system's OpenSSH.
//!
//! One multiplexed connection per host (`ssh -M`, driven by the `openssh` crate's native mux client): the user's
//! `~/.ssh/config` (or the file given as [`SshOptions::config_file`], `ssh -F`), agent, jump hosts and
//! `known_hosts` apply unchanged. Its control socket lives in a short, private directory (unix socket paths are
//! limited to 108 bytes) and the master exits after [`SshOptions::idle_persist`] without use, so a zdd that was
//! killed leaves no connection behind for long.
//!
//! Every operation is a remote command (see [`script`]): the commands of [`Host::run`] report their pid, which
//! is their process group (sshd starts each in its own session). Cancelling one signals that group over a
//! second channel, TERM then KILL after the command's grace, and waits until none of it runs: dropping the
//! channel alone would leave the remote process running. At most [`COMMAND_SESSIONS`] commands run at once on
//! one connection, and [`CONTROL_SESSIONS`] more are kept for those signals, within sshd's default
//! `MaxSessions 10`.
//!
//! Probes reach the host's sockets and its loopback through forwards of the same connection (see [`forward`]);
//! a command's stdin may be a stream ([`Host::run_streaming`]), fed as the remote command reads it.

mod control;
pub mod destination;
mod forward;
pub mod recover;
mod run;
mod script;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openssh::{Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use destination::{Destination, DestinationError};

use super::input::Input;
use super::local::process_log::{ProcessLog, RemoteLeftover};
use super::local::{parse_signal, sibling_temp};
use super::{
    Account, Command, Endpoint, FileStat, Host, HostError, InputStream, LineSink, LocalHost, Output, Reached, UserRef,
};
use script::{ABSENT, ops};

/// Commands (runs and file operations) at once on one connection.
pub const COMMAND_SESSIONS: usize = 8;

/// Sessions kept free for signalling a cancelled command's process group.
pub const CONTROL_SESSIONS: usize = 2;

/// sshd refuses a session while it is still closing earlier ones (at `MaxSessions`): how often to try again,
/// and how long to pause in between.
const SESSION_RETRIES: u32 = 100;
const SESSION_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Start a remote command, trying again while sshd refuses the session because earlier ones are still closing.
async fn spawn_session<S: Clone>(command: &mut openssh::OwningCommand<S>) -> Result<openssh::Child<S>, openssh::Error> {
    let mut tries = 0;
    loop {
        match command.spawn().await {
            Err(e) if tries < SESSION_RETRIES && error_chain(&e).contains("Session open refused") => {
                tries += 1;
                tokio::time::sleep(SESSION_RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// How a connection is made.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `ssh -F FILE` instead of `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// Where control sockets live (created 0700). Default: `$XDG_RUNTIME_DIR/zdd-ssh`, else `/tmp/zdd-ssh-UID`.
    pub control_dir: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Keepalives: a host that stops answering is noticed after three of these.
    pub server_alive_interval: Duration,
    /// The master connection exits after this long without a session (ssh's `ControlPersist`).
    pub idle_persist: Duration,
    pub known_hosts: KnownHosts,
}

impl Default for SshOptions {
    fn default() -> Self {
        Self {
            config_file: None,
            control_dir: None,
            connect_timeout: Duration::from_secs(10),
            server_alive_interval: Duration::from_secs(5),
            idle_persist: Duration::from_mins(1),
            known_hosts: KnownHosts::Strict,
        }
    }
}

/// What to do with a host key that `known_hosts` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownHosts {
    /// Refuse it (`StrictHostKeyChecking=yes`): hosts are added to `known_hosts` beforehand.
    #[default]
    Strict,
    /// Add a new host's key, refuse a changed one (`accept-new`).
    AcceptNew,
}

/// A machine reached over SSH.
pub struct SshHost {
    name: String,
    session: Arc<Session>,
    commands: Arc<Semaphore>,
    control: Arc<Semaphore>,
    forwards: forward::Forwards,
    /// Where the process groups of runs are logged, for `zdd recover` (see [`super::local::process_log`]).
    process_log: Option<Arc<ProcessLog>>,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHost").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SshHost {
    /// Open the master connection (authenticating now, so a wrong key or an unknown host fails here).
    pub async fn connect(destination: &Destination, options: &SshOptions) -> Result<Self, HostError> {
        let name = destination.to_string();
        let refused = |message: String| HostError::Connection { host: name.clone(), message };
        let control_dir = control::prepare_control_dir(options).map_err(|e| refused(e.to_string()))?;
        let mut builder = SessionBuilder::default();
        builder
            .control_directory(&control_dir)
            .connect_timeout(options.connect_timeout)
            .server_alive_interval(options.server_alive_interval)
            .known_hosts_check(match options.known_hosts {
                KnownHosts::Strict => openssh::KnownHosts::Strict,
                KnownHosts::AcceptNew => openssh::KnownHosts::Add,
            });
        // Never `Forever` (the crate's default): at least one second idle, then the master exits.
        let idle = usize::try_from(options.idle_persist.as_secs()).unwrap_or(usize::MAX);
        let idle = std::num::NonZeroUsize::new(idle).unwrap_or(std::num::NonZeroUsize::MIN);
        builder.control_persist(openssh::ControlPersist::IdleFor(idle));
        if let Some(file) = &options.config_file {
            builder.config_file(file);
        }
        if let Some(user) = &destination.user {
            builder.user(user.clone());
        }
        if let Some(port) = destination.port {
            builder.port(port);
        }
        let session = builder.connect_mux(&destination.address).await.map_err(|e| refused(error_chain(&e)))?;
        Ok(Self {
            name,
            forwards: forward::Forwards::new(forward::connection_dir(&session)),
            session: Arc::new(session),
            commands: Arc::new(Semaphore::new(COMMAND_SESSIONS)),
            control: Arc::new(Semaphore::new(CONTROL_SESSIONS)),
            process_log: None,
        })
    }

    /// This host, logging the process groups its runs start to `path` (the run's process log, shared with
    /// the local host's), so that `zdd recover` can stop them after zdd was killed.
    #[must_use]
    pub fn with_process_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.process_log = Some(Arc::new(ProcessLog::new(path)));
        self
    }

    /// `zdd recover`: TERM the group a killed run left (KILL after `grace`) and wait until none of it runs, if
    /// its leader is still the process that started at `group.start`. `false`: that group is gone already.
    pub async fn stop_leftover(&self, group: &RemoteLeftover, grace: Duration) -> Result<bool, HostError> {
        let path = pid_path(group.pgid);
        let script = format!("{}{}", ops::LEADER_STARTED_AT, ops::TERMINATE_GROUP);
        let (pgid, tenths, start) =
            (group.pgid.to_string(), grace.as_millis().div_ceil(100).to_string(), group.start.to_string());
        Ok(self.file_op("stop", &path, &script, &[&pgid, &tenths, &start], None).await?.is_some())
    }

    /// The commands started with spawn `token` that still run (see [`ops::FIND_SPAWNED`]), as leftovers of
    /// `program` to stop like any other.
    pub async fn find_spawned(&self, token: &str, program: &str) -> Result<Vec<RemoteLeftover>, HostError> {
        let path = PathBuf::from(format!("spawn {token}"));
        let out = self.file_op("find", &path, ops::FIND_SPAWNED, &[token], None).await?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|line| {
                let (pgid, start) = line.split_once(' ')?;
                Some(RemoteLeftover {
                    pgid: pgid.parse().ok()?,
                    start: start.parse().ok()?,
                    program: program.to_owned(),
                })
            })
            .collect())
    }

    /// Is the connection still up (the master answers and so does the host)?
    pub async fn check(&self) -> Result<(), HostError> {
        self.session.check().await.map_err(|e| self.connection(&e))
    }

    fn connection(&self, e: &openssh::Error) -> HostError {
        HostError::Connection { host: self.name.clone(), message: error_chain(e) }
    }

    /// Run a file-operation script; the exit code is the script's to interpret.
    async fn op(&self, script: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<std::process::Output, HostError> {
        let _permit = self.commands.acquire().await.map_err(|_| self.closed())?;
        let line = script::op_line(script, args);
        let mut command = self.session.raw_command(&line);
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_session(&mut command).await.map_err(|e| self.connection(&e))?;
        let writer = child.stdin().take().zip(stdin).map(|(mut pipe, input)| async move {
            let _ = pipe.write_all(input).await;
            let _ = pipe.shutdown().await;
        });
        let (output, ()) = tokio::join!(child.wait_with_output(), async {
            if let Some(writer) = writer {
                writer.await;
            }
        });
        match output {
            Ok(output) => Ok(output),
            // The mux client reports exit code 127 as an error of its own: a tool the script needs is missing.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(std::process::Output { status: exit_status(127), stdout: Vec::new(), stderr: Vec::new() })
            }
            Err(e) => Err(self.connection(&e)),
        }
    }

    /// A file operation: its stdout when it succeeded, `None` when the script said [`ABSENT`].
    async fn file_op(
        &self,
        op: &'static str,
        path: &Path,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let out = self.op(script, args, stdin).await?;
        match out.status.code() {
            Some(0) => match script::after_output_marker(&out.stdout) {
                Some(output) => Ok(Some(output.to_vec())),
                None => Err(io_error(
                    op,
                    path,
                    std::io::Error::other(format!(
                        "the host's shell did not run the operation: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                )),
            },
            Some(ABSENT) => Ok(None),
            Some(127) if out.stderr.is_empty() => Err(io_error(
                op,
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "a tool this operation needs is missing on the host"),
            )),
            code => Err(io_error(op, path, script::remote_io_error(&out.stderr, code))),
        }
    }

    fn closed(&self) -> HostError {
        HostError::Connection { host: self.name.clone(), message: "the connection was closed".into() }
    }
}

#[async_trait]
impl Host for SshHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn local(&self) -> Option<&LocalHost> {
        None
    }

    async fn run(
        &self,
        cmd: &Command,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        run::run(self, cmd, Input::of(cmd, None), cancel, lines).await
    }

    async fn run_streaming(
        &self,
        cmd: &Command,
        input: InputStream,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        run::run(self, cmd, Input::of(cmd, Some(input)), cancel, lines).await
    }

    async fn spawn_detached(&self, cmd: &Command, log: &Path) -> Result<u32, HostError> {
        run::spawn_detached(self, cmd, log).await
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        let arg = path_arg("read", path)?;
        self.file_op("read", path, ops::READ, &[&arg], None).await
    }

    async fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> Result<(), HostError> {
        let arg = path_arg("write", path)?;
        let temp = path_arg("write", &sibling_temp(path, "tmp"))?;
        let mode = format!("{:o}", mode & 0o7777);
        self.file_op("write", path, ops::WRITE, &[&arg, &temp, &mode], Some(content)).await?;
        Ok(())
    }

    async fn swap_symlink(&self, link: &Path, target: &Path) -> Result<(), HostError> {
        let arg = path_arg("swap symlink", link)?;
        let temp = path_arg("swap symlink", &sibling_temp(link, "link"))?;
        let target = target.to_str().ok_or_else(|| io_error("swap symlink", link, not_utf8()))?;
        self.file_op("swap symlink", link, ops::SWAP_SYMLINK, &[&arg, &temp, target], None).await?;
        Ok(())
    }

    async fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError> {
        let arg = path_arg("read link", path)?;
        let out = self.file_op("read link", path, ops::READ_LINK, &[&arg], None).await?;
        Ok(out.map(|bytes| {
            let text = String::from_utf8_lossy(&bytes);
            PathBuf::from(text.strip_suffix('\n').unwrap_or(&text))
        }))
    }

    async fn exists(&self, path: &Path) -> Result<bool, HostError> {
        let arg = path_arg("inspect", path)?;
        Ok(self.file_op("inspect", path, ops::EXISTS, &[&arg], None).await?.is_some())
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), HostError> {
        let arg = path_arg("create directory", path)?;
        self.file_op("create directory", path, ops::CREATE_DIR_ALL, &[&arg], None).await?;
        Ok(())
    }

    async fn remove_all(&self, path: &Path) -> Result<(), HostError> {
        let arg = path_arg("remove", path)?;
        self.file_op("remove", path, ops::REMOVE_ALL, &[&arg], None).await?;
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, HostError> {
        let arg = path_arg("list", path)?;
        let Some(out) = self.file_op("list", path, ops::LIST_DIR, &[&arg], None).await? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = out
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn process_alive(&self, pid: u32) -> Result<bool, HostError> {
        let path = pid_path(pid);
        Ok(self.file_op("inspect", &path, ops::PROCESS_ALIVE, &[&pid.to_string()], None).await?.is_some())
    }

    async fn signal(&self, pid: u32, signal: &str) -> Result<(), HostError> {
        let path = pid_path(pid);
        let name = match parse_signal(signal).map_err(|e| io_error("signal", &path, e))? {
            None => "0".to_owned(),
            Some(sig) => sig.as_str().trim_start_matches("SIG").to_owned(),
        };
        self.file_op("signal", &path, ops::SIGNAL, &[&name, &pid.to_string()], None).await?;
        Ok(())
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileStat>, HostError> {
        let arg = path_arg("inspect", path)?;
        let Some(out) = self.file_op("inspect", path, ops::STAT, &[&arg], None).await? else { return Ok(None) };
        let text = String::from_utf8_lossy(&out);
        parse_stat(&text).map(Some).ok_or_else(|| {
            io_error("inspect", path, std::io::Error::other(format!("unexpected `stat` output: {}", text.trim())))
        })
    }

    async fn account(&self, user: &UserRef, gid: Option<u32>) -> Result<Option<Account>, HostError> {
        let key = match user {
            UserRef::Name(name) => name.clone(),
            UserRef::Uid(uid) => uid.to_string(),
        };
        let path = PathBuf::from(user.to_string());
        let Some(out) = self.file_op("look up user", &path, ops::ACCOUNT, &[&key], None).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&out);
        let parsed = parse_account(&text, gid).ok_or_else(|| {
            io_error("look up user", &path, std::io::Error::other(format!("unexpected output: {}", text.trim())))
        })?;
        // `getent passwd 33` finds uid 33 whatever was asked for: keep only the user that was meant.
        let meant = match user {
            UserRef::Name(name) => parsed.name == *name,
            UserRef::Uid(uid) => parsed.uid == *uid,
        };
        Ok(meant.then_some(parsed))
    }

    async fn group_id(&self, name: &str) -> Result<Option<u32>, HostError> {
        let path = PathBuf::from(name);
        let Some(out) = self.file_op("look up group", &path, ops::GROUP, &[name], None).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&out);
        let mut fields = text.trim_end().split(':');
        match (fields.next(), fields.nth(1).and_then(|gid| gid.parse::<u32>().ok())) {
            (Some(found), Some(gid)) if found == name => Ok(Some(gid)),
            (Some(_), Some(_)) => Ok(None),
            _ => Err(io_error("look up group", &path, std::io::Error::other(format!("unexpected output: {text}")))),
        }
    }

    async fn reach(&self, endpoint: &Endpoint) -> Result<Reached, HostError> {
        let local = self.forwards.reach(&self.session, endpoint).await.map_err(|e| HostError::Connection {
            host: self.name.clone(),
            message: format!("forward to {endpoint}: {}", error_chain(&e)),
        })?;
        Ok(Reached::Forwarded(local))
    }
}

/// `MODE UID GID TYPE` from `stat -c '%a %u %g %F'`.
fn parse_stat(text: &str) -> Option<FileStat> {
    let mut words = text.trim_end().splitn(4, ' ');
    let mode = u32::from_str_radix(words.next()?, 8).ok()?;
    let uid = words.next()?.parse().ok()?;
    let gid = words.next()?.parse().ok()?;
    let is_dir = words.next()? == "directory";
    Some(FileStat { mode, uid, gid, is_dir })
}

/// A passwd entry and `id -G` (primary group first), with `gid` as the primary group when given.
fn parse_account(text: &str, gid: Option<u32>) -> Option<Account> {
    let mut lines = text.lines();
    let entry: Vec<&str> = lines.next()?.split(':').collect();
    let name = (*entry.first()?).to_owned();
    let uid = entry.get(2)?.parse().ok()?;
    let passwd_gid: u32 = entry.get(3)?.parse().ok()?;
    let listed: Vec<u32> = lines.next().unwrap_or_default().split_whitespace().filter_map(|g| g.parse().ok()).collect();
    let primary = gid.unwrap_or(passwd_gid);
    let mut groups = vec![primary];
    for group in listed {
        // `id -G` starts with the passwd primary group; another primary replaces it.
        if (group == passwd_gid && primary != passwd_gid) || groups.contains(&group) {
            continue;
        }
        groups.push(group);
    }
    Some(Account { name, uid, gid: primary, groups })
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let message = inner.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(message.trim());
        }
        source = inner.source();
    }
    text
}

fn exit_status(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    std::process::ExitStatus::from_raw(code << 8)
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> HostError {
    HostError::Io { op, path: path.to_path_buf(), source }
}

fn not_utf8() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8, which a remote command cannot carry")
}

fn path_arg(op: &'static str, path: &Path) -> Result<String, HostError> {
    script::path_arg(path).map_err(|e| io_error(op, path, e))
}

fn pid_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("pid {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_account_outputs_parse() {
        assert_eq!(parse_stat("755 0 33 directory\n"), Some(FileStat { mode: 0o755, uid: 0, gid: 33, is_dir: true }));
        assert_eq!(
            parse_stat("4750 1000 1000 regular file\n"),
            Some(FileStat { mode: 0o4750, uid: 1000, gid: 1000, is_dir: false })
        );
        assert_eq!(parse_stat("garbage"), None);
        let text = "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n33 4 100\n";
        assert_eq!(
            parse_account(text, None),
            Some(Account { name: "www-data".into(), uid: 33, gid: 33, groups: vec![33, 4, 100] })
        );
        assert_eq!(parse_account(text, Some(100)).map(|a| (a.gid, a.groups)), Some((100, vec![100, 4])));
    }
}
