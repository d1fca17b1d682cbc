//! [`LocalHost`]: the host this zdd runs on.
//!
//! Commands run as argument vectors, each in its own process group, with stdout and stderr captured and streamed
//! line by line. Cancelling a command signals its whole group (TERM, then KILL after the command's grace period)
//! and always reaps the child. File writes are atomic (temporary file in the same directory, fsync, rename, fsync
//! of the directory) and symlink swaps are a rename over the old link.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::input::Input;
use super::{Account, Command, Endpoint, FileStat, Host, HostError, InputStream, LineSink, Output, Reached, UserRef};

/// How long output may stay quiet after a command exited before reading stops, when something it started in the
/// background still holds its stdout or stderr open (a `cmd &` that outlives the shell).
pub(super) const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// How often to look whether a signalled process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(20);

pub mod process_log;

use process_log::ProcessLog;

/// This machine.
#[derive(Debug, Clone, Default)]
pub struct LocalHost {
    /// Where started and reaped process groups are logged, for `zdd recover` (none in tests and previews).
    process_log: Option<Arc<ProcessLog>>,
}

impl LocalHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// A host that logs the process groups it starts to `path` (see [`process_log`]).
    pub fn with_process_log(path: impl Into<PathBuf>) -> Self {
        Self { process_log: Some(Arc::new(ProcessLog::new(path))) }
    }
}

/// Which of a command's output streams a line came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl LocalHost {
    /// [`Host::run`] with its stdin from `input`.
    async fn run_with(
        &self,
        cmd: &Command,
        input: Input,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        if cancel.is_cancelled() {
            return Err(HostError::Cancelled { program: cmd.program.clone() });
        }
        let mut command = tokio::process::Command::new(&cmd.program);
        // Logged before the spawn, so that a zdd killed before it logs the group can still find it (see
        // process_log's docs).
        let token = self.process_log.as_ref().map(|log| log.spawning(&cmd.program));
        if let Some(token) = &token {
            command.env(process_log::SPAWN_TOKEN_ENV, token);
        }
        command
            .args(&cmd.args)
            .envs(&cmd.env)
            .process_group(0)
            .stdin(if input.piped() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|source| HostError::Spawn { program: cmd.program.clone(), source })?;
        let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw) else {
            // The child is already reaped (cannot happen right after spawn); report it like a spawn failure.
            return Err(HostError::Spawn {
                program: cmd.program.clone(),
                source: std::io::Error::other("the child exited before its pid could be read"),
            });
        };
        let guard = GroupGuard { pgid, armed: true };
        if let Some(log) = &self.process_log {
            log.started(pgid.as_raw(), &cmd.program, token.as_deref());
        }

        let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, Stream::Stdout, line_tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, Stream::Stderr, line_tx.clone()));
        }
        drop(line_tx);
        let feeder = input.feed(child.stdin.take());

        let mut output = Output::default();
        let deliver = |stream: Stream, line: Vec<u8>, output: &mut Output| {
            if let Some(sink) = lines {
                let text = String::from_utf8_lossy(&line);
                sink(text.trim_end_matches(['\n', '\r']));
            }
            match stream {
                Stream::Stdout => output.stdout.extend_from_slice(&line),
                Stream::Stderr => output.stderr.extend_from_slice(&line),
            }
        };

        let mut streams_open = true;
        let mut cancelled = false;
        let status: std::io::Result<ExitStatus> = loop {
            tokio::select! {
                line = line_rx.recv(), if streams_open => match line {
                    Some((stream, line)) => deliver(stream, line, &mut output),
                    None => streams_open = false,
                },
                status = child.wait() => break status,
                () = cancel.cancelled() => {
                    cancelled = true;
                    break terminate_group(&mut child, pgid, cmd.kill_grace).await;
                }
            }
        };

        // Collect what is still in the pipes; background processes of a finished command may keep them open,
        // so this ends once they stay quiet (not at a fixed time: a large output may still be arriving).
        while streams_open {
            tokio::select! {
                line = line_rx.recv() => match line {
                    Some((stream, line)) => deliver(stream, line, &mut output),
                    None => streams_open = false,
                },
                () = tokio::time::sleep(OUTPUT_DRAIN) => break,
            }
        }
        guard.disarm();
        if let Some(log) = &self.process_log {
            log.ended(pgid.as_raw());
        }

        if cancelled {
            return Err(HostError::Cancelled { program: cmd.program.clone() });
        }
        feeder.finish().await.map_err(|source| HostError::Io {
            op: "read the input of",
            path: PathBuf::from(&cmd.program),
            source,
        })?;
        let status =
            status.map_err(|source| HostError::Io { op: "wait for", path: PathBuf::from(&cmd.program), source })?;
        output.code = status.code();
        Ok(output)
    }
}

