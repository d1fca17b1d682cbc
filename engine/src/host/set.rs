//! [`HostSet`]: the hosts one run acts on: this machine, and one connection per SSH destination the plan names.
//!
//! Each step acts on the host its plan step names ([`crate::plan::Step::host`]), and its undo on the host its
//! journal entry names, so a rollback and `zdd recover` act where the step ran. A destination that could not be
//! connected to is held as an [`Unreachable`] host: every operation on it fails naming the host and why, so a step
//! or an undo there fails plainly (and `zdd recover` can be run again once the host answers) instead of acting on
//! another machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    Account, Command, Destination, Endpoint, FileStat, Host, HostError, InputStream, LineSink, LocalHost, Output,
    Reached, SshHost, SshOptions, UserRef,
};

/// The hosts of one run, by SSH destination, and this machine for steps that name none.
#[derive(Clone, Debug)]
pub struct HostSet {
    local: Arc<dyn Host>,
    remote: BTreeMap<String, Arc<dyn Host>>,
    /// How the SSH hosts were reached: `recover` reaches the hosts of a killed run's process log the same way.
    ssh_options: SshOptions,
}

impl HostSet {
    /// Only this machine.
    pub fn local(local: Arc<dyn Host>) -> Self {
        Self { local, remote: BTreeMap::new(), ssh_options: SshOptions::default() }
    }

    /// Act on `host` for steps naming `destination`.
    pub fn insert(&mut self, destination: impl Into<String>, host: Arc<dyn Host>) {
        self.remote.insert(destination.into(), host);
    }

    /// The host of a step: this machine for `None`; for a destination not in the set, a host that refuses
    /// every operation naming it (the run connected to every host it names, so only a journal naming a host
    /// the plan no longer does gets there).
    pub fn get(&self, destination: Option<&str>) -> Arc<dyn Host> {
        match destination {
            None => self.local.clone(),
            Some(d) => self.remote.get(d).cloned().unwrap_or_else(|| {
                Arc::new(Unreachable { name: d.to_owned(), why: "zdd did not connect to this host".to_owned() })
            }),
        }
    }

    /// The options the SSH hosts were connected with (the plan's ssh config).
    pub fn ssh_options(&self) -> &SshOptions {
        &self.ssh_options
    }

    /// The SSH destinations in the set.
    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.remote.keys().map(String::as_str)
    }

    /// Connect to every one of `destinations` at once (each authenticating now, so an unknown host key or a
    /// refused key fails here). A destination that failed is added as [`Unreachable`] and returned with why.
    /// With a `process_log`, each host records the process groups it starts there, for `recover`.
    pub async fn connect<'a>(
        &mut self,
        destinations: impl IntoIterator<Item = &'a str>,
        options: &SshOptions,
        process_log: Option<&Path>,
    ) -> Vec<(String, HostError)> {
        self.ssh_options = options.clone();
        let process_log: Option<PathBuf> = process_log.map(Path::to_path_buf);
        let mut tasks = tokio::task::JoinSet::new();
        for name in destinations {
            if self.remote.contains_key(name) {
                continue;
            }
            let (name, options, log) = (name.to_owned(), options.clone(), process_log.clone());
            tasks.spawn(async move {
                let connected = match Destination::parse(&name) {
                    Ok(d) => SshHost::connect(&d, &options).await.map(|host| match log {
                        Some(log) => host.with_process_log(log),
                        None => host,
                    }),
                    Err(e) => Err(HostError::Connection { host: name.clone(), message: e.to_string() }),
                };
                (name, connected)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, connected)) = joined else { continue };
            match connected {
                Ok(host) => self.insert(name, Arc::new(host)),
                Err(e) => {
                    self.insert(name.clone(), Arc::new(Unreachable { name: name.clone(), why: e.to_string() }));
                    failed.push((name, e));
                }
            }
        }
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        failed
    }
}

/// A host zdd could not connect to: every operation fails with [`HostError::Connection`] naming it.
#[derive(Debug)]
pub struct Unreachable {
    pub name: String,
    pub why: String,
}

impl Unreachable {
    fn refused<T>(&self) -> Result<T, HostError> {
        Err(HostError::Connection { host: self.name.clone(), message: format!("unreachable: {}", self.why) })
    }
}

#[async_trait]
impl Host for Unreachable {
    fn name(&self) -> &str {
        &self.name
    }

    fn local(&self) -> Option<&LocalHost> {
        None
    }

    async fn run(&self, _: &Command, _: &CancellationToken, _: Option<&LineSink>) -> Result<Output, HostError> {
        self.refused()
    }

    async fn run_streaming(
        &self,
        _: &Command,
        _: InputStream,
        _: &CancellationToken,
        _: Option<&LineSink>,
    ) -> Result<Output, HostError> {
        self.refused()
    }

    async fn reach(&self, _: &Endpoint) -> Result<Reached, HostError> {
        self.refused()
    }

    async fn spawn_detached(&self, _: &Command, _: &Path) -> Result<u32, HostError> {
        self.refused()
    }

    async fn read_file(&self, _: &Path) -> Result<Option<Vec<u8>>, HostError> {
        self.refused()
    }

    async fn write_file(&self, _: &Path, _: &[u8], _: u32) -> Result<(), HostError> {
        self.refused()
    }

    async fn swap_symlink(&self, _: &Path, _: &Path) -> Result<(), HostError> {
        self.refused()
    }

    async fn read_link(&self, _: &Path) -> Result<Option<std::path::PathBuf>, HostError> {
        self.refused()
    }

    async fn exists(&self, _: &Path) -> Result<bool, HostError> {
        self.refused()
    }

    async fn create_dir_all(&self, _: &Path) -> Result<(), HostError> {
        self.refused()
    }

    async fn remove_all(&self, _: &Path) -> Result<(), HostError> {
        self.refused()
    }

    async fn list_dir(&self, _: &Path) -> Result<Vec<String>, HostError> {
        self.refused()
    }

    async fn process_alive(&self, _: u32) -> Result<bool, HostError> {
        self.refused()
    }

    async fn signal(&self, _: u32, _: &str) -> Result<(), HostError> {
        self.refused()
    }

    async fn stat(&self, _: &Path) -> Result<Option<FileStat>, HostError> {
        self.refused()
    }

    async fn account(&self, _: &UserRef, _: Option<u32>) -> Result<Option<Account>, HostError> {
        self.refused()
    }

    async fn group_id(&self, _: &str) -> Result<Option<u32>, HostError> {
        self.refused()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_without_host_runs_here_and_an_unconnected_one_fails_naming_its_host() {
        let set = HostSet::local(Arc::new(LocalHost::new()));
        assert_eq!(set.get(None).name(), "local");
        let missing = set.get(Some("web9"));
        let err = missing.exists(Path::new("/")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("web9") && err.contains("did not connect"), "{err}");
    }

    #[tokio::test]
    async fn a_destination_that_cannot_be_parsed_is_unreachable_not_a_panic() {
        let mut set = HostSet::local(Arc::new(LocalHost::new()));
        let failed = set.connect(["-oProxyCommand=x"], &SshOptions::default(), None).await;
        assert_eq!(failed.len(), 1);
        assert!(set.get(Some("-oProxyCommand=x")).exists(Path::new("/")).await.is_err());
    }
}
