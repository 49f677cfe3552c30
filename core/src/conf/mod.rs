//! The NATS configuration file format, sans-I/O: text in, a positioned tree of
//! values out ([`parse`]), and the tree mapped onto typed server options
//! ([`load_options`]).
//!
//! ```text
//!   text ──► parser ──► ConfValue (root map) ──► options::load ──► FileOptions
//!              ▲  │                                                + unsupported keys
//!   ConfSource │  │ `include 'f'`, `$ENV_VAR`                      + warnings
//!              └──┘
//!   FileOptions + Overrides (flags) ──► translate::server_config ──► ServerConfig
//! ```
//!
//! The format is nats-server v2.15.1's (`conf/lex.go`, `conf/parse.go`):
//! `key = value`, `key: value` or `key value`; maps `{}` and arrays `[]`
//! separated by commas or new lines; `#` and `//` comments; quoted,
//! unquoted and `( ... )` block strings; integers with size suffixes; floats;
//! booleans; Zulu datetimes; `$variables` scoped by enclosing maps, then taken
//! from the environment; `include` relative to the including file.
//!
//! Core never touches the OS: the included files and environment variables
//! come through [`ConfSource`], which the runtime implements.
//!
//! Invariants:
//! - Parsing is bounded in every dimension: nesting depth, include depth,
//!   environment-variable expansion depth, the number of values produced
//!   (variables copy trees, which could otherwise blow up exponentially) and
//!   the total text read. Exceeding a bound is an error, never a panic or a
//!   stack overflow.
//! - Every error names a file, line and column.
//!
//! Where rnats departs from the reference, it is to reject input the
//! reference mishandles silently (an unknown size suffix such as `1kbb`, a key
//! without a value inside a map, an integer overflowing when scaled, a
//! negative duration, an include cycle, which crashes the reference) or to
//! accept input the reference's lexer trips over (`[1]` and `[1, 2]`, whose
//! last element it reads as the string `"1]"`).

pub mod auth_options;
pub mod cluster_options;
pub mod jetstream_options;
pub mod jetstream_reload;
pub mod options;
mod parser;
pub mod tls_options;
pub mod translate;
pub mod value;
pub mod websocket_options;

#[cfg(test)]
mod tests;

pub use auth_options::{check_no_auth_user, SecurityOptions};
pub use cluster_options::{cluster_request, ClusterFlags, ClusterOptions, ClusterRequest};
pub use jetstream_options::{parse_storage_size, JetStreamOptions, SyncInterval};
pub use options::{
    check_callout_accounts, check_limits, load_options, options_from_tree, refuse_unsupported,
    AuthorizationOptions, ConfWarning, ConfWarningKind, FileOptions, RefusedKeys, Unsupported,
};
pub use tls_options::{TlsOptions, DEFAULT_HANDSHAKE_FIRST_FALLBACK, DEFAULT_TLS_TIMEOUT};
pub use translate::{
    auth_config, jetstream_request, lame_duck_timing, server_config, system_account, tls_config,
    websocket_request, Overrides, TlsConfig, TlsFlags, TranslateError, WebSocketRequest,
};
pub use value::{
    parse_go_duration, size_multiplier, ConfDateTime, ConfMap, ConfValue, MapEntry, Position,
    ValueKind,
};
pub use websocket_options::{check_websocket, WebSocketOptions};

/// Deepest nesting of maps, arrays, top-level blocks, includes and
/// environment expansions together. It also bounds the parser's recursion.
pub const MAX_NESTING_DEPTH: usize = 128;
/// Longest chain of files including one another.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Longest chain of environment variables whose values name other variables.
pub const MAX_VARIABLE_DEPTH: usize = 16;
/// Most values one parse may produce, copies made by `$variables` included.
pub const MAX_VALUES: usize = 1_000_000;
/// Most text one parse may read: the root file, every include and every
/// environment variable value together.
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// Where included files and environment variables come from. The runtime
/// implements this over the file system and process environment; tests use
/// an in-memory table.
pub trait ConfSource {
    /// Reads an included file. `path` is as written after `include`; `from` is
    /// the including file's path (as given to [`parse`], or as this method
    /// resolved it). Returns the resolved path, which names the file in
    /// positions and detects include cycles, and the file's text.
    ///
    /// The reference joins `path` to the directory of `from`, even when
    /// `path` is absolute (`/etc/x.conf` under `conf/` is `conf/etc/x.conf`).
    fn read_include(&self, from: &str, path: &str) -> Result<(String, String), String>;

    /// The value of an environment variable, if set.
    fn env_var(&self, name: &str) -> Option<String>;

