//! The link between the client router and JetStream: what crosses it.
//!
//! Role: the server machine ([`crate::server::Server`]) and the JetStream
//! machine ([`super::JetStream`]) never call each other. The server routes
//! a message that matches one of JetStream's internal subscriptions into a
//! [`JsInbound`] and queues it for the runtime; the runtime hands it to
//! JetStream (in production under JetStream's own lock, by the thread whose
//! step routed it or by JetStream's own thread; in the simulator in the
//! same event loop); JetStream answers with [`JsAction`]s, of which the
//! routing ones ([`JsAction::Publish`], [`JsAction::Listen`]) go back to the
//! server through [`crate::server::Server::handle_jetstream`].
//!
//! Everything here owns its bytes ([`Bytes`]): messages cross threads.
//! Accounts are named by their name, which both sides share and which
//! survives a configuration reload (the server's account ids do not cross).

use bytes::Bytes;

use crate::server::LogLevel;

/// A stream, as both machines name it: stable for the stream's life, never
/// reused (a stream deleted and created again gets a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// Which internal subscription a message matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JsTarget {
    /// `$JS.API.>` (or `$JS.<domain>.API.>`) in an account.
    Api,
    /// One of a stream's subjects.
    Stream(StreamId),
    /// A `$SYS` request JetStream answers (`$SYS.REQ.SERVER.PING.JSZ`,
    /// `$SYS.REQ.SERVER.<id>.JSZ`, `$SYS.REQ.ACCOUNT.<account>.JSZ`).
    System,
    /// A consumer's acknowledgements and flow-control replies
    /// (`$JS.ACK.<stream>.<consumer>.>`, `$JS.FC.<stream>.<consumer>.*`).
    Consumer(StreamId, ConsumerId),
    /// Not a message: the server reports whether a watched subject (a push
    /// consumer's deliver subject, a snapshot's) has subscribers (payload
    /// `1`) or not (`0`), once when asked with [`JsAction::WatchInterest`]
    /// and on every change.
    Interest(Watcher),
    /// Not a message: the server reports that a waiting pull request's
    /// reply subject (`subject`) has no subscriber left in `account`
    /// (watched with [`JsAction::WatchReplies`]); the consumer drops the
    /// requests that reply there, as the reference does when it finds
    /// their interest gone.
    ReplyGone(StreamId, ConsumerId),
    /// A stream snapshot's chunk acknowledgements
    /// (`$JS.SNAPSHOT.ACK.<stream>.<id>.>`) or a restore's chunks
    /// (`$JS.SNAPSHOT.RESTORE.<stream>.<id>`), by session.
    Snapshot(u64),
    /// An external mirror's or source's consumer on its origin
    /// ([`super::remote_feed`]): the create request's reply inbox and the
    /// deliver subject, in the sourcing stream's account, by feed key.
    Feed(StreamId, u64),
}

/// Who follows a subject's interest ([`JsAction::WatchInterest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watcher {
    /// A push consumer, its deliver subject.
    Consumer(StreamId, ConsumerId),
    /// A stream snapshot being sent, its deliver subject.
    Snapshot(u64),
}

/// A consumer, as both machines name it: never reused within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerId(pub u64);

/// A message routed to JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsInbound {
    /// The account the message was published in (after imports).
    pub account: String,
    pub target: JsTarget,
    pub subject: Bytes,
    /// Empty when the publisher asked for no reply.
    pub reply: Bytes,
    /// The raw `NATS/1.0` header block, empty when there is none.
    pub headers: Bytes,
    pub payload: Bytes,
    /// For API requests: the requesting client as events describe it
    /// (JSON), for the API audit advisory; for system requests: the server
    /// as events describe it (the reply's `server` member); for a stream's
    /// message that crossed a service import with a fast batch reply: that
    /// reply (the message carries the import's `_R_.` one). Empty otherwise.
    pub context: Bytes,
}

/// What JetStream asks of the server and the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsAction {
    /// Publish a message in `account` from the server itself (API replies,
    /// publish acknowledgements, advisories). For the server. The account
    /// is shared (`Arc<str>`): a stream's acks name its account without an
    /// allocation each.
    Publish {
        account: std::sync::Arc<str>,
        subject: Bytes,
        reply: Bytes,
        headers: Bytes,
        payload: Bytes,
    },
    /// Deliver a stored message to a consumer's subscriber: routed by `to`
    /// (a pull request's inbox or the deliver subject), shown with the
    /// stored message's `subject`, `reply` the ack subject. For the server.
    /// The account is shared, as in `Publish`.
    Deliver {
        account: std::sync::Arc<str>,
        to: Bytes,
        subject: Bytes,
        reply: Bytes,
        headers: Bytes,
        payload: Bytes,
    },
    /// From now on route messages on `subjects` in `account` to `target`,
    /// replacing what `target` listened to before (empty: stop). For the
    /// server.
    Listen {
        account: String,
        target: JsTarget,
        subjects: Vec<String>,
    },
    /// Make `files` then `dirs` durable on the stream's disk, then report
    /// with [`super::JetStream::handle_sync_done`]. For the runtime.
    Sync {
        stream: StreamId,
        tag: u64,
        files: Vec<String>,
        dirs: Vec<String>,
    },
    /// Report (with [`JsTarget::Interest`]) whether `subject` has client
    /// subscribers in `account`, now and whenever that changes; `None`
    /// stops the reports. For the server.
    WatchInterest {
        account: String,
        watcher: Watcher,
        subject: Option<Bytes>,
    },
    /// Start (`watch`) or stop following the reply subjects of a pull
    /// consumer's waiting requests; one whose subscribers are gone (now or
    /// later) is reported once with [`JsTarget::ReplyGone`]. For the server.
    WatchReplies {
        stream: StreamId,
        consumer: ConsumerId,
        changes: Vec<ReplyWatch>,
    },
    /// A line for the server log. For the server.
    Log { level: LogLevel, text: String },
}

/// One reply subject a pull consumer starts or stops waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyWatch {
    pub account: String,
    pub reply: Bytes,
    pub watch: bool,
}
