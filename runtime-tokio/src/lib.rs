//! rnats-runtime-tokio: runs the rnats-core machines on tokio sockets and timers.

pub mod account_fetch;
pub mod app;
pub mod disk;
pub mod flags;
pub mod host;
pub mod jetstream;
pub mod jetstream_host;
pub mod logging;
pub mod monitor_http;
pub mod ports_file;
pub mod resolver_files;
pub mod runner;
pub mod settings;
pub mod signal_cmd;
pub mod tls;
