//! Network endpoints of a host, and how zdd's own process reaches them ([`Host::reach`](super::Host::reach)).
//!
//! A probe (health gate, smoke check, the proxy switch's confirmation, the `http` kind) names what it connects
//! to as the host sees it: a unix socket path or a TCP address of that host (`127.0.0.1:8001` is the host's
//! loopback, not zdd's). On this machine that is where zdd connects; on an SSH host it is the far end of a
//! forward, and zdd connects to the forward's local unix socket instead.

use std::path::{Path, PathBuf};

/// Something a host listens on, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A unix socket path on the host.
    Unix(PathBuf),
    /// A TCP address the host resolves and connects to (a name, an IPv4 address or an IPv6 one without brackets).
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Where zdd's own process connects to reach an [`Endpoint`] of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The endpoint itself: the host is this machine, so a client connects as it would without a host.
    Direct(Endpoint),
    /// A unix socket on zdd's machine that leads to the endpoint (an SSH forward). Every connection goes to
    /// it, whatever address the request names: the request itself (URL, `Host` header) stays as written.
    Forwarded(PathBuf),
}

impl Reached {
    /// The unix socket to connect to instead of resolving the request's address, if any.
    pub fn unix_socket(&self) -> Option<&Path> {
        match self {
            Self::Direct(Endpoint::Unix(path)) | Self::Forwarded(path) => Some(path),
            Self::Direct(Endpoint::Tcp { .. }) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_display_as_addresses() {
        assert_eq!(Endpoint::Unix("/srv/shop/run/a.sock".into()).to_string(), "unix:/srv/shop/run/a.sock");
        assert_eq!(Endpoint::Tcp { host: "127.0.0.1".into(), port: 8001 }.to_string(), "127.0.0.1:8001");
        assert_eq!(Endpoint::Tcp { host: "::1".into(), port: 80 }.to_string(), "[::1]:80");
    }

    #[test]
    fn a_direct_tcp_endpoint_needs_no_socket() {
        let tcp = Endpoint::Tcp { host: "localhost".into(), port: 80 };
        assert_eq!(Reached::Direct(tcp).unix_socket(), None);
        let unix = Reached::Direct(Endpoint::Unix("/run/a.sock".into()));
        assert_eq!(unix.unix_socket(), Some(Path::new("/run/a.sock")));
        assert_eq!(Reached::Forwarded("/tmp/f".into()).unix_socket(), Some(Path::new("/tmp/f")));
    }
}
