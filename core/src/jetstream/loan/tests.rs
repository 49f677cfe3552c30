//! Lending against the whole machine: the same inputs handed to a machine
//! directly and to loans of its streams (two out at once, cut back at
//! random) give the same actions, in the same order, and the same state.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::super::config::{AccountLimits, JetStreamConfig};
use super::super::link::{ConsumerId, JsAction, JsInbound, JsTarget, StreamId, Watcher};
use super::super::machine::JetStream;
use super::StreamLoan;
use crate::store::{perform_sync, Disk, MemDisk};
use crate::time::{Instant, WallTime};

type SharedDisk = crate::store::SharedDisk<MemDisk>;

/// One stream per account, so two loans out at once never share the
/// usage they check: account A's is limited (refusals included), B's not.
const ACCOUNTS: [&str; 2] = ["A", "B"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        stream: usize,
        size: usize,
        msg_id: Option<u8>,
    },
    /// Every sync asked for so far completes.
    SyncAll,
    /// The oldest delivered, unacknowledged message of the stream's push
    /// consumer is acknowledged (with a reply: the client waits).
    Ack { stream: usize, with_reply: bool },
    /// The push consumer's deliver subject gains or loses its subscriber.
    Interest { stream: usize, on: bool },
    /// Time passes and the timers run (on the whole machine: the loans go
    /// back first).
    Timer,
    /// The loans go back.
    Cut,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..2usize, 0..300usize, proptest::option::of(0..6u8))
            .prop_map(|(stream, size, msg_id)| Op::Publish { stream, size, msg_id }),
        3 => Just(Op::SyncAll),
        3 => (0..2usize, any::<bool>()).prop_map(|(stream, with_reply)| Op::Ack { stream, with_reply }),
        1 => (0..2usize, any::<bool>()).prop_map(|(stream, on)| Op::Interest { stream, on }),
        1 => Just(Op::Timer),
        1 => Just(Op::Cut),
    ];
    proptest::collection::vec(op, 1..120)
}

/// A machine, its disk, and what the test learned from its actions.
struct Side {
    js: JetStream<SharedDisk>,
    disk: SharedDisk,
    loans: BTreeMap<StreamId, StreamLoan<SharedDisk>>,
    syncs: Vec<(StreamId, u64, Vec<String>, Vec<String>)>,
    /// Each stream's consumer, and the ack subjects delivered and not yet
    /// acknowledged, oldest first.
    consumers: BTreeMap<StreamId, ConsumerId>,
    unacked: BTreeMap<StreamId, Vec<Bytes>>,
    lends: bool,
}

impl Side {
    fn open(lends: bool) -> Side {
        let disk = SharedDisk::default();
        let accounts = BTreeMap::from([
            (
                "A".to_string(),
                AccountLimits {
                    max_store: Some(2_000),
                    ..AccountLimits::default()
                },
            ),
            ("B".to_string(), AccountLimits::default()),
        ]);
        let js = JetStream::open(
            "srv".into(),
            JetStreamConfig::with_bounds("", 1 << 30, 1 << 30),
            accounts,
            disk.clone(),
            Instant::ZERO,
            WallTime(1_000_000_000),
        );
        Side {
            js,
            disk,
            loans: BTreeMap::new(),
            syncs: Vec::new(),
            consumers: BTreeMap::new(),
            unacked: BTreeMap::new(),
            lends,
        }
    }

