//! A command's standard input: nothing, bytes given whole ([`Command::stdin`]), or a stream fed as the command
//! reads it ([`Host::run_streaming`](super::Host::run_streaming)), for what is too large to hold (a release
//! archive). Either way it is written on a task of its own, so a command that prints while it reads cannot
//! deadlock against zdd.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use super::Command;

/// A stream to feed a command's stdin from, read as the command takes it in.
pub type InputStream = Box<dyn AsyncRead + Send + Unpin>;

/// How much of a stream is read before it is written on: at most this much of it is in zdd's memory.
const CHUNK: usize = 64 * 1024;

/// How long a command's end waits for its feeding task to end too (see [`Feeder::finish`]).
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// What goes to a command's stdin.
pub(crate) enum Input {
    Null,
    Bytes(Vec<u8>),
    Stream(InputStream),
}

impl Input {
    /// The command's own bytes, or `stream` instead.
    pub(crate) fn of(cmd: &Command, stream: Option<InputStream>) -> Self {
        match (stream, &cmd.stdin) {
            (Some(stream), _) => Self::Stream(stream),
            (None, Some(bytes)) => Self::Bytes(bytes.clone()),
            (None, None) => Self::Null,
        }
    }

    /// Does the command get a pipe (else `/dev/null`)?
    pub(crate) fn piped(&self) -> bool {
        !matches!(self, Self::Null)
    }

    /// Write the input into `pipe` (the command's stdin) on a task of its own, then close it.
    pub(crate) fn feed<W: AsyncWrite + Unpin + Send + 'static>(self, pipe: Option<W>) -> Feeder {
        let Some(mut pipe) = pipe else { return Feeder(None) };
        let task = match self {
            Self::Null => return Feeder(None),
            // A command that does not read its input closes the pipe: the write error is not its failure.
            Self::Bytes(bytes) => tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
                Ok(())
            }),
            Self::Stream(mut stream) => tokio::spawn(async move {
                let mut buffer = vec![0; CHUNK];
                loop {
                    let n = stream.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    if pipe.write_all(&buffer[..n]).await.is_err() {
                        return Ok(());
                    }
                }
                let _ = pipe.shutdown().await;
                Ok(())
            }),
        };
        Feeder(Some(task))
    }
}

/// The task writing a command's input.
pub(crate) struct Feeder(Option<JoinHandle<std::io::Result<()>>>);

impl Feeder {
    /// Once the command ended: the error reading the input stream, if that is why it ended. Input the command
    /// left unread is not an error (the task is stopped).
    pub(crate) async fn finish(mut self) -> std::io::Result<()> {
        let Some(mut task) = self.0.take() else { return Ok(()) };
        // A failed read closes the pipe as the task ends, so the command may end a moment before the task is
        // seen to: wait that moment, not for input the command never read.
        if let Ok(result) = tokio::time::timeout(FINISH_WAIT, &mut task).await {
            return result.unwrap_or(Ok(()));
        }
        task.abort();
        Ok(())
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        // A run that is dropped or cancelled stops feeding its command.
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
