//! Runs core's JetStream machine beside the server machine.
//!
//! Shape: the JetStream machine lives under its own lock, apart from the
//! server machine's, and each stream can run on its own, apart from both.
//! A stream's traffic is handled where it is read: the tokio worker whose
//! step routed a publish, an ack or a flow-control reply to JetStream
//! takes the JetStream lock right after it released the server's, takes
//! the stream's queued inputs and lends the stream out of the machine
//! (core's `jetstream::loan`), lets the lock go, runs the inputs on the
//! loan and carries the answers back into the server (acks, deliveries),
//! then takes the lock again only to restore the stream. So two streams'
//! traffic runs on two cores at once, as nats-server stores a publish in
//! the publishing client's own goroutine; inputs for a stream already out
//! wait in its mailbox for the worker that has it. Reads of one stream
//! that name it in the API (direct and message gets, pull requests) are
//! handled under the lock by the worker, when no stream is out. A thread of
//! JetStream's own runs its timers and the requests that may hold the disk
//! for long (stream and consumer creates and their fsyncs, purges,
//! restores, monitoring queries), and takes over whenever the lock is
//! busy; a second thread performs the stores' fsyncs and, once one is done,
//! releases the acks waiting for it itself (on a loan of the stream running
//! that completion alone, or through the mailbox of the loan that has it).
//!
//! ```text
//!  server step ─► queue ─► (after the server lock is released) the same worker:
//!       ▲           │          a stream's own inputs ─► lend ─► run without the lock ─► restore
//!       │           │          reads by name, nothing out ─► under the lock
//!       │           └─► JetStream thread: heavy events, timers, a busy lock (waits for loans back)
//!       └──── handle_jetstream (server lock) ◄── whoever runs the loan or holds the lock
//!                             JsAction::Sync ─► sync thread ─► SyncDone: its own loan, or the mailbox
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
//! - Each stream's inputs reach it in the order they were queued: only the
//!   holder of the JetStream lock takes events off the queue, always from
//!   its front; those of a stream out on loan go to its mailbox, which the
//!   loan's worker empties (under the lock) before it restores the stream,
//!   or puts back at the queue's front before it lets the lock go. (A
//!   sync's completion alone may overtake them: it concerns only messages
//!   already stored.)
//! - An event that is not one stream's own (an API request, a query, a
//!   timer, a stop) reaches the machine only with no stream out: it stops
//!   the taking at the queue's front, and the JetStream thread waiting for
//!   it keeps new loans from starting (`barrier`) until the last one is
//!   back. Events queued after it wait behind it, so it sees every input
//!   queued before it.
//! - A loan's actions are all carried out before the stream is restored,
//!   and the machine's own are carried out before anything is lent, so the
//!   deliveries of one consumer leave in order.
//! - The JetStream lock is taken before the server lock, never the other
//!   way round: a worker drains only after releasing the server lock, and
//!   the queue, ingest and wake-up locks are leaves, held for a few
//!   instructions. A worker running a loan holds neither lock while it
//!   runs; it waits for the JetStream lock only to restore, which is
//!   never held long while a stream is out (nothing heavy runs then). A
//!   tokio worker otherwise only ever tries the JetStream lock, so it never
//!   waits on the disk behind it; the JetStream and sync threads may wait.
//! - An event is never stranded: whoever queues one either takes it or
//!   wakes the JetStream thread (a failed try, a heavy event), a worker
//!   restoring a stream looks at the queue again, and the thread looks at
//!   the queue under its lock before it sleeps.
//! - A tokio worker handles only light events (see [`is_light`]); it stops
//!   at the first heavy one and leaves it, and everything after it, to the
//!   JetStream thread.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rnats_core::jetstream::ingest::{IngestQueue, IngestRefusal};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget, StreamId};
use rnats_core::jetstream::loan::StreamLoan;
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

