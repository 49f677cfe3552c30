//! The route port and route dialing: the I/O half of `core/src/server/routes.rs`.
//!
//! The machine decides what to dial (`Server::poll_dial`, drained after
//! every step into `Runner::dials`); `dial_loop` connects each on a task of
//! its own and reports the outcome in one lock (`handle_dialed` or
//! `handle_dial_failed`); retries are the machine's timers. Route
//! connections then run the same reader and writer tasks as clients.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rnats_core::runtime::{ConnId, ListenerKind};
use rnats_core::server::DialRequest;
use tokio::net::{TcpListener, TcpStream};

use super::Runner;

/// How long one route dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

impl Runner {
    /// Accept routes on `listener` (until the task is aborted) and carry
    /// out the machine's dials.
    pub async fn serve_routes(self: Arc<Self>, listener: TcpListener) {
        // The explicit routes were queued when the machine was built: a
        // step hands them over.
        self.with_server(|_, _| ());
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    if self.lame_duck.load(Ordering::Acquire) {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let (conn, io) = self.open_from(peer, ListenerKind::Route, None, None);
                    let (reader, writer) = stream.into_split();
                    self.clone()
                        .run_io(conn, io, Box::new(reader), Box::new(writer));
                }
                Err(error) => {
                    tracing::error!("Error accepting route connection: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Carry out the machine's route dials until the process ends.
    pub async fn dial_loop(self: Arc<Self>) {
        let Some(mut queue) = self
            .dial_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        while let Some(request) = queue.recv().await {
            tokio::spawn(self.clone().dial(request));
        }
    }

    async fn dial(self: Arc<Self>, request: DialRequest) {
        tracing::debug!(
            "Trying to connect to route on {} ({})",
            request.address,
            request.address
        );
        let connected =
            tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&request.address)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return self.dial_failed(
                    request.id,
                    &format!("dial tcp {}: {error}", request.address),
                )
            }
            Err(_) => {
                return self.dial_failed(
                    request.id,
                    &format!("dial tcp {}: i/o timeout", request.address),
                )
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            return self.dial_failed(request.id, "connection lost");
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let io = Self::new_io(None);
        {
            let mut state = self.lock();
            state.conns.insert(conn, io.clone());
            #[cfg(debug_assertions)]
            state.contract.accepted(conn);
            state
                .server
                .handle_dialed(self.clock.now(), request.id, conn, peer);
            self.finish_step(state);
        }
        let (reader, writer) = stream.into_split();
        self.run_io(conn, io, Box::new(reader), Box::new(writer));
    }

    fn dial_failed(&self, dial: u64, error: &str) {
        let mut state = self.lock();
        state
            .server
            .handle_dial_failed(self.clock.now(), dial, error);
        self.finish_step(state);
    }
}
