//! The HTTP listener of the agent (`/healthz`, `/readyz`, `/metrics`, `POST
//! /hooks/git`) and of the web view, with bounds no client can stretch and room for
//! the kubelet's probes while slow clients hold connections.
//!
//! The probes share the listener with the webhook, so whatever a client of the webhook
//! can hold must never keep a probe from being answered: a liveness probe that times
//! out restarts a healthy agent. What a slow client can hold, and why it cannot starve
//! the others:
//!
//! - **A connection waiting for its request** (headers not finished, or a kept-alive
//!   connection between requests) is closed after [`HEADER_READ_TIMEOUT`], and, when
//!   all [`MAX_CONNECTIONS`] slots are taken, the one that has waited longest gives its
//!   slot to the newest connection at once. A probe sends its request as soon as it is
//!   connected and is answered within milliseconds, so it is never the one that has
//!   waited longest; a flood of connections that never finish their headers only
//!   displaces its own. New connections are accepted one at a time, each given a turn
//!   to read its request before the next is accepted, so a burst waiting in the
//!   kernel's queue cannot displace a probe before it was read.
//! - **Connections not accepted yet** wait in the kernel's queue, which [`bind`] makes
//!   [`LISTEN_BACKLOG`] long (the usual 128 overflowed under a burst of 500
//!   connections, and the kernel then drops new ones, a probe's included, for a second
//!   before the client tries again). The agent empties it as fast as connections come.
//! - **A connection whose answer is still being sent** (a client that does not read,
//!   or the web view's event stream) counts as waiting too: no client can hold slots
//!   by not reading, and an event stream displaced under a flood reconnects.
//! - **A connection in a request** (its handler running) is never displaced. Only the
//!   webhook's handler can last (reading a body, at most 10 s); the number of bodies
//!   read at once is bounded where they are read ([`crate::source::trigger`]), far
//!   below the slots, so handlers can never hold every slot.
//!
//! The alternatives: a second listener for the probes (controller-runtime's
//! health-probe bind address) protects only the configurations and manifests that
//! move their probes to it, and leaves `/metrics` beside the webhook; a limit per
//! client address does not tell a probe from a flood coming through the same proxy or
//! node, and the old fixed pool of 64 slots let 64 silent connections hold the listener
//! (more waited in the kernel's queue, the probe behind them).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The most connections held open at once. When all are taken, the connection that
/// has waited longest for its request is closed to make room for a new one.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers (the first request of a
/// connection, and each next one on a kept-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the kernel queues for the agent to accept (capped by
/// `net.core.somaxconn`, 4096 by default on Linux).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` with a [`LISTEN_BACKLOG`]-long queue of connections to accept.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted agent binds while its old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The open connections, by the order they were accepted.
#[derive(Default)]
struct Slots(Mutex<BTreeMap<u64, Slot>>);

struct Slot {
    /// Its handler is running: it keeps its slot.
    serving: bool,
    /// Since when it waits for a request (accepted, or its last answer given).
    waiting_since: Instant,
    /// Told when its slot is given to a newer connection.
    displaced: Arc<Notify>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for connection `id`, displacing the connection that has waited longest
    /// for its request when every slot is taken; `None` when every slot is in a
    /// request.
    fn admit(&self, id: u64) -> Option<Arc<Notify>> {
        let mut open = self.lock();
        if open.len() >= MAX_CONNECTIONS {
            let oldest = open
                .iter()
                .filter(|(_, s)| !s.serving)
                .min_by_key(|(_, s)| s.waiting_since)
                .map(|(id, _)| *id)?;
            if let Some(slot) = open.remove(&oldest) {
                slot.displaced.notify_one();
            }
        }
        let displaced = Arc::new(Notify::new());
        open.insert(
            id,
            Slot {
                serving: false,
                waiting_since: Instant::now(),
                displaced: displaced.clone(),
            },
        );
        Some(displaced)
    }

    fn set_serving(&self, id: u64, serving: bool) {
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.serving = serving;
            slot.waiting_since = Instant::now();
        }
    }

    fn release(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Marks its connection as in a request until dropped (the handler finished, or its
/// connection went away).
struct Serving {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.slots.set_serving(self.id, false);
    }
}

/// A connection's service: the routes, with the connection marked as in a request
/// while a handler runs.
struct Tracked<S> {
    inner: S,
    slots: Arc<Slots>,
    id: u64,
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        self.slots.set_serving(self.id, true);
        let serving = Serving {
            slots: self.slots.clone(),
            id: self.id,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let r = answer.await;
            drop(serving);
            r
        })
    }
}

/// Serves `routes` on `listener` under the bounds described in the module
/// documentation: at most [`MAX_CONNECTIONS`] connections, the one waiting longest
/// for its request displaced by a new one, each closed when its headers take longer
/// than [`HEADER_READ_TIMEOUT`]. (Bodies are bounded where they are read,
/// [`crate::source::trigger`].)
pub async fn serve(listener: tokio::net::TcpListener, routes: axum::Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(Slots::default());
    for id in 0u64.. {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, mostly: wait instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Every slot is in a request (cannot happen while handlers that last are
        // bounded below the slots): refuse at once, which keeps the queue moving.
        let Some(displaced) = slots.admit(id) else {
            tracing::debug!("connection refused: every slot is in a request");
            continue;
        };
        let service = Tracked {
            inner: hyper_util::service::TowerToHyperService::new(routes.clone()),
            slots: slots.clone(),
            id,
        };
        let slots = slots.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // A request already read is answered before a displacement is seen.
                biased;
                r = connection => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection closed");
                    }
                }
                _ = displaced.notified() => {
                    tracing::debug!("connection waiting for its request displaced by a newer one");
                }
            }
            slots.release(id);
        });
        // The new connection reads its request (a probe's is already there) before
        // the next accepted one may displace it.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_displaces_the_one_waiting_longest_and_never_one_in_a_request() {
        let slots = Slots::default();
        let mut told = Vec::new();
        for id in 0..MAX_CONNECTIONS as u64 {
            told.push(slots.admit(id).unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
        // The oldest is in a request: the second oldest makes room.
        slots.set_serving(0, true);
        slots.admit(100).unwrap();
        let open = slots.lock();
        assert_eq!(open.len(), MAX_CONNECTIONS);
        assert!(open.contains_key(&0) && !open.contains_key(&1) && open.contains_key(&100));
        drop(open);
        // Every slot in a request: a new connection is refused, none displaced.
        for id in 2..MAX_CONNECTIONS as u64 {
            slots.set_serving(id, true);
        }
        slots.set_serving(100, true);
        assert!(slots.admit(101).is_none());
        assert_eq!(slots.lock().len(), MAX_CONNECTIONS);
        // A finished request waits again, from now: it is the one displaced next.
        slots.set_serving(5, false);
        slots.admit(102).unwrap();
        assert!(!slots.lock().contains_key(&5));
    }
}
