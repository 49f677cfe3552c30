//! Sequences of Sublist inserts, removes and matches against a naive model
//! (a list of entries and a linear token matcher).
//!
//! Input: decoded with `arbitrary` into a cache capacity and a list of
//! [`Op`]s. Subjects are built from a small alphabet of tokens so that
//! entries collide, share prefixes and overlap through wildcards.
//!
//! Checked after every op: the result of insert/remove (including its error)
//! equals the model's; `len()` equals the model's count; a match returns the
//! model's plain subscriptions (as a multiset: one per matching entry) and
//! its queue groups (sorted by name, members sorted, one per matching
//! entry), whatever the cache holds; an empty Sublist has no trie nodes.

use arbitrary::{Arbitrary, Unstructured};
use rnats_core::subject::{Sublist, SublistError};

use crate::subject::{model_matches, model_queue_valid, model_subscribe_valid};

/// One token of a generated subject.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Token {
    Foo,
    Bar,
    Baz,
    Star,
    Gt,
    Empty,
    /// A one-byte token, any byte (`.`, blanks and wildcard look-alikes included).
    Byte(u8),
}

/// A generated subject: at most 6 tokens joined by `.`.
#[derive(Debug, Clone, Arbitrary)]
pub struct Subject(pub Vec<Token>);

impl Subject {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, token) in self.0.iter().take(6).enumerate() {
            if index > 0 {
                out.push(b'.');
            }
            match token {
                Token::Foo => out.extend_from_slice(b"foo"),
                Token::Bar => out.extend_from_slice(b"bar"),
                Token::Baz => out.extend_from_slice(b"baz"),
                Token::Star => out.push(b'*'),
                Token::Gt => out.push(b'>'),
                Token::Empty => {}
                Token::Byte(byte) => out.push(*byte),
            }
        }
        out
    }
}

/// A queue group name from a small set (one of them invalid).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Queue {
    Q1,
    Q2,
    Star,
    Blank,
}

impl Queue {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Queue::Q1 => b"q1",
            Queue::Q2 => b"q2",
            Queue::Star => b"q.*",
            Queue::Blank => b"q 1",
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    Insert {
        subject: Subject,
        queue: Option<Queue>,
        value: u8,
    },
    Remove {
        subject: Subject,
        queue: Option<Queue>,
        value: u8,
    },
    /// Remove the n-th live entry of the model (a remove that finds something).
    RemoveLive(u8),
    Match(Subject),
}

#[derive(Debug, Arbitrary)]
pub struct Script {
    pub cache_capacity: u8,
    pub ops: Vec<Op>,
}

type Entry = (Vec<u8>, Option<Vec<u8>>, u8);

/// Plain values, then (group name, members) per queue group.
type Reached = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

struct Model {
    entries: Vec<Entry>,
}

impl Model {
    fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: u8,
    ) -> Result<(), SublistError> {
        if !model_subscribe_valid(subject) {
            return Err(SublistError::InvalidSubject);
        }
        if queue.is_some_and(|name| !model_queue_valid(name)) {
            return Err(SublistError::InvalidQueueName);
        }
        let entry = (subject.to_vec(), queue.map(<[u8]>::to_vec), value);
        if self.entries.contains(&entry) {
            return Err(SublistError::AlreadyPresent);
        }
        self.entries.push(entry);
        Ok(())
    }

    fn remove(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: u8,
    ) -> Result<(), SublistError> {
        if !model_subscribe_valid(subject) {
            return Err(SublistError::InvalidSubject);
        }
        let entry = (subject.to_vec(), queue.map(<[u8]>::to_vec), value);
        let Some(index) = self.entries.iter().position(|e| *e == entry) else {
            return Err(SublistError::NotFound);
        };
        self.entries.remove(index);
        Ok(())
    }

    /// Plain values sorted, and (group, sorted members) sorted by group.
    fn matches(&self, subject: &[u8]) -> Reached {
        let mut plain = Vec::new();
        let mut queues: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (pattern, queue, value) in &self.entries {
            if !model_matches(pattern, subject) {
                continue;
            }
            match queue {
                None => plain.push(*value),
                Some(name) => match queues.iter_mut().find(|(n, _)| n == name) {
                    Some((_, members)) => members.push(*value),
                    None => queues.push((name.clone(), vec![*value])),
                },
            }
        }
        plain.sort_unstable();
        queues.sort();
        for (_, members) in &mut queues {
            members.sort_unstable();
        }
        (plain, queues)
    }
}

/// Runs one decoded script.
pub fn run_script(script: &Script) {
    let mut sublist =
        Sublist::<u8>::with_cache_capacity(usize::from(script.cache_capacity % 8) + 1);
    let mut model = Model {
        entries: Vec::new(),
    };
    for op in script.ops.iter().take(256) {
        match op {
            Op::Insert {
                subject,
                queue,
                value,
            } => {
                let subject = subject.bytes();
                let queue = queue.map(Queue::bytes);
                let expected = model.insert(&subject, queue, *value);
                assert_eq!(
                    sublist.insert(&subject, queue, *value),
                    expected,
                    "insert {op:?}"
                );
            }
            Op::Remove {
                subject,
                queue,
                value,
            } => {
                let subject = subject.bytes();
                let queue = queue.map(Queue::bytes);
                let expected = model.remove(&subject, queue, *value);
                assert_eq!(
                    sublist.remove(&subject, queue, *value),
                    expected,
                    "remove {op:?}"
                );
            }
            Op::RemoveLive(n) => {
                if model.entries.is_empty() {
                    continue;
                }
                let (subject, queue, value) =
                    model.entries[usize::from(*n) % model.entries.len()].clone();
                let expected = model.remove(&subject, queue.as_deref(), value);
                assert_eq!(expected, Ok(()));
                assert_eq!(
                    sublist.remove(&subject, queue.as_deref(), value),
                    expected,
                    "remove live"
                );
            }
            Op::Match(subject) => {
                let subject = subject.bytes();
                let (plain, queues) = model.matches(&subject);
                let result = sublist.matches(&subject);
                let mut found_plain = result.plain.clone();
                found_plain.sort_unstable();
                assert_eq!(found_plain, plain, "plain matches of {subject:?}");
                let found_queues: Vec<(Vec<u8>, Vec<u8>)> = result
                    .queues
                    .iter()
                    .map(|group| (group.name.to_vec(), group.members.clone()))
                    .collect();
                assert_eq!(found_queues, queues, "queue matches of {subject:?}");
            }
        }
        assert_eq!(sublist.len(), model.entries.len());
        if sublist.is_empty() {
            assert_eq!(sublist.node_count(), 0);
        }
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    if let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(data)) {
        run_script(&script);
    }
}
