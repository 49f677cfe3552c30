//! Runs core's JetStream machine beside the server machine.
//!
//! Shape: the JetStream machine lives on a dedicated OS thread (its store
//! writes block), a second thread performs its fsyncs, and the server
//! machine stays under the runner's lock on the tokio workers. So routing,
//! stream writes and fsyncs use three cores, and an fsync never stalls
//! routing or the stream's next writes.
//!
//! ```text
//!  server step ──poll_jetstream──► channel ──► JetStream thread ──Sync──► sync thread
//!       ▲                                        │      ▲                     │
//!       └──── handle_jetstream (runner lock) ◄───┘      └──── SyncDone ◄──────┘
//! ```
//!
//! Group commit falls out of this: while one sync is in flight the
//! JetStream thread keeps storing what arrives, and the store's next sync
//! covers all of it.
//!
//! The channel is the span where publishes wait for their stream, so the
//! per-stream ingest limits (`max_buffered_msgs` / `max_buffered_size`,
//! core's `IngestQueue`) are counted here: [`JsSender::send`] admits a
//! publish (or hands it over stripped, to be refused with `429`), the
//! JetStream thread counts it out as it takes it.
//!
//! Invariants: the JetStream thread never holds the runner's lock while it
//! waits for anything; the runner never waits on the JetStream thread (it
//! only sends on an unbounded channel, and takes the ingest count's lock
//! only for the count).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rnats_core::jetstream::ingest::{IngestQueue, IngestRefusal};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, DiskResult};

use crate::disk::RealDisk;
use crate::runner::{wall_now, Runner};

/// A question for the machine, run on its thread (monitoring pages).
pub type JsQuery = Box<dyn FnOnce(&mut JetStream<RealDisk>) + Send>;

/// What the JetStream thread is told.
pub enum JsEvent {
    Inbound(JsInbound),
    /// A publish its stream's ingest queue refused, stripped of its
    /// headers and payload.
    Refused(JsInbound, IngestRefusal),
    Query(JsQuery),
    /// The accounts JetStream serves and their limits changed (an account
    /// claims update in operator mode).
    Accounts(std::collections::BTreeMap<String, rnats_core::jetstream::config::AccountLimits>),
    SyncDone {
        stream: StreamId,
        tag: u64,
        result: DiskResult<()>,
    },
    /// JetStream is turned off (a reload): write each file stream's
    /// snapshot, hand over what the machine still has for the server, report
    /// the snapshots not written and end the thread (the sync thread ends
    /// with it). Syncs still in flight are not waited for: their publishers
    /// get no ack, as when the process stops.
    Stop(tokio::sync::oneshot::Sender<Vec<(String, String)>>),
}

/// The sending end the runner holds.
#[derive(Clone)]
pub struct JsSender {
    events: mpsc::Sender<JsEvent>,
    ingest: Arc<Mutex<IngestQueue>>,
}

impl JsSender {
    /// Hand `event` to the JetStream thread; a publish its stream's
    /// ingest queue has no room for goes as [`JsEvent::Refused`]. Fails
    /// only once the thread is gone (shutdown).
    pub fn send(&self, event: JsEvent) -> Result<(), Disconnected> {
        let event = match event {
            JsEvent::Inbound(msg) if matches!(msg.target, JsTarget::Stream(_)) => {
                let admitted = self.ingest.lock().expect("ingest lock").admit(&msg);
                match admitted {
                    Ok(()) => JsEvent::Inbound(msg),
                    Err(refusal) => JsEvent::Refused(IngestQueue::stripped(msg), refusal),
                }
            }
            other => other,
        };
        self.events.send(event).map_err(|_| Disconnected)
    }

    /// Stop the JetStream machine (see [`JsEvent::Stop`]) and wait until it
    /// has; returns the streams whose snapshot was not written, with why.
    pub async fn stop(self) -> Vec<(String, String)> {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.send(JsEvent::Stop(done)).is_err() {
            return Vec::new();
        }
        stopped.await.unwrap_or_default()
    }
}

/// The JetStream thread is gone (shutdown).
#[derive(Debug)]
pub struct Disconnected;

/// A sync the sync thread performs.
struct SyncJob {
    stream: StreamId,
    tag: u64,
    files: Vec<String>,
    dirs: Vec<String>,
}

/// Start the JetStream and sync threads for `js` and connect them to
/// `runner`.
pub fn spawn(runner: Arc<Runner>, mut js: JetStream<RealDisk>, sync_disk: RealDisk) {
    let (events, inbox) = mpsc::channel::<JsEvent>();
    let (syncs, sync_inbox) = mpsc::channel::<SyncJob>();
    let done = events.clone();
    std::thread::Builder::new()
        .name("jetstream-sync".to_string())
        .spawn(move || sync_loop(sync_disk, sync_inbox, done))
        .expect("the sync thread starts");
    let ingest = Arc::new(Mutex::new(IngestQueue::new(js.config())));
    runner.connect_jetstream(JsSender {
        events,
        ingest: ingest.clone(),
    });
    // The streams recovered at open ask for their subscriptions first.
    carry_out(&runner, &mut js, &syncs);
    std::thread::Builder::new()
        .name("jetstream".to_string())
        .spawn(move || js_loop(runner, js, inbox, syncs, ingest))
        .expect("the JetStream thread starts");
}

