//! [`SshHost`]'s commands: [`run`] with its pid header and remote cancellation, and [`spawn_detached`].
//!
//! A run's first stdout line is its pid (see [`script`]), which is its process group on the host; lines before it
//! (what the login shell's startup files printed) are dropped. Cancelling signals that group over another channel
//! (TERM, KILL after the grace) and waits until none of it runs; a run dropped before it ended KILLs the group
//! from a background task ([`GroupGuard`]), once the header has told which group that is.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssh::{Session, Stdio};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::script::{self, PID_HEADER, SPAWN_HEADER, ops};
use super::{SshHost, error_chain, spawn_session};
use crate::host::input::{Feeder, Input};
use crate::host::local::process_log::{ProcessLog, SPAWN_TOKEN_ENV};
use crate::host::local::{OUTPUT_DRAIN, Stream, forward_lines};
use crate::host::{Command, HostError, LineSink, Output};

/// How long a dropped run's guard waits for the header that names the group to kill.
const HEADER_WAIT: Duration = Duration::from_secs(30);

/// What the first stdout line of a run said.
#[derive(Debug, Clone)]
enum Header {
    Pending,
    /// The process group, and when its leader started (clock ticks since the host booted), if the host said.
    Started(u32, Option<u64>),
    NotStarted(String),
}

/// [`Host::run`](crate::host::Host::run) over SSH.
pub(super) async fn run(
    host: &SshHost,
    cmd: &Command,
    input: Input,
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
    let (header_tx, mut header_rx) = watch::channel(Header::Pending);
    // Armed before the spawn: a run dropped while its session opens still has its group killed.
    let mut guard = GroupGuard::new(host, header_rx.clone());
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    let (child, feeder) = start(host, cmd, input, header_tx, line_tx).await?;
    let mut output = Output::default();
    // The mux client's exit status can come while the master still holds output for our pipes, and taking it
    // ends the session, output and all. So the status is only taken once the streams closed, or stayed quiet
    // for a while (something the command started in the background may hold them open, as locally).
    // The exit status is taken on a task of its own, once `collect` says so: if this run is dropped, the task
    // takes it anyway, so the session stays open and the header still reaches the guard.
    let (collect, collect_rx) = tokio::sync::oneshot::channel::<()>();
    let mut collect = Some(collect);
    let mut wait = tokio::spawn(async move {
        let _ = collect_rx.await;
        child.wait().await
    });
    let quiet_timer = tokio::time::sleep(OUTPUT_DRAIN);
    tokio::pin!(quiet_timer);
    let mut quiet = false;
    let mut header_open = true;
    let mut streams_open = true;
    let mut cancel_requested = false;
    let status = loop {
        if (!streams_open || quiet)
            && let Some(collect) = collect.take()
        {
            let _ = collect.send(());
        }
        tokio::select! {
            changed = header_rx.changed(), if header_open => match changed {
                Ok(()) => {
                    let header = header_rx.borrow_and_update().clone();
                    if let (Header::Started(pgid, _), true) = (header, cancel_requested) {
                        terminate_group(host, pgid, cmd.kill_grace).await;
                    }
                }
                Err(_) => header_open = false,
            },
            line = line_rx.recv(), if streams_open => match line {
                Some((stream, line)) => {
                    deliver(lines, stream, &line, &mut output);
                    quiet = false;
                    quiet_timer.as_mut().reset(tokio::time::Instant::now() + OUTPUT_DRAIN);
                }
                None => streams_open = false,
            },
            () = &mut quiet_timer, if streams_open && !quiet => quiet = true,
            status = &mut wait, if !streams_open || quiet => {
                break status.unwrap_or_else(|e| Err(openssh::Error::Remote(std::io::Error::other(e))));
            }
            () = cancel.cancelled(), if !cancel_requested => {
                cancel_requested = true;
                let header = header_rx.borrow().clone();
                if let Header::Started(pgid, _) = header {
                    terminate_group(host, pgid, cmd.kill_grace).await;
                }
            }
        }
    };

    // Quiet streams that are still open: what else comes soon is kept, the rest is the background's.
    while streams_open {
        tokio::select! {
            line = line_rx.recv() => match line {
                Some((stream, line)) => deliver(lines, stream, &line, &mut output),
                None => streams_open = false,
            },
            () = tokio::time::sleep(OUTPUT_DRAIN) => break,
        }
    }
    guard.armed = false;
    // The forwarder publishes the header before any line of the program's: it is final now.
    let header = header_rx.borrow().clone();
    // The command ended (or its group was waited for, when cancelled): `zdd recover` has nothing to stop.
    if let (Some(log), Header::Started(pgid, _)) = (&host.process_log, &header) {
        log.ended_on(&host.name, *pgid);
    }
    if cancel_requested {
        return Err(cancelled());
    }
    feeder.finish().await.map_err(|source| HostError::Io {
        op: "read the input of",
        path: cmd.program.clone().into(),
        source,
    })?;
    finish(host, cmd, header, status, output).await
}