    /// Reads a file named by an option (an operator JWT), as the process
    /// opens it: relative to the working directory.
    fn read_file(&self, path: &str) -> Result<String, String> {
        Err(format!("open {path}: files are not available here"))
    }

    /// The directory resolver's store: creates `dir` when missing, then
    /// reads every `<account key>.jwt` file in it as (key, JWT). Returns
    /// the directory's absolute path too (what the reference logs).
    fn read_jwt_dir(&self, dir: &str) -> Result<(String, Vec<(String, String)>), String> {
        Err(format!("open {dir}: directories are not available here"))
    }

    /// The URL resolver's fetch of an account JWT the server needs before
    /// it starts (its system account): the body of a `200` answer, else
    /// the reference's error text. `attempt` counts the earlier asks for
    /// the same URL while reading this configuration (the reference asks
    /// twice for the system account): a source may answer a later read of
    /// the configuration from what it fetched before for the same attempt.
    fn fetch_account(
        &self,
        fetch: &crate::auth::AccountFetch,
        attempt: usize,
    ) -> Result<String, String> {
        let _ = attempt;
        Err(format!(
            "could not fetch <{:?}>: fetching is not available here",
            fetch.url
        ))
    }
}

/// A source with no files and an empty environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSource;

impl ConfSource for NoSource {
    fn read_include(&self, _from: &str, path: &str) -> Result<(String, String), String> {
        Err(format!("open {path}: includes are not available here"))
    }

    fn env_var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Parses a whole config file into its root map (a [`ValueKind::Map`]
/// positioned at 1:1 of `file_name`).
pub fn parse(file_name: &str, text: &str, source: &dyn ConfSource) -> Result<ConfValue, ConfError> {
    parser::parse_root(file_name, text, source)
}

/// A problem with a config file and where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{position}: {kind}")]
pub struct ConfError {
    pub position: Position,
    pub kind: ConfErrorKind,
}

/// What is wrong. Messages use the reference's wording where it has one.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfErrorKind {
    /// The text is not in the format (the reference's lexer messages).
    #[error("{0}")]
    Syntax(String),
    /// A key with nothing after it (the reference: "config is invalid").
    #[error("config is invalid: key '{key}' has no value")]
    KeyWithoutValue { key: String },
    /// An integer that does not fit in 64 bits, before or after its suffix.
    #[error("integer '{0}' is out of the range")]
    IntegerOutOfRange(String),
    /// A size suffix outside `k m g t p e`, each optionally followed by
    /// `b`, `i` or `ib`.
    #[error("invalid size suffix in '{0}'")]
    InvalidSizeSuffix(String),
    #[error("float '{0}' is out of the range")]
    FloatOutOfRange(String),
    #[error("expected Zulu formatted DateTime, but got '{0}'")]
    InvalidDateTime(String),
    /// `\x` escapes that spell bytes which are not UTF-8.
    #[error("string escapes do not form valid UTF-8")]
    InvalidUtf8,
    #[error("variable reference for '{name}' can not be found")]
    VariableNotFound { name: String },
    #[error("variable reference cycle for '{name}'")]
    VariableCycle { name: String },
    /// An environment variable whose value does not parse as a value.
    #[error("variable reference for '{name}' could not be parsed: {inner}")]
    VariableInvalid { name: String, inner: Box<ConfError> },
    #[error("error parsing include file '{path}', {reason}")]
    IncludeUnreadable { path: String, reason: String },
    #[error("error parsing include file '{path}', {inner}")]
    IncludeInvalid { path: String, inner: Box<ConfError> },
    #[error("include cycle: '{path}' is already being included")]
    IncludeCycle { path: String },
    #[error("includes nested deeper than {max} files")]
    IncludeTooDeep { max: usize },
    #[error("values nested deeper than {max} levels")]
    NestingTooDeep { max: usize },
    #[error("environment variables nested deeper than {max} levels")]
    VariableTooDeep { max: usize },
    #[error("configuration expands to more than {max} values")]
    TooManyValues { max: usize },
    #[error("configuration text exceeds {max} bytes")]
    TooMuchText { max: usize },
    /// A key the reference does not know (and no `$variable` read).
    #[error("unknown field \"{key}\"")]
    UnknownField { key: String },
    #[error("expected {expected} for {key}, got {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A value of the right type that the option does not accept.
    #[error("{reason}")]
    InvalidValue { key: String, reason: String },
}

impl ConfError {
    pub fn new(position: Position, kind: ConfErrorKind) -> Self {
        ConfError { position, kind }
    }
}
