//! Which server runs a service's application, and its command line: gunicorn with its sync workers (a WSGI
//! application), gunicorn with uvicorn's worker class (an ASGI application: WebSockets, async views, Channels),
//! or uvicorn on its own (ASGI). All three listen on the same socket or port as the slot says, so the switch and
//! the drain do not change; an ASGI server can hold WebSockets open, which `drain-stop` gives a budget
//! (see `drain_stop`).
//!
//! Why these stop cleanly: gunicorn's TERM is its graceful stop; uvicorn (alone or as gunicorn's worker) on TERM
//! stops accepting, then closes every open WebSocket with close code 1012 (Service Restart) and every idle
//! keep-alive connection, and waits for the requests in hand (`Server.shutdown` → `connection.shutdown()` in
//! uvicorn's `protocols/websockets/*_impl.py`).

use serde::{Deserialize, Serialize};

/// The `server` field's words.
pub const SERVERS: &[&str] = &["gunicorn", "uvicorn-worker", "uvicorn"];

/// gunicorn's worker class for ASGI, from the `uvicorn-worker` package (uvicorn's own `uvicorn.workers` is
/// deprecated in its favour).
pub const UVICORN_WORKER_CLASS: &str = "uvicorn_worker.UvicornWorker";

/// What runs the instance's application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Server {
    /// gunicorn with its sync workers: a WSGI application (`wsgi`).
    #[default]
    Gunicorn,
    /// gunicorn with `-k uvicorn_worker.UvicornWorker`: an ASGI application (`asgi`), gunicorn's master (its
    /// systemd notification, worker supervision and graceful TERM) over uvicorn's event loop.
    UvicornWorker,
    /// uvicorn alone (`--workers N`): an ASGI application, with no gunicorn in the release.
    Uvicorn,
}

impl Server {
    /// From the `server` field (validation allowed only [`SERVERS`]).
    pub fn from_word(word: Option<&str>) -> Self {
        match word {
            Some("uvicorn-worker") => Self::UvicornWorker,
            Some("uvicorn") => Self::Uvicorn,
            _ => Self::Gunicorn,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Gunicorn => "gunicorn",
            Self::UvicornWorker => "uvicorn-worker",
            Self::Uvicorn => "uvicorn",
        }
    }

    /// Serves ASGI, so may hold WebSockets open.
    pub fn is_asgi(self) -> bool {
        self != Self::Gunicorn
    }

    /// The field that names the application this server loads.
    pub fn application_field(self) -> &'static str {
        if self.is_asgi() { "asgi" } else { "wsgi" }
    }

    /// The program in the venv's `bin/`.
    pub fn program(self) -> &'static str {
        match self {
            Self::Gunicorn | Self::UvicornWorker => "gunicorn",
            Self::Uvicorn => "uvicorn",
        }
    }

    /// What the systemd unit waits for: gunicorn's master tells systemd when it is up (`Type=notify`);
    /// uvicorn does not, so its unit is up once the program runs (`Type=exec`; the health gate waits for it).
    pub fn systemd_type(self) -> &'static str {
        match self {
            Self::Gunicorn | Self::UvicornWorker => "notify",
            Self::Uvicorn => "exec",
        }
    }
}

/// What is wrong when a service step's `server` lacks the field that names its application (`wsgi` or
/// `asgi`): the message and the help. The other field may be there too (a shared fragment passes both, and
/// `server` picks).
pub fn missing_application(server: Server, wsgi_given: bool, asgi_given: bool) -> Option<(String, String)> {
    let field = server.application_field();
    if (server.is_asgi() && asgi_given) || (!server.is_asgi() && wsgi_given) {
        return None;
    }
    let help = if server.is_asgi() {
        "add `asgi \"<project>.asgi:application\"` (Django's `asgi.py`)".to_owned()
    } else if asgi_given {
        "an ASGI application needs an ASGI server: add `server \"uvicorn-worker\"` (or `\"uvicorn\"`)".to_owned()
    } else {
        "add `wsgi \"<project>.wsgi:application\"` (Django's `wsgi.py`)".to_owned()
    };
    Some((format!("server `{}` needs `{field}`", server.word()), help))
}

/// What a server's command line is made of, apart from the program.
#[derive(Debug)]
pub struct Launch<'a> {
    pub application: &'a str,
    /// gunicorn's `--bind` form: `unix:<path>` or `127.0.0.1:<port>`.
    pub bind: &'a str,
    pub workers: i64,
    pub graceful_s: u64,
}

/// The arguments after the program of a `uvicorn` instance. uvicorn has no worker timeout (an async worker is
/// never silent while its loop runs); its graceful timeout bounds the wait for requests in hand on TERM.
pub fn uvicorn_args(launch: &Launch<'_>) -> Vec<String> {
    let mut args = vec![launch.application.to_owned()];
    if let Some(path) = launch.bind.strip_prefix("unix:") {
        args.extend(["--uds".to_owned(), path.to_owned()]);
    } else {
        let (host, port) = launch.bind.rsplit_once(':').unwrap_or((launch.bind, ""));
        args.extend(["--host".to_owned(), host.to_owned(), "--port".to_owned(), port.to_owned()]);
    }
    args.extend([
        "--workers".to_owned(),
        launch.workers.to_string(),
        "--timeout-graceful-shutdown".to_owned(),
        launch.graceful_s.to_string(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(bind: &str) -> Launch<'_> {
        Launch { application: "mysite.asgi:application", bind, workers: 2, graceful_s: 30 }
    }

    #[test]
    fn uvicorn_listens_where_the_slot_says() {
        let socket = uvicorn_args(&launch("unix:/srv/shop/run/a.sock"));
        assert_eq!(socket[..3], ["mysite.asgi:application", "--uds", "/srv/shop/run/a.sock"]);
        let port = uvicorn_args(&launch("127.0.0.1:8001"));
        assert_eq!(port[1..5], ["--host", "127.0.0.1", "--port", "8001"]);
        assert!(port.windows(2).any(|w| w == ["--timeout-graceful-shutdown", "30"]), "{port:?}");
    }

    #[test]
    fn each_server_needs_its_own_application() {
        assert_eq!(missing_application(Server::Gunicorn, true, true), None);
        assert_eq!(missing_application(Server::Uvicorn, false, true), None);
        let (message, help) = missing_application(Server::Gunicorn, false, true).unwrap();
        assert_eq!(message, "server `gunicorn` needs `wsgi`");
        assert!(help.contains("uvicorn-worker"), "{help}");
        let (message, _) = missing_application(Server::UvicornWorker, true, false).unwrap();
        assert_eq!(message, "server `uvicorn-worker` needs `asgi`");
    }

    #[test]
    fn words_round_trip() {
        for word in SERVERS {
            assert_eq!(Server::from_word(Some(word)).word(), *word);
        }
        assert_eq!(Server::from_word(None), Server::Gunicorn);
        assert!(Server::Uvicorn.is_asgi() && !Server::Gunicorn.is_asgi());
    }
}
