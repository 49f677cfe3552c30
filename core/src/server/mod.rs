//! The server machine (being written).
