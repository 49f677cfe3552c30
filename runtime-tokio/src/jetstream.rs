//! Runs core's JetStream machine beside the server machine.
//!
//! Shape: the JetStream machine lives under its own lock, apart from the
//! server machine's. A stream's traffic is handled where it is read: the
//! tokio worker whose step routed a publish, an ack, a pull request or a
//! direct get to JetStream takes the JetStream lock right after it
//! released the server's, hands the machine what its step queued, and
//! carries the answers back into the server (acks, deliveries) in the same
//! turn, as nats-server stores a publish in the publishing client's own
//! goroutine. A thread of JetStream's own runs its timers and the requests
//! that may hold the disk for long (stream and consumer creates and their
//! fsyncs, purges, restores, monitoring queries), and takes over whenever
//! the lock is busy; a second thread performs the stores' fsyncs and, once
//! one is done, releases the acks waiting for it itself.
//!
//! ```text
//!  server step ─► queue ─► (after the server lock is released) the same worker
//!       ▲           │          takes the JetStream lock and drains the queue's light events
//!       │           └─► JetStream thread: heavy events, timers, a busy lock
//!       └──── handle_jetstream (server lock) ◄── whoever holds the JetStream lock
//!                             JsAction::Sync ─► sync thread ─► SyncDone, drained the same way
//! ```
//!
//! Group commit falls out of this: while one sync is in flight the stores
//! keep taking what arrives, and the next sync covers all of it.
//!
//! The queue is the span where publishes wait for their stream, so the
//! per-stream ingest limits (`max_buffered_msgs` / `max_buffered_size`,
//! core's `IngestQueue`) are counted there: [`JsSender::send`] admits a
//! publish (or queues it stripped, to be refused with `429`), and it is
//! counted out as the machine takes it.
//!
//! Invariants:
//! - Events reach the machine in the order they were queued: only the
//!   holder of the JetStream lock takes events off the queue, always from
//!   its front, and the server's steps queue them under the server lock.
//! - The JetStream lock is taken before the server lock, never the other
//!   way round: a worker drains only after releasing the server lock, and
//!   the queue, ingest and wake-up locks are leaves, held for a few
//!   instructions. A tokio worker only ever tries the JetStream lock, so
//!   it never waits on the disk behind it; the JetStream and sync threads
//!   may wait for it.
//! - An event is never stranded: whoever queues one either drains it or
//!   wakes the JetStream thread (a failed try, a heavy event), and the
//!   thread looks at the queue under its lock before it sleeps.
//! - A tokio worker handles only light events (see [`is_light`]); it stops
//!   at the first heavy one and leaves it, and everything after it, to the
//!   JetStream thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rnats_core::jetstream::ingest::{IngestQueue, IngestRefusal};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, DiskResult};

use crate::disk::RealDisk;
use crate::runner::{wall_now, Runner};

/// A question for the machine, run on its thread (monitoring pages).
pub type JsQuery = Box<dyn FnOnce(&mut JetStream<RealDisk>) + Send>;

/// What the JetStream machine is told.
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

/// Whether a tokio worker may hand `event` to the machine itself: a
/// stream's message, a consumer's ack or flow-control reply, a sync's
/// completion, and the API requests that only read a stream or a consumer
/// (direct and message gets, pull requests). Everything else may write and
/// fsync definitions, walk every stream or restore a snapshot, and is left
/// to the JetStream thread.
fn is_light(event: &JsEvent) -> bool {
    match event {
        JsEvent::Inbound(msg) => match msg.target {
            JsTarget::Api => is_light_request(&msg.subject),
            JsTarget::System | JsTarget::Snapshot(_) => false,
            JsTarget::Stream(_)
            | JsTarget::Consumer(..)
            | JsTarget::Interest(_)
            | JsTarget::ReplyGone(..)
            | JsTarget::Feed(..) => true,
        },
        JsEvent::Refused(..) | JsEvent::SyncDone { .. } => true,
        JsEvent::Query(_) | JsEvent::Accounts(_) | JsEvent::Stop(_) => false,
    }
}

/// `$JS.API.` (or `$JS.<domain>.API.`) followed by a direct get, a
/// message get or a pull request.
fn is_light_request(subject: &[u8]) -> bool {
    let Some(at) = subject.windows(5).position(|w| w == b".API.") else {
        return false;
    };
    let request = &subject[at + 5..];
    [
        b"DIRECT.GET.".as_slice(),
        b"STREAM.MSG.GET.",
        b"CONSUMER.MSG.NEXT.",
    ]
    .iter()
    .any(|prefix| request.starts_with(prefix))
}

/// The machine and what goes with holding it.
struct Held {
    js: JetStream<RealDisk>,
    syncs: mpsc::Sender<SyncJob>,
    /// Events taken off the queue, being handled (kept for its room).
    batch: Vec<JsEvent>,
    /// JetStream was stopped: nothing more is handled.
    stopped: bool,
}