#[async_trait]
impl Host for LocalHost {
    fn name(&self) -> &'static str {
        "local"
    }

    fn local(&self) -> Option<&LocalHost> {
        Some(self)
    }

    async fn run(
        &self,
        cmd: &Command,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        self.run_with(cmd, Input::of(cmd, None), cancel, lines).await
    }

    async fn run_streaming(
        &self,
        cmd: &Command,
        input: InputStream,
        cancel: &CancellationToken,
        lines: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        self.run_with(cmd, Input::of(cmd, Some(input)), cancel, lines).await
    }

    async fn spawn_detached(&self, cmd: &Command, log: &Path) -> Result<u32, HostError> {
        // A double fork through the shell: `setsid` (not a group leader inside a non-interactive shell's
        // background job, so it does not fork again) execs the program in a new session; the shell prints its
        // pid and exits. The program is then nobody's child here: it survives zdd and never becomes zdd's zombie.
        // The log is created 0640 (output may hold request data); the program keeps the caller's umask.
        let script = r#"log=$1; shift; (umask 027; : >>"$log"); setsid "$@" </dev/null >>"$log" 2>&1 & echo $!"#;
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .arg("zdd-detach")
            .arg(log)
            .arg(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        let out = command.output().await.map_err(|source| HostError::Spawn { program: cmd.program.clone(), source })?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse::<u32>().map_err(|_| HostError::Spawn {
            program: cmd.program.clone(),
            source: std::io::Error::other(format!(
                "the detaching shell did not report a pid: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error("read", path, source)),
        }
    }

    async fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> Result<(), HostError> {
        let path = path.to_path_buf();
        let content = content.to_vec();
        blocking(move || write_atomically(&path, &content, mode)).await
    }

    async fn swap_symlink(&self, link: &Path, target: &Path) -> Result<(), HostError> {
        let link = link.to_path_buf();
        let target = target.to_path_buf();
        blocking(move || {
            let temp = sibling_temp(&link, "link");
            std::os::unix::fs::symlink(&target, &temp).map_err(|e| io_error("create symlink", &temp, e))?;
            if let Err(e) = std::fs::rename(&temp, &link) {
                let _ = std::fs::remove_file(&temp);
                return Err(io_error("rename symlink over", &link, e));
            }
            sync_parent(&link)
        })
        .await
    }

    async fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError> {
        match tokio::fs::symlink_metadata(path).await {
            Ok(meta) if meta.file_type().is_symlink() => {
                tokio::fs::read_link(path).await.map(Some).map_err(|e| io_error("read link", path, e))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("inspect", path, e)),
        }
    }

    async fn exists(&self, path: &Path) -> Result<bool, HostError> {
        // A dangling symlink exists (it can be swapped or removed), so look at the link itself.
        match tokio::fs::symlink_metadata(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("inspect", path, e)),
        }
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), HostError> {
        tokio::fs::create_dir_all(path).await.map_err(|e| io_error("create directory", path, e))
    }

    async fn remove_all(&self, path: &Path) -> Result<(), HostError> {
        let meta = match tokio::fs::symlink_metadata(path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("inspect", path, e)),
        };
        let result =
            if meta.is_dir() { tokio::fs::remove_dir_all(path).await } else { tokio::fs::remove_file(path).await };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
            _ => Ok(()),
        }
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, HostError> {
        let mut entries = match tokio::fs::read_dir(path).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", path, e)),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error("list", path, e))? {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn process_alive(&self, pid: u32) -> Result<bool, HostError> {
        Ok(pid_alive(pid))
    }

    async fn signal(&self, pid: u32, signal: &str) -> Result<(), HostError> {
        let target = pid_path(pid);
        let sig = parse_signal(signal).map_err(|e| io_error("signal", &target, e))?;
        let raw = i32::try_from(pid)
            .map_err(|_| io_error("signal", &target, std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
        signal::kill(Pid::from_raw(raw), sig).map_err(|errno| io_error("signal", &target, errno.into()))
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileStat>, HostError> {
        use std::os::unix::fs::MetadataExt as _;
        match tokio::fs::metadata(path).await {
            Ok(m) => Ok(Some(FileStat { mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid(), is_dir: m.is_dir() })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("inspect", path, e)),
        }
    }

    async fn account(&self, user: &UserRef, gid: Option<u32>) -> Result<Option<Account>, HostError> {
        let user = user.clone();
        tokio::task::spawn_blocking(move || local_account(&user, gid))
            .await
            .unwrap_or_else(|e| Err(io_error("look up", Path::new("user"), std::io::Error::other(e))))
    }

    async fn group_id(&self, name: &str) -> Result<Option<u32>, HostError> {
        match nix::unistd::Group::from_name(name) {
            Ok(g) => Ok(g.map(|g| g.gid.as_raw())),
            Err(errno) => Err(io_error("look up group", Path::new(name), errno.into())),
        }
    }

    /// This machine's endpoints are where zdd connects: no forward, no copy of the address.
    async fn reach(&self, endpoint: &Endpoint) -> Result<Reached, HostError> {
        Ok(Reached::Direct(endpoint.clone()))
    }
}

/// The passwd entry of a user and the groups `initgroups` would give its processes.
fn local_account(user: &UserRef, gid: Option<u32>) -> Result<Option<Account>, HostError> {
    use nix::unistd::{Gid, Uid, User};
    let found = match user {
        UserRef::Name(name) => User::from_name(name),
        UserRef::Uid(uid) => User::from_uid(Uid::from_raw(*uid)),
    };
    let found = found.map_err(|errno| io_error("look up user", Path::new(&user.to_string()), errno.into()))?;
    let Some(found) = found else { return Ok(None) };
    let primary = gid.map_or(found.gid, Gid::from_raw);
    let groups = std::ffi::CString::new(found.name.clone())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, primary).ok())
        .map_or_else(|| vec![primary.as_raw()], |g| g.iter().map(|g| g.as_raw()).collect());
    Ok(Some(Account { name: found.name, uid: found.uid.as_raw(), gid: primary.as_raw(), groups }))
}

/// Is this process alive? A zombie (exited, not yet reaped by its parent) is not.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    match signal::kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

/// Linux: the process state letter in `/proc/<pid>/stat` is `Z`. Elsewhere: never known to be a zombie.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The command name is in parentheses and may contain spaces: the state follows the last `)`.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

fn pid_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("pid {pid}"))
}

