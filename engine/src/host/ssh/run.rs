//! [`SshHost`]'s commands: [`run`] with its pid header and remote cancellation, and [`spawn_detached`].
//!
//! A run's first stdout line is its pid (see [`script`]), which is its process group on the host. Cancelling
//! signals that group over another channel (TERM, KILL after the grace) and waits until none of it runs; a run
//! dropped before it ended KILLs the group from a background task ([`GroupGuard`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssh::{Session, Stdio};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::script::{self, PID_HEADER, SPAWN_HEADER, ops};
use super::{SshHost, error_chain};
use crate::host::local::{OUTPUT_DRAIN, Stream, forward_lines};
use crate::host::{Command, HostError, LineSink, Output};

/// What the first stdout line of a run said.
enum Header {
    Pending,
    Started(u32),
    NotStarted(String),
}

/// [`Host::run`](crate::host::Host::run) over SSH.
pub(super) async fn run(
    host: &SshHost,
    cmd: &Command,
    cancel: &CancellationToken,
    lines: Option<&LineSink>,
) -> Result<Output, HostError> {
    let cancelled = || HostError::Cancelled { program: cmd.program.clone() };
    if cancel.is_cancelled() {
        return Err(cancelled());
    }
    let _permit = tokio::select! {
        permit = host.commands.acquire() => permit.map_err(|_| host.closed())?,
        () = cancel.cancelled() => return Err(cancelled()),
    };
    let line = script::run_line(cmd);
    let mut command = host.session.clone().arc_raw_command(&line);
    command
        .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().await.map_err(|e| host.connection(&e))?;
    let mut guard = GroupGuard { session: host.session.clone(), control: host.control.clone(), pgid: None };

    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    if let Some(out) = child.stdout().take() {
        tokio::spawn(forward_lines(out, Stream::Stdout, line_tx.clone()));
    }
    if let Some(err) = child.stderr().take() {
        tokio::spawn(forward_lines(err, Stream::Stderr, line_tx.clone()));
    }
    drop(line_tx);
    if let (Some(mut stdin), Some(input)) = (child.stdin().take(), cmd.stdin.clone()) {
        // A command that does not read its input closes the pipe: the write error is not the command's failure.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }

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

    let wait = child.wait();
    tokio::pin!(wait);
    let mut header = Header::Pending;
    let mut streams_open = true;
    let mut cancel_requested = false;
    let status = loop {
        tokio::select! {
            line = line_rx.recv(), if streams_open => match line {
                Some((Stream::Stdout, line)) if matches!(header, Header::Pending) => {
                    header = read_header(&line);
                    if let Header::Started(pgid) = header {
                        guard.pgid = Some(pgid);
                        if cancel_requested {
                            terminate_group(host, pgid, cmd.kill_grace).await;
                        }
                    }
                }
                Some((stream, line)) => deliver(stream, line, &mut output),
                None => streams_open = false,
            },
            status = &mut wait => break status,
            () = cancel.cancelled(), if !cancel_requested => {
                cancel_requested = true;
                if let Header::Started(pgid) = header {
                    terminate_group(host, pgid, cmd.kill_grace).await;
                }
            }
        }
    };

    // The exit status can arrive before the last output: read on until the streams close, or until they stay
    // quiet (something the command started in the background may hold them open).
    while streams_open {
        tokio::select! {
            line = line_rx.recv() => match line {
                Some((Stream::Stdout, line)) if matches!(header, Header::Pending) => header = read_header(&line),
                Some((stream, line)) => deliver(stream, line, &mut output),
                None => streams_open = false,
            },
            () = tokio::time::sleep(OUTPUT_DRAIN) => break,
        }
    }
    guard.pgid = None;

    if cancel_requested {
        return Err(cancelled());
    }
    finish(host, cmd, header, status, output).await
}

/// A run's result from its header and exit status.
async fn finish(
    host: &SshHost,
    cmd: &Command,
    header: Header,
    status: Result<std::process::ExitStatus, openssh::Error>,
    mut output: Output,
) -> Result<Output, HostError> {
    match header {
        Header::NotStarted(reason) => {
            return Err(HostError::Spawn { program: cmd.program.clone(), source: script::spawn_error(&reason) });
        }
        Header::Pending => {
            let stderr = output.stderr_str();
            return Err(HostError::Spawn {
                program: cmd.program.clone(),
                source: std::io::Error::other(format!(
                    "the remote shell on {} did not start it: {}",
                    host.name,
                    stderr.trim()
                )),
            });
        }
        Header::Started(_) => {}
    }
    output.code = match status {
        Ok(status) => status.code(),
        // The mux client reports exit code 127 as an error of its own.
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(127),
        // Killed by a signal, or the connection was lost: the mux protocol cannot tell them apart, the master can.
        Err(openssh::Error::RemoteProcessTerminated) => {
            host.check().await?;
            None
        }
        Err(e) => return Err(host.connection(&e)),
    };
    Ok(output)
}

/// [`Host::spawn_detached`](crate::host::Host::spawn_detached) over SSH.
pub(super) async fn spawn_detached(host: &SshHost, cmd: &Command, log: &Path) -> Result<u32, HostError> {
    let spawn_failed = |source| HostError::Spawn { program: cmd.program.clone(), source };
    let log = script::path_arg(log).map_err(spawn_failed)?;
    let _permit = host.commands.acquire().await.map_err(|_| host.closed())?;
    let line = script::detach_line(cmd, &log);
    let out = match host.session.raw_command(&line).output().await {
        Ok(out) => out,
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(spawn_failed(std::io::Error::new(e.kind(), "the remote shell could not start /bin/sh")));
        }
        Err(e) => return Err(host.connection(&e)),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    match read_header(first.as_bytes()) {
        Header::Started(pid) => Ok(pid),
        Header::NotStarted(reason) => Err(spawn_failed(script::spawn_error(&reason))),
        Header::Pending => Err(spawn_failed(std::io::Error::other(format!(
            "the detaching shell did not report a pid: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))),
    }
}

/// TERM the process group, KILL it after `grace`, and wait until none of it runs (over its own channel).
async fn terminate_group(host: &SshHost, pgid: u32, grace: Duration) {
    let Ok(_permit) = host.control.acquire().await else { return };
    let tenths = grace.as_millis().div_ceil(100).to_string();
    let line = script::op_line(ops::TERMINATE_GROUP, &[&pgid.to_string(), &tenths]);
    match host.session.raw_command(&line).output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            host = %host.name,
            pgid,
            "signalling a cancelled command's process group failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => tracing::warn!(
            host = %host.name,
            pgid,
            "could not signal a cancelled command's process group: {}",
            error_chain(&e)
        ),
    }
}

/// KILLs the remote process group if [`SshHost::run`] is dropped before the command ended (a caller that dropped
/// the future instead of cancelling it): nothing it started may outlive it.
struct GroupGuard {
    session: Arc<Session>,
    control: Arc<Semaphore>,
    pgid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let session = self.session.clone();
        let control = self.control.clone();
        runtime.spawn(async move {
            let Ok(_permit) = control.acquire().await else { return };
            let line = script::op_line(ops::KILL_GROUP, &[&pgid.to_string()]);
            let _ = session.raw_command(&line).output().await;
        });
    }
}

/// The first stdout line of a run or a detach.
fn read_header(line: &[u8]) -> Header {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if let Some(pid) = text.strip_prefix(PID_HEADER).and_then(|p| p.parse::<u32>().ok()) {
        Header::Started(pid)
    } else if let Some(reason) = text.strip_prefix(SPAWN_HEADER) {
        Header::NotStarted(reason.to_owned())
    } else {
        Header::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_started_from_not_started() {
        assert!(matches!(read_header(b"zdd-pid 4242\n"), Header::Started(4242)));
        assert!(
            matches!(read_header(b"zdd-spawn ENOENT no directory /x\n"), Header::NotStarted(r) if r.starts_with("ENOENT"))
        );
        assert!(matches!(read_header(b"hello\n"), Header::Pending));
    }
}