    /// The actions the machine and every loan have, in that order; learns
    /// syncs, consumers and deliveries from them.
    fn collect(&mut self) -> Vec<JsAction> {
        let mut out = Vec::new();
        while let Some(action) = self.js.poll_action() {
            out.push(action);
        }
        for loan in self.loans.values_mut() {
            while let Some(action) = loan.poll_action() {
                out.push(action);
            }
        }
        for action in out.iter_mut() {
            forget_advisory_id(action);
        }
        for action in &out {
            match action {
                JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } => self
                    .syncs
                    .push((*stream, *tag, files.clone(), dirs.clone())),
                JsAction::Listen {
                    target: JsTarget::Consumer(stream, id),
                    subjects,
                    ..
                } if !subjects.is_empty() => {
                    self.consumers.insert(*stream, *id);
                }
                JsAction::Deliver { reply, .. } if reply.starts_with(b"$JS.ACK.") => {
                    let stream = self.stream_of_ack(reply);
                    self.unacked.entry(stream).or_default().push(reply.clone());
                }
                _ => {}
            }
        }
        out
    }

    fn stream_of_ack(&self, reply: &[u8]) -> StreamId {
        let name = reply.split(|&b| b == b'.').nth(2).expect("a stream name");
        let index = [b"SA".as_slice(), b"SB"]
            .iter()
            .position(|s| *s == name)
            .expect("a known stream");
        StreamId(index as u64 + 1)
    }

    fn restore_all(&mut self) {
        for (_, loan) in std::mem::take(&mut self.loans) {
            self.js.restore(loan);
        }
    }

    /// Hand a stream's input to its loan (lending it first), or to the
    /// machine.
    fn stream_input(&mut self, id: StreamId, input: impl FnOnce(Input<'_>)) {
        if !self.lends {
            return input(Input::Whole(&mut self.js));
        }
        if !self.loans.contains_key(&id) {
            let loan = self.js.lend(id).expect("the stream exists");
            self.loans.insert(id, loan);
        }
        input(Input::Loan(self.loans.get_mut(&id).expect("lent above")));
    }

    fn api(&mut self, account: &str, subject: &str, body: &str, at: u64) -> Vec<JsAction> {
        self.restore_all();
        self.js.handle_inbound(
            Instant::from_nanos(at),
            WallTime(at),
            inbound(account, JsTarget::Api, subject, "_INBOX.r", body.as_bytes()),
        );
        self.collect()
    }

    fn run(&mut self, op: &Op, at: u64) -> Vec<JsAction> {
        let (now, wall) = (Instant::from_nanos(at), WallTime(at));
        match op {
            Op::Publish {
                stream,
                size,
                msg_id,
            } => {
                let id = StreamId(*stream as u64 + 1);
                let headers = match msg_id {
                    Some(n) => format!("NATS/1.0\r\nNats-Msg-Id: m{n}\r\n\r\n").into_bytes(),
                    None => Vec::new(),
                };
                let mut msg = inbound(
                    ACCOUNTS[*stream],
                    JsTarget::Stream(id),
                    &format!("s{}.x", ACCOUNTS[*stream].to_lowercase()),
                    "_INBOX.p",
                    &vec![b'x'; *size],
                );
                msg.headers = headers.into();
                self.stream_input(id, |input| match input {
                    Input::Whole(js) => js.handle_inbound(now, wall, msg),
                    Input::Loan(loan) => loan.handle_inbound(now, wall, msg),
                });
            }
            Op::SyncAll => {
                // Collected after each, so loans' actions come in input order.
                let mut out = Vec::new();
                for (stream, tag, files, dirs) in std::mem::take(&mut self.syncs) {
                    let result = perform_sync(&mut self.disk, &files, &dirs);
                    self.stream_input(stream, |input| match input {
                        Input::Whole(js) => js.handle_sync_done(stream, tag, result),
                        Input::Loan(loan) => loan.handle_sync_done(tag, result),
                    });
                    out.extend(self.collect());
                }
                return out;
            }
            Op::Ack { stream, with_reply } => {
                let id = StreamId(*stream as u64 + 1);
                let Some(&consumer) = self.consumers.get(&id) else {
                    return self.collect();
                };
                let Some(subject) = self
                    .unacked
                    .get_mut(&id)
                    .and_then(|u| (!u.is_empty()).then(|| u.remove(0)))
                else {
                    return self.collect();
                };
                let reply = if *with_reply { "_INBOX.a" } else { "" };
                let mut msg = inbound(
                    ACCOUNTS[*stream],
                    JsTarget::Consumer(id, consumer),
                    "",
                    reply,
                    b"+ACK",
                );
                msg.subject = subject;
                self.stream_input(id, |input| match input {
                    Input::Whole(js) => js.handle_inbound(now, wall, msg),
                    Input::Loan(loan) => loan.handle_inbound(now, wall, msg),
                });
            }
            Op::Interest { stream, on } => {
                let id = StreamId(*stream as u64 + 1);
                let Some(&consumer) = self.consumers.get(&id) else {
                    return self.collect();
                };
                let payload: &[u8] = if *on { b"1" } else { b"0" };
                let msg = inbound(
                    ACCOUNTS[*stream],
                    JsTarget::Interest(Watcher::Consumer(id, consumer)),
                    "",
                    "",
                    payload,
                );
                self.stream_input(id, |input| match input {
                    Input::Whole(js) => js.handle_inbound(now, wall, msg),
                    Input::Loan(loan) => loan.handle_inbound(now, wall, msg),
                });
            }
            Op::Timer => {
                self.restore_all();
                if self.js.poll_timeout().is_some_and(|at| at <= now) {
                    self.js.handle_timeout(now, wall);
                }
            }
            Op::Cut => self.restore_all(),
        }
        self.collect()
    }
}

/// Advisory ids are random (unique, not reproducible across a lend, which
/// seeds the loan's own): compared without them.
fn forget_advisory_id(action: &mut JsAction) {
    if let JsAction::Publish {
        subject, payload, ..
    } = action
    {
        if subject.starts_with(b"$JS.EVENT.") {
            let mut advisory: serde_json::Value =
                serde_json::from_slice(payload).expect("advisories are JSON");
            advisory["id"] = serde_json::Value::Null;
            *payload = serde_json::to_vec(&advisory).expect("JSON").into();
        }
    }
}

