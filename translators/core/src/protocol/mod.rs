//! `protocol/client` and `protocol/server`: the two ends of a brick connection.
//!
//! One TCP connection per client↔brick pair carries every request, multiplexed by request
//! id, in the frame format of [`crate::wire::frame`].

pub mod auth;
pub mod client;
pub mod server;
#[cfg(test)]
mod tests;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::wire::frame::{OutFrame, write_frame};

/// Frames waiting to be written on one connection.
pub(crate) const SEND_QUEUE: usize = 1024;

/// Spawns the task that writes queued frames to `w`, batching whatever is queued into one
/// flush. It ends when the queue closes or a write fails.
pub(crate) fn spawn_writer<W>(w: W, mut rx: mpsc::Receiver<OutFrame>) -> JoinHandle<()>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 * 1024, w);
        while let Some(frame) = rx.recv().await {
            if write_frame(&mut w, &frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if write_frame(&mut w, &frame).await.is_err() {
                    return;
                }
            }
            if w.flush().await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    })
}