fn js_loop(
    runner: Arc<Runner>,
    mut js: JetStream<RealDisk>,
    inbox: mpsc::Receiver<JsEvent>,
    syncs: mpsc::Sender<SyncJob>,
    ingest: Arc<Mutex<IngestQueue>>,
) {
    loop {
        let wait = js
            .poll_timeout()
            .map(|deadline| {
                Duration::from_nanos(deadline.as_nanos().saturating_sub(runner.now().as_nanos()))
            })
            .unwrap_or(Duration::from_secs(3600));
        match next_event(&inbox, wait) {
            Ok(event) => {
                let mut stop = handle(&runner, &mut js, &ingest, event);
                // Everything already waiting joins this batch (and the
                // store's next sync).
                while stop.is_none() {
                    let Ok(event) = inbox.try_recv() else {
                        break;
                    };
                    stop = handle(&runner, &mut js, &ingest, event);
                }
                if let Some(done) = stop {
                    let failures = js.write_snapshots();
                    carry_out(&runner, &mut js, &syncs);
                    let failures = failures
                        .into_iter()
                        .map(|(stream, error)| (stream.to_string(), error.to_string()))
                        .collect();
                    let _ = done.send(failures);
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if js
            .poll_timeout()
            .is_some_and(|deadline| deadline <= runner.now())
        {
            js.handle_timeout(runner.now(), wall_now());
        }
        carry_out(&runner, &mut js, &syncs);
    }
}

/// Times the JetStream thread yields its core, polling, before it sleeps
/// on the channel: a request/reply client's next message usually comes
/// within microseconds, and a sleep and futex wake-up per message was most
/// of a small publish's round trip (issue #16's js-kv and js-pub-sync).
const YIELDS_BEFORE_SLEEP: usize = 50;

fn next_event(
    inbox: &mpsc::Receiver<JsEvent>,
    wait: Duration,
) -> Result<JsEvent, mpsc::RecvTimeoutError> {
    for _ in 0..YIELDS_BEFORE_SLEEP {
        match inbox.try_recv() {
            Ok(event) => return Ok(event),
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err(mpsc::RecvTimeoutError::Disconnected)
            }
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    inbox.recv_timeout(wait)
}

/// Hands `event` to the machine; returns where to report once stopped when
/// the event is [`JsEvent::Stop`].
fn handle(
    runner: &Runner,
    js: &mut JetStream<RealDisk>,
    ingest: &Mutex<IngestQueue>,
    event: JsEvent,
) -> Option<tokio::sync::oneshot::Sender<Vec<(String, String)>>> {
    match event {
        JsEvent::Inbound(msg) => {
            // Out of the queue as the machine takes it, as the reference's
            // stream pops its queue before it stores.
            if matches!(msg.target, JsTarget::Stream(_)) {
                ingest.lock().expect("ingest lock").taken(&msg);
            }
            js.handle_inbound(runner.now(), wall_now(), msg)
        }
        JsEvent::Refused(msg, refusal) => js.refuse_ingest(runner.now(), wall_now(), msg, refusal),
        JsEvent::Query(query) => query(js),
        JsEvent::Accounts(accounts) => js.set_accounts(accounts),
        JsEvent::SyncDone {
            stream,
            tag,
            result,
        } => js.handle_sync_done(stream, tag, result),
        JsEvent::Stop(done) => return Some(done),
    }
    None
}

/// Hand syncs to the sync thread and everything else to the server, in
/// one lock.
fn carry_out(runner: &Runner, js: &mut JetStream<RealDisk>, syncs: &mpsc::Sender<SyncJob>) {
    let mut for_server = Vec::new();
    while let Some(action) = js.poll_action() {
        match action {
            JsAction::Sync {
                stream,
                tag,
                files,
                dirs,
            } => {
                let _ = syncs.send(SyncJob {
                    stream,
                    tag,
                    files,
                    dirs,
                });
            }
            other => for_server.push(other),
        }
    }
    if !for_server.is_empty() {
        runner.with_server(|server, now| {
            for action in for_server {
                server.handle_jetstream(now, action);
            }
        });
    }
}

fn sync_loop(mut disk: RealDisk, jobs: mpsc::Receiver<SyncJob>, done: mpsc::Sender<JsEvent>) {
    while let Ok(job) = jobs.recv() {
        let result = perform_sync(&mut disk, &job.files, &job.dirs);
        if done
            .send(JsEvent::SyncDone {
                stream: job.stream,
                tag: job.tag,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}
