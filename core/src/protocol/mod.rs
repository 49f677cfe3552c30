//! Client protocol codec: filled in by the protocol module owner.
