//! WebSocket clients for 127.0.0.1 only (tokio-tungstenite, each on its own thread and runtime): a client that
//! connects through Nginx, checks the echo, then stays open until the server closes it — or closes it itself
//! after a while — and says how its connection ended. A close frame with a code is a clean end; a connection
//! that ended without one (a reset, EOF: what browsers report as 1006) is not.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// How a client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client closed it (1000), and the server answered the close.
    ClosedByClient,
    /// The server sent a close frame with this code (1012: Service Restart).
    ClosedByServer(u16),
    /// No close frame: a reset, an EOF, a protocol error (1006 in a browser).
    Abnormal(String),
    /// Still open when the client gave up waiting.
    StillOpen,
}

/// What a client saw.
#[derive(Debug, Clone)]
pub(crate) struct ClientReport {
    /// The version that answered its first echo (`<version>:hello`).
    pub version: String,
    pub ending: Ending,
}

/// A connected client, waiting on its thread.
pub(crate) struct Client {
    handle: JoinHandle<Result<ClientReport, String>>,
}

/// `ws://127.0.0.1:<port><path>`.
fn url(port: u16, path: &str) -> String {
    format!("ws://127.0.0.1:{port}{path}")
}

/// The version in an echo of `hello`.
fn echoed_version(text: &str) -> Option<String> {
    text.strip_suffix(":hello").map(str::to_string)
}

impl Client {
    /// Connects and checks one echo before returning (so the connection is open when this returns); then the
    /// client waits up to `wait` for the server to close it, or closes it itself after `close_after`.
    pub(crate) fn connect(
        port: u16,
        path: &str,
        close_after: Option<Duration>,
        wait: Duration,
    ) -> Result<Client, String> {
        let url = url(port, path);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let handle = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let connected = async {
                    let (mut ws, _) =
                        tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| e.to_string())?;
                    ws.send(Message::text("hello")).await.map_err(|e| e.to_string())?;
                    let version = match ws.next().await {
                        Some(Ok(Message::Text(text))) => {
                            echoed_version(text.as_str()).ok_or_else(|| format!("unexpected echo {text:?}"))?
                        }
                        other => return Err(format!("no echo: {other:?}")),
                    };
                    Ok::<_, String>((ws, version))
                };
                let (mut ws, version) = match connected.await {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let mut closing = false;
                let deadline = tokio::time::sleep(wait);
                tokio::pin!(deadline);
                let close_timer = tokio::time::sleep(close_after.unwrap_or(wait));
                tokio::pin!(close_timer);
                let ending = loop {
                    tokio::select! {
                        () = &mut deadline => break Ending::StillOpen,
                        () = &mut close_timer, if close_after.is_some() && !closing => {
                            closing = true;
                            if let Err(e) = ws.close(None).await {
                                break Ending::Abnormal(format!("closing: {e}"));
                            }
                        }
                        message = ws.next() => match message {
                            Some(Ok(Message::Close(frame))) => {
                                // Read on until the server ends the TCP connection (the closing handshake).
                                while let Some(Ok(_)) = ws.next().await {}
                                break if closing {
                                    Ending::ClosedByClient
                                } else {
                                    Ending::ClosedByServer(frame.map_or(1005, |f| u16::from(f.code)))
                                };
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break Ending::Abnormal(e.to_string()),
                            None => break Ending::Abnormal("the connection ended without a close frame".into()),
                        },
                    }
                };
                Ok(ClientReport { version, ending })
            })
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Client { handle }),
            Ok(Err(e)) => Err(format!("WebSocket {path}: {e}")),
            Err(_) => Err(format!("WebSocket {path}: no echo within 30 s")),
        }
    }

    /// Waits for the client to end and says how it did.
    pub(crate) fn finish(self) -> Result<ClientReport, String> {
        self.handle.join().map_err(|_| "the WebSocket client panicked".to_string())?
    }
}

/// One echo on a new connection, closed at once: the version that answers new connections.
pub(crate) fn echo_version(port: u16, path: &str) -> Result<String, String> {
    Client::connect(port, path, Some(Duration::ZERO), Duration::from_secs(10))?.finish().map(|r| r.version)
}
