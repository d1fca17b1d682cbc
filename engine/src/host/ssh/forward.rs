//! [`SshHost`](super::SshHost)'s forwards: a host's endpoints made reachable from zdd's process, for probes.
//!
//! Each endpoint is forwarded once (what `ssh -L LOCAL.sock:ENDPOINT` does, asked of the master over its mux
//! socket) to a unix socket in the connection's own directory, beside the control socket: 0700 and ours, so no
//! other user of this machine can connect through it, and short enough for a socket path. The master closes the
//! forwards when it exits, and the directory goes with the connection.
//!
//! A forward is made before the endpoint listens (a health gate polls an instance that is still starting): sshd
//! connects to the endpoint for each connection zdd makes, and one it cannot connect is closed at once, which a
//! probe sees as a connection closed before it answered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use openssh::{ForwardType, Session, Socket};
use tokio::sync::Mutex;

use super::control::SOCKET_PATH_MAX;
use crate::host::Endpoint;

/// The forwards of one connection, by endpoint.
#[derive(Debug)]
pub(super) struct Forwards {
    /// The connection's private directory (where its control socket is).
    dir: PathBuf,
    made: Mutex<HashMap<Endpoint, PathBuf>>,
}

impl Forwards {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir, made: Mutex::new(HashMap::new()) }
    }

    /// The local socket that leads to `endpoint` on the host, forwarded now if it was not before.
    pub(super) async fn reach(&self, session: &Session, endpoint: &Endpoint) -> Result<PathBuf, ForwardError> {
        // Held while forwarding, so that two probes of one endpoint at once make one forward.
        let mut made = self.made.lock().await;
        if let Some(local) = made.get(endpoint) {
            return Ok(local.clone());
        }
        let local = self.dir.join(format!("fwd{}", made.len()));
        if local.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(ForwardError::PathTooLong(local));
        }
        let remote = match endpoint {
            Endpoint::Unix(path) => Socket::from(path.as_path()),
            Endpoint::Tcp { host, port } => Socket::new(host.as_str(), *port),
        };
        session
            .request_port_forward(ForwardType::Local, Socket::from(local.as_path()), remote)
            .await
            .map_err(ForwardError::Refused)?;
        made.insert(endpoint.clone(), local.clone());
        Ok(local)
    }
}

/// Why an endpoint could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(super) enum ForwardError {
    #[error("the forward's socket path {} is too long for a unix socket", .0.display())]
    PathTooLong(PathBuf),
    #[error("the master refused the forward: {0}")]
    Refused(#[source] openssh::Error),
}

/// The connection's directory: where its control socket is.
pub(super) fn connection_dir(session: &Session) -> PathBuf {
    session.control_socket().parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
