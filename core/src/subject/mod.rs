//! Subjects and the Sublist: filled in by the subject module owner.