/// The stream whose own input `event` is, when a loan of it can take it
/// (core's `JsTarget::lendable_stream`).
fn lendable(event: &JsEvent) -> Option<StreamId> {
    match event {
        JsEvent::Inbound(msg) | JsEvent::Refused(msg, _) => msg.target.lendable_stream(),
        JsEvent::SyncDone { stream, .. } => Some(*stream),
        JsEvent::Query(_) | JsEvent::Accounts(_) | JsEvent::Stop(_) => None,
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
    /// The streams out on loan, each with the events queued for it since
    /// (its mailbox, emptied by the loan's worker before it restores).
    lent: BTreeMap<StreamId, VecDeque<JsEvent>>,
    /// The JetStream thread waits for every loan to come back: no new one
    /// starts.
    barrier: bool,
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
    /// Signalled (with `machine`) when a loan comes back.
    returned: Condvar,
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
    /// This thread holds the JetStream lock, or runs loans: a server step
    /// it runs while carrying out the machine's (or a loan's) actions
    /// leaves what it queued to this thread's own loop.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as holding the JetStream lock (or running loans)
/// while it lives.
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
    /// thread holds it (then that thread or the JetStream thread will):
    /// the streams whose inputs are at the queue's front are lent and run
    /// here without the lock; reads by name are handled under it. Called
    /// by the runner after a step that queued events, with the server lock
    /// released.
    pub fn run_inline(&self, runner: &Runner) {
        if HOLDING.with(Cell::get) {
            // Carrying out the machine's own actions: its loop drains.
            return;
        }
        loop {
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
            let holding = Holding::enter();
            let loans = lend_front(runner, &self.shared, &mut held);
            if loans.is_empty() {
                if held.lent.is_empty() {
                    let drained = drain(runner, &self.shared, &mut held, true);
                    debug_assert!(!matches!(drained, Drained::Stopped(_)));
                    if matches!(drained, Drained::LeftHeavy) {
                        self.shared.kick();
                    }
                }
                // Otherwise the front waits for the streams out: their
                // workers look at the queue again once they restore.
                self.shared.set_timer(&held);
                return;
            }
            let syncs = held.syncs.clone();
            drop(held);
            for loan in loans {
                run_loan(runner, &self.shared, &syncs, loan, WORKER_ROUNDS);
            }
            drop(holding);
            // Inputs queued meanwhile (by this thread's own steps too); the
            // restores already set the timer.
            if self.shared.queue().events.is_empty() {
                return;
            }
        }
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
            lent: BTreeMap::new(),
            barrier: false,
        }),
        returned: Condvar::new(),
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
        let _holding = Holding::enter();
        let mut drained = drain(&runner, &shared, &mut guard, false);
        let timer_due = |held: &Held| {
            held.js
                .poll_timeout()
                .is_some_and(|deadline| deadline <= runner.now())
        };
        if matches!(drained, Drained::Blocked) || (timer_due(&guard) && !guard.lent.is_empty()) {
            // The front (or the timer) needs every stream: no new loans,
            // and wait for those out to come back.
            guard.barrier = true;
            while !guard.lent.is_empty() {
                guard = shared
                    .returned
                    .wait(guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            guard.barrier = false;
            drained = drain(&runner, &shared, &mut guard, false);
        }
        debug_assert!(!matches!(drained, Drained::Blocked), "nothing is out");
        let held = &mut *guard;
        if let Drained::Stopped(done) = drained {
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
        if timer_due(held) {
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
    /// An event that needs every stream is at the queue's front while
    /// streams are out on loan.
    Blocked,
    /// A [`JsEvent::Stop`] was taken: where to report.
    Stopped(tokio::sync::oneshot::Sender<Vec<(String, String)>>),
}

/// Hand the machine the queued events in order, and carry out what it
/// asks after each batch, until the queue is empty (or, `light_only`, its
/// front is heavy; or its front needs every stream and some are out).
/// Events for a stream out on loan go to its mailbox. Events queued
/// meanwhile (by the steps that carry the machine's actions out) join the
/// next batch.
fn drain(runner: &Runner, shared: &Shared, held: &mut Held, light_only: bool) -> Drained {
    let mut batch = std::mem::take(&mut held.batch);
    let mut ended = None;
    while ended.is_none() {
        {
            let mut queue = shared.queue();
            let mut stop = None;
            while let Some(event) = queue.events.front() {
                match lendable(event) {
                    Some(id) if held.lent.contains_key(&id) => {
                        let event = queue.events.pop_front().expect("looked at above");
                        held.lent.get_mut(&id).expect("out").push_back(event);
                        continue;
                    }
                    Some(_) => {}
                    None if !held.lent.is_empty() => {
                        stop = Some(Drained::Blocked);
                        break;
                    }
                    None => {}
                }
                if light_only && !is_light(event) {
                    stop = Some(Drained::LeftHeavy);
                    break;
                }
                batch.push(queue.events.pop_front().expect("looked at above"));
            }
            if batch.is_empty() {
                ended = Some(stop.unwrap_or(Drained::Empty));
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

/// A stream out on loan and the inputs it is to run.
struct Loan {
    loan: StreamLoan<RealDisk>,
    events: Vec<JsEvent>,
}

/// Take the events at the queue's front that are streams' own (up to the
/// first that is not) and lend their streams; events of streams already
/// out go to their mailboxes, and those of streams the machine does not
/// lend (gone, or mirroring, sourcing or sourced) are handed to the
/// machine. Nothing is lent while the JetStream thread waits for loans.
fn lend_front(runner: &Runner, shared: &Shared, held: &mut Held) -> Vec<Loan> {
    if held.barrier {
        return Vec::new();
    }
    // The machine's own actions leave before any of its streams' next
    // ones, so a consumer's deliveries stay in order.
    carry_out(runner, &mut held.js, &held.syncs);
    let mut taken: Vec<(StreamId, Vec<JsEvent>)> = Vec::new();
    {
        let mut queue = shared.queue();
        while let Some(id) = queue.events.front().and_then(lendable) {
            let event = queue.events.pop_front().expect("looked at above");
            if let Some(mailbox) = held.lent.get_mut(&id) {
                mailbox.push_back(event);
                continue;
            }
            match taken.iter_mut().find(|(stream, _)| *stream == id) {
                Some((_, events)) => events.push(event),
                None => taken.push((id, vec![event])),
            }
        }
    }
    let mut loans = Vec::with_capacity(taken.len());
    let mut handled_here = false;
    for (id, events) in taken {
        match held.js.lend(id) {
            Some(loan) => {
                held.lent.insert(id, VecDeque::new());
                loans.push(Loan { loan, events });
            }
            None => {
                // Not lent (deleted while its inputs were queued, or fed
                // by or feeding another stream): the machine runs them.
                for event in events {
                    handle(runner, &mut held.js, &shared.ingest, event);
                }
                handled_here = true;
            }
        }
    }
    if handled_here {
        carry_out(runner, &mut held.js, &held.syncs);
    }
    loans
}

/// Mailbox rounds a tokio worker runs on one loan before it gives the
/// stream back: a busy stream's inputs keep arriving, and a worker that
/// only ran them would read no socket meanwhile.
const WORKER_ROUNDS: usize = 4;

/// Run a loan's inputs without the JetStream lock, carry out its actions,
/// then restore it, first running what its mailbox gathered meanwhile (at
/// most `rounds` times; what is left then goes back to the queue's front,
/// in order, and the JetStream thread is woken for it).
fn run_loan(
    runner: &Runner,
    shared: &Shared,
    syncs: &mpsc::Sender<SyncJob>,
    loan: Loan,
    mut rounds: usize,
) {
    let Loan {
        mut loan,
        mut events,
    } = loan;
    let id = loan.stream();
    loop {
        // A panic in core is a bug; the stream is restored all the same and
        // the machine serves on, as after a panic under its lock.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for event in events.drain(..) {
                handle_on_loan(runner, &mut loan, &shared.ingest, event);
            }
            carry_out_from(runner, || loan.poll_action(), syncs);
        }));
        let mut held = shared
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let guard = &mut *held;
        let mailbox = guard.lent.get_mut(&id).expect("a loan out has a mailbox");
        if ran.is_ok() && !mailbox.is_empty() && rounds > 0 {
            rounds -= 1;
            events.extend(mailbox.drain(..));
            continue;
        }
        let left = guard.lent.remove(&id).expect("looked at above");
        guard.js.restore(loan);
        // What a panicked loan leaves is dropped (below); otherwise it was
        // queued before anything now in the queue that is not a stream's
        // own (those stop the taking), so it goes first again, and before
        // the lock goes: another worker could otherwise lend the stream and
        // run its newer inputs ahead of these.
        let dropped = if ran.is_ok() {
            if !left.is_empty() {
                let mut queue = shared.queue();
                for event in left.into_iter().rev() {
                    queue.events.push_front(event);
                }
                queue.kicked = true;
                drop(queue);
                shared.wake.notify_one();
            }
            VecDeque::new()
        } else {
            left
        };
        // What restoring asked (feeding the streams that source this one).
        carry_out(runner, &mut guard.js, &guard.syncs);
        shared.set_timer(guard);
        shared.returned.notify_all();
        drop(held);
        match ran {
            Ok(()) => {}
            Err(panic) => {
                for event in &dropped {
                    count_out(&shared.ingest, event);
                }
                tracing::error!(
                    "JetStream: a stream's input panicked; the {} queued after it are dropped",
                    dropped.len()
                );
                std::panic::resume_unwind(panic);
            }
        }
        return;
    }
}

/// A stream's publish leaves its ingest queue as a stream takes it (or
/// drops it), as the reference's stream pops its queue before it stores.
fn count_out(ingest: &Mutex<IngestQueue>, event: &JsEvent) {
    if let JsEvent::Inbound(msg) = event {
        if matches!(msg.target, JsTarget::Stream(_)) {
            ingest.lock().expect("ingest lock").taken(msg);
        }
    }
}

/// Hands a stream's own input to its loan.
fn handle_on_loan(
    runner: &Runner,
    loan: &mut StreamLoan<RealDisk>,
    ingest: &Mutex<IngestQueue>,
    event: JsEvent,
) {
    count_out(ingest, &event);
    match event {
        JsEvent::Inbound(msg) => loan.handle_inbound(runner.now(), wall_now(), msg),
        JsEvent::Refused(msg, refusal) => {
            loan.refuse_ingest(runner.now(), wall_now(), msg, refusal)
        }
        JsEvent::SyncDone { tag, result, .. } => loan.handle_sync_done(tag, result),
        JsEvent::Query(_) | JsEvent::Accounts(_) | JsEvent::Stop(_) => {
            unreachable!("only a stream's own inputs are lent")
        }
    }
}

/// Hands `event` to the machine; returns where to report once stopped when
/// the event is [`JsEvent::Stop`].
fn handle(
    runner: &Runner,
    js: &mut JetStream<RealDisk>,
    ingest: &Mutex<IngestQueue>,
    event: JsEvent,
) -> Option<tokio::sync::oneshot::Sender<Vec<(String, String)>>> {
    count_out(ingest, &event);
    match event {
        JsEvent::Inbound(msg) => js.handle_inbound(runner.now(), wall_now(), msg),
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
    carry_out_from(runner, || js.poll_action(), syncs)
}

/// [`carry_out`] for the actions `poll` yields (the machine's or a loan's).
fn carry_out_from(
    runner: &Runner,
    mut poll: impl FnMut() -> Option<JsAction>,
    syncs: &mpsc::Sender<SyncJob>,
) {
    let mut for_server = Vec::new();
    while let Some(action) = poll() {
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
        if sender.sync_done(&runner, done).is_err() {
            return;
        }
    }
}

impl JsSender {
    /// Hand a sync's completion to its stream from the sync thread: into
    /// the mailbox of the loan that has the stream out, or on a loan of its
    /// own that runs this completion alone (the acks it releases leave at
    /// once); queued for the JetStream thread while that thread waits for
    /// every loan. A completion may overtake the stream's queued inputs:
    /// it concerns only messages already stored. The sync thread never
    /// runs a busy stream's publishes (the next sync, and every ack behind
    /// it, would wait for them).
    fn sync_done(&self, runner: &Runner, done: JsEvent) -> Result<(), Disconnected> {
        let JsEvent::SyncDone { stream, .. } = done else {
            unreachable!("only a sync's completion")
        };
        let mut guard = self
            .shared
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = &mut *guard;
        if held.stopped {
            return Err(Disconnected);
        }
        if let Some(mailbox) = held.lent.get_mut(&stream) {
            mailbox.push_back(done);
            return Ok(());
        }
        if held.barrier {
            drop(guard);
            return self.send(done);
        }
        let holding = Holding::enter();
        // The machine's own actions leave before the stream's next ones.
        carry_out(runner, &mut held.js, &held.syncs);
        let Some(loan) = held.js.lend(stream) else {
            // Not lent (gone, or feeding or fed by another stream).
            handle(runner, &mut held.js, &self.shared.ingest, done);
            carry_out(runner, &mut held.js, &held.syncs);
            self.shared.set_timer(held);
            return Ok(());
        };
        held.lent.insert(stream, VecDeque::new());
        let syncs = held.syncs.clone();
        drop(guard);
        let loan = Loan {
            loan,
            events: vec![done],
        };
        run_loan(runner, &self.shared, &syncs, loan, 0);
        drop(holding);
        Ok(())
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
