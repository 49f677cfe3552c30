//! Subjects: validation and the Sublist that routes a published subject to
//! subscriptions.
//!
//! Inputs are subjects as raw bytes (nats-server does not require UTF-8);
//! outputs are yes/no answers ([`validate`]) and deterministic match results
//! ([`Sublist::matches`]). Nothing here picks a queue member or touches the
//! OS: the server draws the member from its own seeded stream.
//!
//! Invariant: every order this module exposes depends only on the sequence of
//! calls, never on hashing seeds or addresses.

mod compact;
pub mod hash;
pub mod overlap;
pub mod sublist;
pub mod transform;
pub mod validate;

pub use overlap::{intersect, is_subset_match, subjects_collide, subjects_overlap};
pub use sublist::{
    subject_matches_pattern, MatchResult, QueueGroup, Sublist, SublistError, SublistStats,
    CACHE_CAPACITY,
};
pub use transform::{SubjectTransform, TransformError};
pub use validate::{
    is_valid_literal_subject, is_valid_publish_subject, is_valid_queue_name, is_valid_subject,
    is_valid_subject_utf8, is_valid_subscribe_subject, is_wildcard_token, subject_has_wildcard,
    subject_is_literal, FULL_WILDCARD, PARTIAL_WILDCARD, TOKEN_SEPARATOR,
};