/// `TERM`, `SIGTERM`, `term`, or `0` (no signal: only check the process exists).
pub(super) fn parse_signal(name: &str) -> std::io::Result<Option<Signal>> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "0" {
        return Ok(None);
    }
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<Signal>()
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("unknown signal `{name}`")))
}

/// Read a stream line by line (bytes, newline kept) and forward each line.
pub(super) async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    tx: mpsc::UnboundedSender<(Stream, Vec<u8>)>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.send((which, line)).is_err() {
                    break;
                }
            }
        }
    }
}

/// TERM the group, give it `grace` to go, KILL whatever is left, and reap the child.
async fn terminate_group(child: &mut Child, pgid: Pid, grace: Duration) -> std::io::Result<ExitStatus> {
    let _ = signal::killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.try_wait()?;
        }
        if status.is_some() && !group_alive(pgid) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = signal::killpg(pgid, Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
    match status {
        Some(status) => Ok(status),
        None => child.wait().await,
    }
}

/// Does any process of this group still exist (zombies included: they are about to be reaped)?
fn group_alive(pgid: Pid) -> bool {
    signal::killpg(pgid, None).is_ok()
}

/// Kills the process group if [`LocalHost::run`] is dropped before it reaped its child (a caller that dropped
/// the future instead of cancelling it): nothing it started may outlive it. Tokio reaps the dropped child.
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl GroupGuard {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal::killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> HostError {
    HostError::Io { op, path: path.to_path_buf(), source }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(HostError::Io { op: "run blocking file operation", path: PathBuf::new(), source: std::io::Error::other(e) })
    })
}