/// Starts the command, its stdout and stderr forwarded to `lines` (the header to `header`) and its stdin fed,
/// each from a task of its own. When the host keeps a process log, the start is logged first with a spawn token
/// that the command carries as `ZDD_SPAWN` (and its `started` line then names): a zdd killed before the header
/// names the group still leaves a way to find it (see [`process_log`](crate::host::local::process_log)).
///
/// The session is opened on a task of its own too. The remote command may already run before the mux client
/// hears that its session opened, a round trip or more later: a run dropped in between would drop the half-made
/// child, and nothing would learn which group to kill. The task finishes the spawn and wires the header up
/// whatever happens to the run; if the run is gone by then, it keeps the session open until the command ends,
/// which the run's [`GroupGuard`] sees to.
async fn start(
    host: &SshHost,
    cmd: &Command,
    input: Input,
    header: watch::Sender<Header>,
    lines: mpsc::UnboundedSender<(Stream, Vec<u8>)>,
) -> Result<(openssh::Child<Arc<Session>>, Feeder), HostError> {
    let token = host.process_log.as_ref().map(|log| log.spawning_on(&host.name, &cmd.program));
    let line = match &token {
        Some(token) => script::run_line(&cmd.clone().env(SPAWN_TOKEN_ENV, token)),
        None => script::run_line(cmd),
    };
    let record = host.process_log.clone().map(|log| Record {
        log,
        host: host.name.clone(),
        program: cmd.program.clone(),
        token,
    });
    let mut command = host.session.clone().arc_raw_command(&line);
    command
        .stdin(if input.piped() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut child = match spawn_session(&mut command).await {
            Ok(child) => child,
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return;
            }
        };
        if let Some(out) = child.stdout().take() {
            tokio::spawn(forward_stdout(out, header, lines.clone(), record));
        }
        if let Some(err) = child.stderr().take() {
            tokio::spawn(forward_lines(err, Stream::Stderr, lines));
        }
        let feeder = input.feed(child.stdin().take());
        if let Err(Ok((child, feeder))) = started_tx.send(Ok((child, feeder))) {
            // The run is gone: its guard kills the group once the header names it; until then the session
            // (and with it the header's way here) stays open. Its input stops, as a dropped run's does.
            drop(feeder);
            let _ = child.wait().await;
        }
    });
    match started_rx.await {
        Ok(Ok(started)) => Ok(started),
        Ok(Err(e)) => Err(host.connection(&e)),
        Err(_) => Err(host.closed()),
    }
}