enum Input<'a> {
    Whole(&'a mut JetStream<SharedDisk>),
    Loan(&'a mut StreamLoan<SharedDisk>),
}

fn inbound(
    account: &str,
    target: JsTarget,
    subject: &str,
    reply: &str,
    payload: &[u8],
) -> JsInbound {
    JsInbound {
        account: account.into(),
        target,
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        reply: Bytes::copy_from_slice(reply.as_bytes()),
        headers: Bytes::new(),
        payload: Bytes::copy_from_slice(payload),
        context: Bytes::new(),
    }
}

/// The streams (SA in A, interest retention, at most 30 messages with
/// discard new, under the account's limit of 2,000 bytes; SB in B), each with an explicitly acknowledged push consumer.
fn set_up(side: &mut Side) -> Vec<JsAction> {
    let mut out = Vec::new();
    out.extend(side.api(
        "A",
        "$JS.API.STREAM.CREATE.SA",
        r#"{"name":"SA","subjects":["sa.>"],"retention":"interest","discard":"new","max_msgs":30}"#,
        2_000_000_000,
    ));
    out.extend(side.api(
        "B",
        "$JS.API.STREAM.CREATE.SB",
        r#"{"name":"SB","subjects":["sb.>"],"duplicate_window":1000000000}"#,
        2_000_000_000,
    ));
    for (account, stream) in [("A", "SA"), ("B", "SB")] {
        out.extend(side.api(
            account,
            &format!("$JS.API.CONSUMER.CREATE.{stream}.C"),
            &format!(
                r#"{{"stream_name":"{stream}","config":{{"durable_name":"C","deliver_subject":"d.{stream}","ack_policy":"explicit","ack_wait":1000000000,"max_ack_pending":5}}}}"#
            ),
            2_000_000_000,
        ));
    }
    out
}

/// Every file of the streams and their consumers, by path.
fn files(side: &Side) -> Vec<(String, Vec<u8>)> {
    side.disk.with(|disk| {
        let mut out = Vec::new();
        let mut dirs = vec!["streams".to_string()];
        for id in 1..=2 {
            dirs.push(format!("streams/{id}"));
            dirs.push(format!("streams/{id}.consumers"));
            dirs.push(format!("streams/{id}.consumers/C"));
        }
        for dir in dirs {
            for name in disk.list(&dir).unwrap_or_default() {
                let path = format!("{dir}/{name}");
                if let Ok(Some(bytes)) = disk.read_all(&path) {
                    out.push((path, bytes));
                }
            }
        }
        out.sort();
        out
    })
}

fn final_state(side: &mut Side, at: u64) -> Vec<JsAction> {
    let mut out = Vec::new();
    for (account, stream) in [("A", "SA"), ("B", "SB")] {
        out.extend(side.api(account, &format!("$JS.API.STREAM.INFO.{stream}"), "", at));
        out.extend(side.api(
            account,
            &format!("$JS.API.CONSUMER.INFO.{stream}.C"),
            "",
            at,
        ));
        out.extend(side.api(account, "$JS.API.INFO", "", at));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn loans_act_as_the_whole_machine(ops in ops()) {
        let mut whole = Side::open(false);
        let mut lent = Side::open(true);
        prop_assert_eq!(set_up(&mut whole), set_up(&mut lent));
        let mut at = 3_000_000_000u64;
        for (step, op) in ops.iter().enumerate() {
            at += match op {
                Op::Timer => 1_500_000_000,
                _ => 1_000_000,
            };
            let expected = whole.run(op, at);
            let got = lent.run(op, at);
            prop_assert_eq!(expected, got, "step {} ({:?})", step, op);
        }
        at += 1_000_000;
        lent.restore_all();
        prop_assert!(!lent.js.has_loans());
        let on_disk = files(&whole);
        prop_assert!(on_disk.iter().any(|(path, _)| path.contains(".consumers/")), "{:?}", on_disk.iter().map(|(p, _)| p).collect::<Vec<_>>());
        prop_assert_eq!(on_disk, files(&lent));
        prop_assert_eq!(final_state(&mut whole, at), final_state(&mut lent, at));
    }
}

#[test]
#[should_panic(expected = "out on loan")]
fn the_whole_machine_is_not_used_while_a_stream_is_out() {
    let mut side = Side::open(true);
    set_up(&mut side);
    let loan = side.js.lend(StreamId(1)).expect("SA exists");
    let _keep = loan;
    side.js.handle_inbound(
        Instant::from_nanos(3),
        WallTime(3),
        inbound("A", JsTarget::Api, "$JS.API.INFO", "_INBOX.r", b""),
    );
}