/// A unique name beside `path`, hidden, for a temporary file or link.
pub(super) fn sibling_temp(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().map_or_else(|| "zdd".into(), |n| n.to_string_lossy().into_owned());
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.zdd-{what}-{}-{nonce:016x}", std::process::id()))
}

/// Write `content` to `path` atomically with `mode`: readers see the old file or the new one, never a mix.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<(), HostError> {
    let temp = sibling_temp(path, "tmp");
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, e))?;
        // The umask may have narrowed the mode given to open.
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| io_error("chmod", &temp, e))?;
        file.write_all(content).map_err(|e| io_error("write", &temp, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| io_error("rename over", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_parent(path)
}

/// fsync the directory holding `path`, so a rename in it survives a crash.
fn sync_parent(path: &Path) -> Result<(), HostError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|e| io_error("fsync directory", parent, e))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;

    /// Processes of a group that are still running (zombies waiting for PID 1 to reap them count as gone).
    fn live_members(pgid: i32) -> Vec<u32> {
        let mut members = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(member) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{member}/stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(')') else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // state ppid pgrp ...
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                members.push(member);
            }
        }
        members
    }

    #[tokio::test]
    async fn runs_argv_and_captures_output_and_exit_code() {
        let host = LocalHost::new();
        let cmd = Command::new("/bin/sh").arg("-c").arg("echo out; echo err >&2; exit 3");
        let out = host.run(&cmd, &CancellationToken::new(), None).await.unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
    }

    #[tokio::test]
    async fn passes_arguments_without_a_shell() {
        let host = LocalHost::new();
        let cmd = Command::new("printf").arg("%s|").arg("a b").arg("$HOME;");
        let out = host.run(&cmd, &CancellationToken::new(), None).await.unwrap();
        assert_eq!(out.stdout_str(), "a b|$HOME;|");
    }

    #[tokio::test]
    async fn streams_lines_feeds_stdin_and_applies_env_and_cwd() {
        let host = LocalHost::new();
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let sink: LineSink = Box::new(move |line: &str| seen2.lock().unwrap().push(line.to_owned()));
        let mut cmd = Command::shell("cat; echo \"$GREETING\"; pwd").env("GREETING", "hello").cwd(dir.path());
        cmd.stdin = Some(b"from stdin\n".to_vec());
        let out = host.run(&cmd, &CancellationToken::new(), Some(&sink)).await.unwrap();
        assert!(out.success());
        let canonical = dir.path().canonicalize().unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["from stdin".to_owned(), "hello".to_owned(), canonical.display().to_string()]
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let host = LocalHost::new();
        let err = host.run(&Command::new("/nonexistent/zdd-test"), &CancellationToken::new(), None).await.unwrap_err();
        assert!(matches!(err, HostError::Spawn { .. }), "{err}");
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group_and_reaps() {
        let host = LocalHost::new();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; sleep 100 & sleep 100", pid_file.display());
        let mut cmd = Command::shell(script);
        cmd.kill_grace = Duration::from_millis(300);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let pid_file2 = pid_file.clone();
        tokio::spawn(async move {
            while !pid_file2.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let err = host.run(&cmd, &cancel, None).await.unwrap_err();
        assert!(matches!(err, HostError::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pgid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // Give the kernel a moment to deliver SIGKILL to the orphaned background sleep.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !live_members(pgid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(live_members(pgid), Vec::<u32>::new(), "survivors in process group {pgid}");
    }

    #[tokio::test]
    async fn cancel_escalates_to_kill_when_term_is_ignored() {
        let host = LocalHost::new();
        let mut cmd = Command::shell("trap '' TERM; sleep 100 & wait");
        cmd.kill_grace = Duration::from_millis(200);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let err = host.run(&cmd, &cancel, None).await.unwrap_err();
        assert!(matches!(err, HostError::Cancelled { .. }));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn already_cancelled_starts_nothing() {
        let host = LocalHost::new();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = host.run(&Command::new("true"), &cancel, None).await.unwrap_err();
        assert!(matches!(err, HostError::Cancelled { .. }));
    }

    #[tokio::test]
    async fn finished_command_with_background_child_does_not_hang() {
        let host = LocalHost::new();
        let started = Instant::now();
        let out = host.run(&Command::shell("sleep 3 & echo done"), &CancellationToken::new(), None).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout_str(), "done\n");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn spawn_detached_survives_in_its_own_session_and_logs() {
        let host = LocalHost::new();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let pid = host.spawn_detached(&Command::shell("echo started; exec sleep 30"), &log).await.unwrap();
        assert!(host.process_alive(pid).await.unwrap());
        // state ppid pgrp session: its own session (once `setsid` got to call setsid()), and not our child.
        let stat_fields = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat.rsplit_once(')').unwrap().1.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while stat_fields()[3] != pid.to_string() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fields = stat_fields();
        assert_eq!(fields[3], pid.to_string(), "not a session leader: {fields:?}");
        assert_ne!(fields[1], std::process::id().to_string());
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::read_to_string(&log).unwrap_or_default().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "started\n");
        host.signal(pid, "KILL").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while host.process_alive(pid).await.unwrap() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!host.process_alive(pid).await.unwrap());
    }

    #[tokio::test]
    async fn files_links_and_dirs() {
        let host = LocalHost::new();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/conf");
        host.create_dir_all(file.parent().unwrap()).await.unwrap();
        host.write_file(&file, b"one", 0o640).await.unwrap();
        host.write_file(&file, b"two", 0o600).await.unwrap();
        assert_eq!(host.read_file(&file).await.unwrap().unwrap(), b"two");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(host.list_dir(file.parent().unwrap()).await.unwrap(), vec!["conf".to_owned()]);
        assert_eq!(host.read_file(&dir.path().join("missing")).await.unwrap(), None);

        let link = dir.path().join("current");
        assert_eq!(host.read_link(&link).await.unwrap(), None);
        host.swap_symlink(&link, Path::new("a")).await.unwrap();
        host.swap_symlink(&link, Path::new("a/b")).await.unwrap();
        assert_eq!(host.read_link(&link).await.unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(host.read_link(&file).await.unwrap(), None);
        assert_eq!(host.list_dir(dir.path()).await.unwrap(), vec!["a".to_owned(), "current".to_owned()]);

        host.remove_all(&link).await.unwrap();
        assert!(dir.path().join("a/b/conf").exists(), "removing a link must not follow it");
        host.remove_all(&dir.path().join("a")).await.unwrap();
        host.remove_all(&dir.path().join("a")).await.unwrap();
        assert!(!host.exists(&dir.path().join("a")).await.unwrap());
        assert_eq!(host.list_dir(&dir.path().join("nope")).await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn signals_by_name() {
        assert!(parse_signal("TERM").unwrap() == Some(Signal::SIGTERM));
        assert!(parse_signal("sigusr2").unwrap() == Some(Signal::SIGUSR2));
        assert!(parse_signal("0").unwrap().is_none());
        assert!(parse_signal("BOGUS").is_err());
        let host = LocalHost::new();
        assert!(host.process_alive(std::process::id()).await.unwrap());
        host.signal(std::process::id(), "0").await.unwrap();
    }

    #[tokio::test]
    async fn endpoints_are_reached_directly() {
        let host = LocalHost::new();
        for endpoint in
            [Endpoint::Unix("/srv/shop/run/a.sock".into()), Endpoint::Tcp { host: "127.0.0.1".into(), port: 8001 }]
        {
            assert_eq!(host.reach(&endpoint).await.unwrap(), Reached::Direct(endpoint));
        }
    }
}
