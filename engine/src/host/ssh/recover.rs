//! `zdd recover` on SSH hosts: the process groups a killed run left on remote hosts, found in the run's process
//! log (see [`process_log`](crate::host::local::process_log)), stopped over a new connection to each host.

use std::path::Path;
use std::time::Duration;

use super::{Destination, SshHost, SshOptions};
use crate::host::HostError;
use crate::host::local::process_log::{self, RemoteLeftover};

/// What recover did on one host.
#[derive(Debug)]
pub struct Stopped {
    /// The host's destination, as the log names it.
    pub host: String,
    /// The groups that were still running and are stopped now; or why the host could not be asked.
    pub groups: Result<Vec<RemoteLeftover>, HostError>,
}

impl Stopped {
    /// Did every group of this host get stopped (or was gone already)?
    pub fn done(&self) -> bool {
        self.groups.is_ok()
    }
}

/// Stop, on every remote host the log names, the groups it says started and did not end (TERM, KILL after
/// `grace`), connecting with `options`. A group whose leader is another process now is left alone.
/// Commands the log saw being started but whose group it never learnt are found on their host by their spawn
/// token first.
pub async fn stop_remote_leftovers(log: &Path, options: &SshOptions, grace: Duration) -> Vec<Stopped> {
    let mut groups = process_log::remote_leftovers(log);
    let mut spawning = process_log::remote_spawning(log);
    for host in spawning.keys() {
        groups.entry(host.clone()).or_default();
    }
    let mut report = Vec::new();
    for (host, groups) in groups {
        let tokens = spawning.remove(&host).unwrap_or_default();
        let groups = stop_on(&host, groups, &tokens, options, grace).await;
        report.push(Stopped { host, groups });
    }
    report
}

async fn stop_on(
    host: &str,
    mut groups: Vec<RemoteLeftover>,
    tokens: &[(String, String)],
    options: &SshOptions,
    grace: Duration,
) -> Result<Vec<RemoteLeftover>, HostError> {
    let destination = Destination::parse(host)
        .map_err(|e| HostError::Connection { host: host.to_owned(), message: e.to_string() })?;
    let ssh = SshHost::connect(&destination, options).await?;
    for (token, program) in tokens {
        for found in ssh.find_spawned(token, program).await? {
            if !groups.iter().any(|g| g.pgid == found.pgid) {
                groups.push(found);
            }
        }
    }
    let mut stopped = Vec::new();
    for group in &groups {
        if ssh.stop_leftover(group, grace).await? {
            stopped.push(group.clone());
        }
    }
    Ok(stopped)
}
