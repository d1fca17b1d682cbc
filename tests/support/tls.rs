//! HTTPS for the tests: a self-signed certificate made with `openssl req -x509` in the test's directory, a
//! rustls client configuration that trusts exactly that certificate (no system roots, verification on), and a
//! one-shot HTTP/1.1 GET over TLS or plain TCP for the checks before and after a deploy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;

pub(crate) const OPENSSL: &str = "/usr/bin/openssl";

/// A certificate for `localhost` and 127.0.0.1, its key, and a client that trusts it.
pub(crate) struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
}

impl SelfSigned {
    /// A P-256 certificate valid for two days, an end-entity one (`CA:FALSE`: webpki refuses a CA certificate
    /// as a server's), its own issuer.
    pub(crate) fn generate(dir: &Path) -> SelfSigned {
        std::fs::create_dir_all(dir).expect("tls dir");
        let (cert, key) = (dir.join("site.pem"), dir.join("site.key"));
        super::proc::run(
            "openssl req -x509",
            Command::new(OPENSSL)
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-days", "2", "-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let pem = std::fs::read(&cert).expect("read the certificate");
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(der.expect("a PEM certificate")).expect("trust the certificate");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        SelfSigned { cert, key, client: Arc::new(client) }
    }
}

/// `GET <path>` on 127.0.0.1:`port` with `Connection: close`, over TLS when `tls` is given: the whole response
/// as text (status line, headers, body), or `None` when the connection or the handshake failed.
pub(crate) fn get(port: u16, path: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Option<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    if let Some(config) = tls {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
        let connection = rustls::ClientConnection::new(config.clone(), name).ok()?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        stream.write_all(request.as_bytes()).ok()?;
        // Nginx may close without close_notify; what arrived is the answer.
        let _ = stream.read_to_end(&mut response);
    } else {
        tcp.write_all(request.as_bytes()).ok()?;
        let _ = tcp.read_to_end(&mut response);
    }
    (!response.is_empty()).then(|| String::from_utf8_lossy(&response).into_owned())
}

/// A response header's value (case-insensitive name).
pub(crate) fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a response.
pub(crate) fn status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}