/// A line of the program's: to the sink, and to the captured output.
fn deliver(lines: Option<&LineSink>, stream: Stream, line: &[u8], output: &mut Output) {
    if let Some(sink) = lines {
        let text = String::from_utf8_lossy(line);
        sink(text.trim_end_matches(['\n', '\r']));
    }
    match stream {
        Stream::Stdout => output.stdout.extend_from_slice(line),
        Stream::Stderr => output.stderr.extend_from_slice(line),
    }
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
        Header::Started(..) => {}
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
    let mut command = host.session.raw_command(&line);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = match spawn_session(&mut command).await {
        Ok(child) => child.wait_with_output().await,
        Err(e) => Err(e),
    };
    let out = match started {
        Ok(out) => out,
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(spawn_failed(std::io::Error::new(e.kind(), "the remote shell could not start /bin/sh")));
        }
        Err(e) => return Err(host.connection(&e)),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    match read_header(first.as_bytes()) {
        Header::Started(pid, _) => Ok(pid),
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

/// KILLs the remote process group if [`run`] is dropped before the command ended (a caller that dropped the
/// future instead of cancelling it): nothing it started may outlive it. The header may still be on its way, so
/// the background task waits for it (at most [`HEADER_WAIT`]).
struct GroupGuard {
    session: Arc<Session>,
    control: Arc<Semaphore>,
    header: watch::Receiver<Header>,
    armed: bool,
    /// Where the kill is recorded, and the host's name.
    log: Option<(Arc<ProcessLog>, String)>,
}

impl GroupGuard {
    fn new(host: &SshHost, header: watch::Receiver<Header>) -> Self {
        Self {
            session: host.session.clone(),
            control: host.control.clone(),
            header,
            armed: true,
            log: host.process_log.clone().map(|log| (log, host.name.clone())),
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let session = self.session.clone();
        let control = self.control.clone();
        let header = self.header.clone();
        let log = self.log.take();
        runtime.spawn(async move {
            let Ok(Some(pgid)) = tokio::time::timeout(HEADER_WAIT, started_group(header)).await else { return };
            let Ok(_permit) = control.acquire().await else { return };
            let line = script::op_line(ops::KILL_GROUP, &[&pgid.to_string()]);
            if session.raw_command(&line).output().await.is_ok()
                && let Some((log, host)) = log
            {
                log.ended_on(&host, pgid);
            }
        });
    }
}

/// The process group the header names, once it has come (`None`: the command never started).
async fn started_group(mut header: watch::Receiver<Header>) -> Option<u32> {
    let named = header.wait_for(|h| !matches!(h, Header::Pending)).await.ok()?;
    match *named {
        Header::Started(pgid, _) => Some(pgid),
        _ => None,
    }
}

/// What [`forward_stdout`] logs once the header names the group: that the program started on the host.
struct Record {
    log: Arc<ProcessLog>,
    host: String,
    program: String,
    token: Option<String>,
}

/// Reads a run's stdout: lines before the header are dropped, the header is published (and the group logged
/// for `zdd recover` as soon as it is known), the program's lines are forwarded. It runs on its own task, so a
/// guard can still learn the header after the run was dropped.
async fn forward_stdout(
    stdout: impl AsyncRead + Unpin,
    header: watch::Sender<Header>,
    tx: mpsc::UnboundedSender<(Stream, Vec<u8>)>,
    record: Option<Record>,
) {
    let mut reader = BufReader::new(stdout);
    let mut started = false;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) if !started => {
                let read = read_header(&line);
                if !matches!(read, Header::Pending) {
                    started = true;
                    if let (Header::Started(pgid, start), Some(r)) = (&read, &record) {
                        r.log.started_on(&r.host, *pgid, *start, &r.program, r.token.as_deref());
                    }
                    header.send_replace(read);
                }
            }
            Ok(_) => {
                if tx.send((Stream::Stdout, line)).is_err() {
                    break;
                }
            }
        }
    }
}

/// The first stdout line of a run or a detach.
fn read_header(line: &[u8]) -> Header {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    let started = text.strip_prefix(PID_HEADER).map(|rest| rest.split(' '));
    if let Some((Some(pid), start)) =
        started.map(|mut words| (words.next().and_then(|p| p.parse::<u32>().ok()), words.next()))
    {
        Header::Started(pid, start.and_then(|s| s.parse().ok()))
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
        assert!(matches!(read_header(b"zdd-pid 4242 987654\n"), Header::Started(4242, Some(987_654))));
        assert!(matches!(read_header(b"zdd-pid 4242 \n"), Header::Started(4242, None)), "no /proc: no start");
        assert!(matches!(read_header(b"zdd-pid 4242\n"), Header::Started(4242, None)), "a detached command's");
        assert!(
            matches!(read_header(b"zdd-spawn ENOENT no directory /x\n"), Header::NotStarted(r) if r.starts_with("ENOENT"))
        );
        assert!(matches!(read_header(b"hello\n"), Header::Pending));
    }
}
