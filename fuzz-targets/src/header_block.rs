//! Arbitrary bytes as a NATS header block.
//!
//! Checked: no panic; a block that validates yields fields whose every key is
//! found again by both lookups (the strict view and the reference's lenient
//! scan), and its status, when present, has three digits.

use rnats_core::protocol::{find_header, HeaderView};

/// The target body.
pub fn run(data: &[u8]) {
    let _ = find_header(data, b"Nats-Msg-Id");
    let Ok(view) = HeaderView::parse(data) else {
        return;
    };
    assert_eq!(view.as_bytes(), data);
    if let Some(code) = view.status() {
        assert!(code < 1000);
    }
    for (key, value) in view.fields() {
        assert!(!key.is_empty());
        assert!(view.get(key).is_some());
        assert!(view.get_all(key).any(|found| found == value));
        assert!(find_header(data, key).is_some());
    }
}