/// Events waiting for the machine.
#[derive(Default)]
struct Queue {
    events: VecDeque<JsEvent>,
    /// The JetStream thread is asked to look again: an event was left for
    /// it, or its next timer moved earlier.
    kicked: bool,
    /// The machine stopped: nothing more is queued.
    closed: bool,
}

struct Shared {
    machine: Mutex<Held>,
    queue: Mutex<Queue>,
    /// Wakes the JetStream thread (with `queue`).
    wake: Condvar,
    ingest: Mutex<IngestQueue>,
    /// The machine's next timer, nanoseconds on the runner's clock
    /// (`u64::MAX`: none); written by every holder of the machine before
    /// it lets go.
    timer_at: AtomicU64,
}

thread_local! {
    /// This thread holds the JetStream lock: a server step it runs while
    /// carrying out the machine's actions leaves what it queued to the
    /// holder's own loop.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as holding the JetStream lock while it lives.
struct Holding;

impl Holding {
    fn enter() -> Holding {
        HOLDING.with(|holding| {
            assert!(!holding.get(), "the JetStream lock taken twice");
            holding.set(true);
        });
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set(false));
    }
}

/// The sending end the runner holds.
#[derive(Clone)]
pub struct JsSender {
    shared: Arc<Shared>,
}

impl JsSender {
    /// Queue `event` for the machine; a publish its stream's ingest queue
    /// has no room for is queued as [`JsEvent::Refused`]. A heavy event
    /// wakes the JetStream thread; a light one waits for the caller's
    /// [`JsSender::run_inline`]. Fails only once the machine stopped.
    pub fn send(&self, event: JsEvent) -> Result<(), Disconnected> {
        let event = match event {
            JsEvent::Inbound(msg) if matches!(msg.target, JsTarget::Stream(_)) => {
                let admitted = self.shared.ingest.lock().expect("ingest lock").admit(&msg);
                match admitted {
                    Ok(()) => JsEvent::Inbound(msg),
                    Err(refusal) => JsEvent::Refused(IngestQueue::stripped(msg), refusal),
                }
            }
            other => other,
        };
        let light = is_light(&event);
        let mut queue = self.shared.queue();
        if queue.closed {
            return Err(Disconnected);
        }
        queue.events.push_back(event);
        if !light {
            queue.kicked = true;
            drop(queue);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Hand the machine what is queued, here and now, unless another
    /// thread holds it (then that thread or the JetStream thread will).
    /// Called by the runner after a step that queued events, with the
    /// server lock released.
    pub fn run_inline(&self, runner: &Runner) {
        if HOLDING.with(Cell::get) {
            // Carrying out the machine's own actions: its loop drains.
            return;
        }
        let mut held = match self.shared.machine.try_lock() {
            Ok(held) => held,
            // A panic in core while holding it is a bug; serve on, as the
            // runner does with its own lock.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.shared.kick();
                return;
            }
        };
        if held.stopped {
            return;
        }
        let _holding = Holding::enter();
        let drained = drain(runner, &self.shared, &mut held, true);
        debug_assert!(!matches!(drained, Drained::Stopped(_)));
        if matches!(drained, Drained::LeftHeavy) {
            self.shared.kick();
        }
        self.shared.set_timer(&held);
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

/// The JetStream machine is gone (stopped).
#[derive(Debug)]
pub struct Disconnected;

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().expect("JetStream queue lock")
    }

    /// Ask the JetStream thread to look at the queue and its timer again.
    fn kick(&self) {
        self.queue().kicked = true;
        self.wake.notify_one();
    }

    /// Record the machine's next timer; wake the JetStream thread when it
    /// moved earlier than what the thread sleeps until.
    fn set_timer(&self, held: &Held) {
        let at = held.js.poll_timeout().map_or(u64::MAX, |at| at.as_nanos());
        let before = self.timer_at.swap(at, Ordering::AcqRel);
        if at < before && !on_js_thread() {
            self.kick();
        }
    }
}

thread_local! {
    static JS_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn on_js_thread() -> bool {
    JS_THREAD.with(Cell::get)
}

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
    let (syncs, sync_inbox) = mpsc::channel::<SyncJob>();
    let ingest = Mutex::new(IngestQueue::new(js.config()));
    // The streams recovered at open ask for their subscriptions first.
    carry_out(&runner, &mut js, &syncs);
    let timer_at = js.poll_timeout().map_or(u64::MAX, |at| at.as_nanos());
    let shared = Arc::new(Shared {
        machine: Mutex::new(Held {
            js,
            syncs,
            batch: Vec::new(),
            stopped: false,
        }),
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        ingest,
        timer_at: AtomicU64::new(timer_at),
    });
    let sender = JsSender {
        shared: shared.clone(),
    };
    {
        let runner = runner.clone();
        let sender = sender.clone();
        std::thread::Builder::new()
            .name("jetstream-sync".to_string())
            .spawn(move || sync_loop(runner, sync_disk, sync_inbox, sender))
            .expect("the sync thread starts");
    }
    runner.connect_jetstream(sender);
    std::thread::Builder::new()
        .name("jetstream".to_string())
        .spawn(move || js_loop(runner, shared))
        .expect("the JetStream thread starts");
}

/// The JetStream thread: sleeps until an event is left for it or the
/// machine's next timer, then handles everything queued, in order, and the
/// timers due.
fn js_loop(runner: Arc<Runner>, shared: Arc<Shared>) {
    JS_THREAD.with(|on| on.set(true));
    loop {
        {
            let mut queue = shared.queue();
            loop {
                // Events left by a step this thread ran while holding the
                // machine (a timer's actions) count as a kick.
                if std::mem::take(&mut queue.kicked) || !queue.events.is_empty() {
                    break;
                }
                let timer_at = shared.timer_at.load(Ordering::Acquire);
                let now = runner.now().as_nanos();
                if timer_at <= now {
                    break;
                }
                let wait = Duration::from_nanos(timer_at - now).min(Duration::from_secs(3600));
                queue = shared
                    .wake
                    .wait_timeout(queue, wait)
                    .expect("JetStream queue lock")
                    .0;
            }
        }
        let mut guard = shared
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = &mut *guard;
        let _holding = Holding::enter();
        if let Drained::Stopped(done) = drain(&runner, &shared, held, false) {
            let failures = held.js.write_snapshots();
            carry_out(&runner, &mut held.js, &held.syncs);
            held.stopped = true;
            shared.queue().closed = true;
            // The sync thread ends once its queue's last sender is gone
            // (it holds a sender of ours, so the machine would live on).
            held.syncs = mpsc::channel().0;
            let failures = failures
                .into_iter()
                .map(|(stream, error)| (stream.to_string(), error.to_string()))
                .collect();
            let _ = done.send(failures);
            return;
        }
        if held
            .js
            .poll_timeout()
            .is_some_and(|deadline| deadline <= runner.now())
        {
            held.js.handle_timeout(runner.now(), wall_now());
            carry_out(&runner, &mut held.js, &held.syncs);
        }
        shared.set_timer(held);
    }
}

/// How a drain ended.
enum Drained {
    /// The queue is empty.
    Empty,
    /// A heavy event is at the queue's front (light-only drains).
    LeftHeavy,
    /// A [`JsEvent::Stop`] was taken: where to report.
    Stopped(tokio::sync::oneshot::Sender<Vec<(String, String)>>),
}

/// Hand the machine the queued events in order, and carry out what it
/// asks after each batch, until the queue is empty (or, `light_only`, its
/// front is heavy). Events queued meanwhile (by the steps that carry the
/// machine's actions out) join the next batch.
fn drain(runner: &Runner, shared: &Shared, held: &mut Held, light_only: bool) -> Drained {
    let mut batch = std::mem::take(&mut held.batch);
    let mut ended = None;
    while ended.is_none() {
        {
            let mut queue = shared.queue();
            while let Some(event) = queue.events.front() {
                if light_only && !is_light(event) {
                    break;
                }
                batch.push(queue.events.pop_front().expect("looked at above"));
            }
            if batch.is_empty() {
                ended = Some(match queue.events.is_empty() {
                    true => Drained::Empty,
                    false => Drained::LeftHeavy,
                });
                break;
            }
        }
        for event in batch.drain(..) {
            if ended.is_some() {
                // After a stop: dropped, as when the thread ended before.
                continue;
            }
            if let Some(done) = handle(runner, &mut held.js, &shared.ingest, event) {
                ended = Some(Drained::Stopped(done));
            }
        }
        if ended.is_none() {
            carry_out(runner, &mut held.js, &held.syncs);
        }
    }
    held.batch = batch;
    ended.expect("the loop ends with an outcome")
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

/// The sync thread: performs each sync, then hands its completion to the
/// machine itself when the lock is free, so the acks waiting for it leave
/// at once.
fn sync_loop(
    runner: Arc<Runner>,
    mut disk: RealDisk,
    jobs: mpsc::Receiver<SyncJob>,
    sender: JsSender,
) {
    while let Ok(job) = jobs.recv() {
        let result = perform_sync(&mut disk, &job.files, &job.dirs);
        let done = JsEvent::SyncDone {
            stream: job.stream,
            tag: job.tag,
            result,
        };
        if sender.send(done).is_err() {
            return;
        }
        sender.run_inline(&runner);
    }
}

#[cfg(test)]
mod tests {
    use super::is_light_request;

    #[test]
    fn reads_of_one_stream_are_light_and_changes_are_not() {
        for light in [
            "$JS.API.DIRECT.GET.KV_b.$KV.b.k",
            "$JS.API.STREAM.MSG.GET.S",
            "$JS.API.CONSUMER.MSG.NEXT.S.C",
            "$JS.hub.API.DIRECT.GET.S",
        ] {
            assert!(is_light_request(light.as_bytes()), "{light}");
        }
        for heavy in [
            "$JS.API.STREAM.CREATE.S",
            "$JS.API.CONSUMER.CREATE.S.C",
            "$JS.API.STREAM.PURGE.S",
            "$JS.API.INFO",
            "$JS.API",
        ] {
            assert!(!is_light_request(heavy.as_bytes()), "{heavy}");
        }
    }
}
