//! Wake-ups for the shared queue: a connection of its own that `LISTEN`s
//! on `groundcrew_tasks` and counts the notifications, which enqueues,
//! completions and rescues send (at their commit) with the pool's name.
//!
//! A lost connection is opened again with backoff; notifications sent
//! meanwhile are lost, which the nodes' slow poll makes up for. Each
//! reconnect counts as a wake-up, since something may have been missed.

use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::connection::Backoff;

/// The channel every wake-up goes to.
pub(super) const CHANNEL: &str = "groundcrew_tasks";

/// Starts listening on `runtime`; the receiver's value changes
/// with every notification (and every reconnect). Stops once every
/// receiver is gone.
pub(super) fn start(runtime: &Handle, config: Config, target: String) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    runtime.spawn(async move {
        let mut backoff = Backoff::default();
        while !tx.is_closed() {
            match listen(&config, &tx).await {
                Ok(()) => backoff.succeeded(),
                Err(e) => {
                    if !backoff.failing() {
                        tracing::warn!(target = %target, error = %crate::entities::error_chain(&e),
                            "lost the wake-up connection to PostgreSQL; polling until it is back");
                    }
                    backoff.failed();
                }
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    });
    rx
}

/// One connection's life: returns when it closes.
async fn listen(config: &Config, tx: &watch::Sender<u64>) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            if messages_tx.send(message).is_err() {
                break;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    tx.send_modify(|n| *n += 1);
    let outcome = loop {
        match messages.recv().await {
            Some(Ok(AsyncMessage::Notification(_))) => tx.send_modify(|n| *n += 1),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
        if tx.is_closed() {
            break Ok(());
        }
    };
    driver.abort();
    outcome
}
