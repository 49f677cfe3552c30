//! The server log, in nats-server's line format.
//!
//! Log lines are written with the `tracing` macros; this module installs the
//! subscriber that prints them the way the reference does:
//!
//! ```text
//! [1234] 2026/11/22 07:39:30.123456 [INF] Starting nats-server   (-T, the default)
//! [1234] [INF] Starting nats-server                              (-T=false)
//! ```
//!
//! | macro | label | shown |
//! | --- | --- | --- |
//! | `tracing::info!` | `[INF]` | always (the reference's "notice") |
//! | `tracing::warn!` | `[WRN]` | always |
//! | `tracing::error!` | `[ERR]` | always |
//! | `tracing::error!(target: FATAL_TARGET, ..)` or [`fatal`] | `[FTL]` | always |
//! | `tracing::debug!` | `[DBG]` | with `-D` |
//! | `tracing::trace!` | `[TRC]` | with `-V` (independently of `-D`) |
//!
//! Why `tracing` with a custom event format rather than a logger type of our
//! own: the rest of the runtime already logs through `tracing`, and
//! `tracing-subscriber` gives, for free, a per-thread buffer in which a whole
//! line is formatted before it is written in one `write` (lines from different
//! tasks never interleave). What the reference adds is small and lives here:
//! the pid prefix, Go's timestamp, the labels (coloured when stderr is a
//! terminal), debug and trace switched separately (and again on reload), and
//! a log file that can be reopened (`SIGUSR1`) and rotated past a size limit.
//!
//! Invariant: every line goes through one [`Sink`] behind one mutex, so
//! reopening or rotating the file never splits or loses a line.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::flags::CliOptions;

/// The target that turns an `error!` into a `[FTL]` line.
pub const FATAL_TARGET: &str = "rnats::fatal";

/// Permissions of a log file we create (the reference's).
const LOG_FILE_MODE: u32 = 0o640;

/// How the log is set up; [`LogConfig::from_cli`] applies the reference's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Append to this file; stderr when `None`.
    pub file: Option<PathBuf>,
    /// Put the date and time in each line.
    pub logtime: bool,
    /// Times in UTC rather than local time.
    pub logtime_utc: bool,
    /// Show `debug!` lines.
    pub debug: bool,
    /// Show `trace!` lines.
    pub trace: bool,
    /// Rotate the file once it holds more than this many bytes; 0: never.
    pub size_limit_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            file: None,
            logtime: true,
            logtime_utc: false,
            debug: false,
            trace: false,
            size_limit_bytes: 0,
        }
    }
}

impl LogConfig {
    /// The log settings of a command line, with the reference's defaults.
    pub fn from_cli(options: &CliOptions) -> Self {
        LogConfig {
            // The reference treats an empty file name as no file.
            file: options
                .log_file
                .clone()
                .filter(|path| !path.as_os_str().is_empty()),
            logtime: options.logtime.unwrap_or(true),
            logtime_utc: options.logtime_utc.unwrap_or(false),
            debug: options.debug.unwrap_or(false),
            trace: options.trace.unwrap_or(false),
            size_limit_bytes: options
                .log_size_limit
                .map_or(0, |limit| limit.max(0) as u64),
        }
    }
}

/// The log could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The log file could not be opened.
    #[error("error opening file: open {}: {}", .path.display(), os_error_text(.source))]
    OpenFile {
        /// The file given with `-l`.
        path: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// A global subscriber was installed already.
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

impl LogError {
    /// Prints the error as the reference does when its log file cannot be
    /// opened (Go's plain `log` format, `2026/11/22 08:09:11 error ...`), and
    /// exits 1.
    pub fn exit(&self) -> ! {
        let time = civil_time(SystemTime::now(), false);
        eprintln!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02} {self}",
            time.year, time.month, time.day, time.hour, time.minute, time.second
        );
        std::process::exit(1)
    }
}

/// Go's text for an OS error: the C library's message, starting lower case,
/// without Rust's `(os error N)`.
pub fn os_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(end) if error.raw_os_error().is_some() => &text[..end],
        _ => text.as_str(),
    };
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// Installs the global logger. Keep the handle to reopen the file on
/// `SIGUSR1` and to change the levels on reload.
pub fn init(config: LogConfig) -> Result<LogHandle, LogError> {
    let (subscriber, handle) = build(config, SystemTime::now)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadyInstalled)?;
    handle.rotate_if_over_limit();
    Ok(handle)
}

/// Logs a `[FTL]` line and exits 1, as the reference's fatal errors do.
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    tracing::error!(target: FATAL_TARGET, "{message}");
    std::process::exit(1)
}

/// Controls the installed logger.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("LogHandle").finish_non_exhaustive()
    }
}

impl LogHandle {
    /// Reopens the log file (after it was moved away by logrotate, say) and
    /// logs the outcome as the reference does. Without a log file it only
    /// logs that there is nothing to reopen. On error the old file stays in
    /// use and the error is logged and returned.
    pub fn reopen(&self) -> io::Result<()> {
        let result = self.shared.lock_sink().reopen();
        match &result {
            Ok(true) => tracing::info!("File log re-opened"),
            Ok(false) => tracing::info!("File log re-open ignored, not a file logger"),
            Err(error) => tracing::error!("Unable to re-open the log file: {error}"),
        }
        result.map(|_| ())
    }

    /// Switches debug and trace lines on or off (for a configuration reload).
    pub fn set_levels(&self, debug: bool, trace: bool) {
        self.shared.debug.store(debug, Ordering::Relaxed);
        self.shared.trace.store(trace, Ordering::Relaxed);
    }

    /// Whether the log goes to a file.
    pub fn is_file(&self) -> bool {
        matches!(self.shared.lock_sink().output, Output::File { .. })
    }

    /// A file bigger than the limit at start-up is rotated by the first line,
    /// which is this notice (as in the reference).
    fn rotate_if_over_limit(&self) {
        let over = {
            let sink = self.shared.lock_sink();
            match sink.output {
                Output::File { bytes_written, .. } => {
                    sink.size_limit_bytes > 0 && bytes_written > sink.size_limit_bytes
                }
                _ => false,
            }
        };
        if over {
            tracing::info!("Rotating logfile...");
        }
    }
}

/// Builds the subscriber without installing it (tests install it locally).
fn build(
    config: LogConfig,
    clock: fn() -> SystemTime,
) -> Result<(impl Subscriber + Send + Sync, LogHandle), LogError> {
    let output = match &config.file {
        Some(path) => Output::open(path)?,
        None => Output::Stderr,
    };
    let colors = matches!(output, Output::Stderr) && stderr_is_char_device();
    Ok(build_with(config, clock, output, colors))
}

fn build_with(
    config: LogConfig,
    clock: fn() -> SystemTime,
    output: Output,
    colors: bool,
) -> (impl Subscriber + Send + Sync, LogHandle) {
    let format = LineFormat {
        pid_prefix: format!("[{}] ", std::process::id()),
        logtime: config.logtime,
        logtime_utc: config.logtime_utc,
        colors,
        clock,
    };
    let shared = Arc::new(Shared {
        sink: Mutex::new(Sink {
            output,
            size_limit_bytes: config.size_limit_bytes,
            format: format.clone(),
        }),
        debug: AtomicBool::new(config.debug),
        trace: AtomicBool::new(config.trace),
    });
    let level_filter = LevelSwitch(Arc::clone(&shared));
    let layer = tracing_subscriber::fmt::layer()
        .event_format(format)
        .with_writer(SinkWriter(Arc::clone(&shared)))
        .with_filter(level_filter);
    let subscriber = tracing_subscriber::registry().with(layer);
    (subscriber, LogHandle { shared })
}

/// State shared by the subscriber and the handle.
struct Shared {
    sink: Mutex<Sink>,
    debug: AtomicBool,
    trace: AtomicBool,
}

impl Shared {
    fn lock_sink(&self) -> MutexGuard<'_, Sink> {
        // A panic while writing a line leaves the sink usable.
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shows debug and trace lines according to the switches in [`Shared`].
struct LevelSwitch(Arc<Shared>);

impl<S> Filter<S> for LevelSwitch {
    fn enabled(&self, metadata: &Metadata<'_>, _context: &Context<'_, S>) -> bool {
        match *metadata.level() {
            Level::DEBUG => self.0.debug.load(Ordering::Relaxed),
            Level::TRACE => self.0.trace.load(Ordering::Relaxed),
            _ => true,
        }
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Debug and trace can be switched at run time, so their call sites
        // must be asked again each time rather than cached.
        match *metadata.level() {
            Level::DEBUG | Level::TRACE => Interest::sometimes(),
            _ => Interest::always(),
        }
    }
}

/// Where lines go.
enum Output {
    Stderr,
    File {
        path: PathBuf,
        file: File,
        /// Size of the file: what it held when opened plus what we wrote.
        bytes_written: u64,
    },
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Output {
    fn open(path: &Path) -> Result<Output, LogError> {
        let open_error = |source| LogError::OpenFile {
            path: path.to_path_buf(),
            source,
        };
        let file = open_append(path).map_err(open_error)?;
        let bytes_written = file.metadata().map_err(open_error)?.len();
        Ok(Output::File {
            path: path.to_path_buf(),
            file,
            bytes_written,
        })
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// The destination of lines, with what rotation needs.
struct Sink {
    output: Output,
    size_limit_bytes: u64,
    format: LineFormat,
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match &mut self.output {
            Output::Stderr => io::stderr().lock().write_all(line),
            Output::File {
                file,
                bytes_written,
                ..
            } => {
                file.write_all(line)?;
                *bytes_written += line.len() as u64;
                if self.size_limit_bytes > 0 && *bytes_written > self.size_limit_bytes {
                    self.rotate();
                }
                Ok(())
            }
            #[cfg(test)]
            Output::Memory(buffer) => {
                buffer.lock().unwrap().extend_from_slice(line);
                Ok(())
            }
        }
    }

    /// Returns whether there was a file to reopen.
    fn reopen(&mut self) -> io::Result<bool> {
        let Output::File { path, .. } = &self.output else {
            return Ok(false);
        };
        let fresh = Output::open(path).map_err(|error| match error {
            LogError::OpenFile { source, .. } => source,
            LogError::AlreadyInstalled => unreachable!("opening a file installs nothing"),
        })?;
        self.output = fresh;
        Ok(true)
    }

    /// Moves the full file to `<name>.<YYYY.MM.DD.hh.mm.ss.nanoseconds>` and
    /// starts a new one whose first line names the backup, as the reference
    /// does. If the new file cannot be opened we keep writing to the old one.
    fn rotate(&mut self) {
        let Output::File { path, .. } = &self.output else {
            unreachable!("only files rotate");
        };
        let path = path.clone();
        let now = (self.format.clock)();
        let time = civil_time(now, false);
        let backup = format!(
            "{}.{:04}.{:02}.{:02}.{:02}.{:02}.{:02}.{:09}",
            path.display(),
            time.year,
            time.month,
            time.day,
            time.hour,
            time.minute,
            time.second,
            time.nanosecond
        );
        // The reference ignores a failed rename too: the file then just grows.
        let _ = std::fs::rename(&path, &backup);
        let Ok(mut file) = open_append(&path) else {
            return;
        };
        let mut note = String::new();
        self.format.write_prefix(&mut note, Label::Info);
        let _ = write!(
            note,
            "Rotated log, backup saved as {}\r\n",
            crate::flags::go_quote(&backup)
        );
        let _ = file.write_all(note.as_bytes());
        self.output = Output::File {
            path,
            file,
            bytes_written: note.len() as u64,
        };
    }
}

/// Hands the fmt layer a locked sink for each line.
struct SinkWriter(Arc<Shared>);

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = SinkGuard<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkGuard(self.0.lock_sink())
    }
}

struct SinkGuard<'a>(MutexGuard<'a, Sink>);

impl io::Write for SinkGuard<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // The fmt layer hands over a whole line at once.
        self.0.write_line(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reference's level labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Info,
    Debug,
    Warn,
    Error,
    Fatal,
    Trace,
}

impl Label {
    fn of(event: &Event<'_>) -> Label {
        let metadata = event.metadata();
        match *metadata.level() {
            Level::ERROR if metadata.target() == FATAL_TARGET => Label::Fatal,
            Level::ERROR => Label::Error,
            Level::WARN => Label::Warn,
            Level::INFO => Label::Info,
            Level::DEBUG => Label::Debug,
            Level::TRACE => Label::Trace,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Label::Info => "INF",
            Label::Debug => "DBG",
            Label::Warn => "WRN",
            Label::Error => "ERR",
            Label::Fatal => "FTL",
            Label::Trace => "TRC",
        }
    }

    /// The ANSI colour the reference gives the label on a terminal.
    fn color(self) -> &'static str {
        match self {
            Label::Info => "32",
            Label::Debug => "36",
            Label::Warn => "0;93",
            Label::Error | Label::Fatal => "31",
            Label::Trace => "33",
        }
    }
}

/// Formats the start of each line; the rest is the event's message.
#[derive(Clone)]
struct LineFormat {
    /// `[<pid>] `.
    pid_prefix: String,
    logtime: bool,
    logtime_utc: bool,
    colors: bool,
    /// The wall clock, replaced in tests.
    clock: fn() -> SystemTime,
}

impl LineFormat {
    fn write_prefix(&self, out: &mut String, label: Label) {
        let time = self
            .logtime
            .then(|| civil_time((self.clock)(), self.logtime_utc));
        format_prefix(out, &self.pid_prefix, time.as_ref(), label, self.colors);
    }
}

/// `[pid] 2006/01/02 15:04:05.000000 [INF] `, time and colours optional.
fn format_prefix(
    out: &mut String,
    pid_prefix: &str,
    time: Option<&CivilTime>,
    label: Label,
    colors: bool,
) {
    out.push_str(pid_prefix);
    if let Some(time) = time {
        let _ = write!(
            out,
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06} ",
            time.year,
            time.month,
            time.day,
            time.hour,
            time.minute,
            time.second,
            time.nanosecond / 1_000
        );
    }
    if colors {
        let _ = write!(out, "[\x1b[{}m{}\x1b[0m] ", label.color(), label.text());
    } else {
        let _ = write!(out, "[{}] ", label.text());
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(128);
        self.write_prefix(&mut line, Label::of(event));
        event.record(&mut MessageVisitor { out: &mut line });
        // Like Go's log package: exactly one newline ends a line.
        if !line.ends_with('\n') {
            line.push('\n');
        }
        writer.write_str(&line)
    }
}

/// Writes the message, then any other fields as ` name=value`.
struct MessageVisitor<'a> {
    out: &'a mut String,
}

impl Visit for MessageVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.out.push_str(value);
        } else {
            let _ = write!(self.out, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.out, "{value:?}");
        } else {
            let _ = write!(self.out, " {}={value:?}", field.name());
        }
    }
}

/// A moment as a calendar date and clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilTime {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanosecond: u32,
}

/// Breaks `moment` down in UTC or in the local time zone (from `TZ` or
/// `/etc/localtime`, as Go does).
fn civil_time(moment: SystemTime, utc: bool) -> CivilTime {
    let since_epoch = moment.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() as libc::time_t;
    // SAFETY: `tm` is plain data that the C library fills in; both pointers
    // are valid for the duration of the call and the `_r` variants keep no
    // reference to them.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let filled = if utc {
            libc::gmtime_r(&seconds, &mut tm)
        } else {
            libc::localtime_r(&seconds, &mut tm)
        };
        assert!(!filled.is_null(), "time {seconds} cannot be broken down");
        tm
    };
    let time = CivilTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        // A leap second (60) is possible; keep it as the C library says.
        second: tm.tm_sec as u32,
        nanosecond: since_epoch.subsec_nanos(),
    };
    assert!((1..=12).contains(&time.month) && (1..=31).contains(&time.day));
    time
}

/// The reference colours its labels when stderr is a character device.
fn stderr_is_char_device() -> bool {
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|metadata| metadata.file_type().is_char_device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026/11/22 08:19:30.123456 UTC.
    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_795_335_570, 123_456_789)
    }

    fn capture(config: LogConfig, emit: impl FnOnce(&LogHandle)) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (subscriber, handle) = build_with(
            config,
            fixed_clock,
            Output::Memory(Arc::clone(&buffer)),
            false,
        );
        tracing::subscriber::with_default(subscriber, || emit(&handle));
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn pid() -> u32 {
        std::process::id()
    }

    #[test]
    fn prefix_formats() {
        let time = civil_time(fixed_clock(), true);
        let cases = [
            (
                Some(&time),
                Label::Info,
                false,
                "[7] 2026/11/22 08:19:30.123456 [INF] ",
            ),
            (None, Label::Info, false, "[7] [INF] "),
            (None, Label::Warn, false, "[7] [WRN] "),
            (None, Label::Fatal, false, "[7] [FTL] "),
            (None, Label::Info, true, "[7] [\x1b[32mINF\x1b[0m] "),
            (None, Label::Warn, true, "[7] [\x1b[0;93mWRN\x1b[0m] "),
        ];
        for (time, label, colors, expected) in cases {
            let mut out = String::new();
            format_prefix(&mut out, "[7] ", time, label, colors);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn lines_with_and_without_time() {
        let config = LogConfig {
            logtime_utc: true,
            ..LogConfig::default()
        };
        let text = capture(config, |_| {
            tracing::info!("Starting nats-server");
            tracing::warn!(port = 4222, "odd");
            tracing::error!("bad");
            tracing::error!(target: FATAL_TARGET, "worse");
        });
        let stamp = "2026/11/22 08:19:30.123456";
        let expected = format!(
            "[{p}] {stamp} [INF] Starting nats-server\n[{p}] {stamp} [WRN] odd port=4222\n\
             [{p}] {stamp} [ERR] bad\n[{p}] {stamp} [FTL] worse\n",
            p = pid()
        );
        assert_eq!(text, expected);

        let config = LogConfig {
            logtime: false,
            ..LogConfig::default()
        };
        let text = capture(config, |_| tracing::info!("Server is ready"));
        assert_eq!(text, format!("[{}] [INF] Server is ready\n", pid()));
    }

    #[test]
    fn debug_and_trace_are_separate_switches() {
        let base = LogConfig {
            logtime: false,
            ..LogConfig::default()
        };
        let emit = |_: &LogHandle| {
            tracing::debug!("d");
            tracing::trace!("t");
        };
        assert_eq!(capture(base.clone(), emit), "");
        let debug = LogConfig {
            debug: true,
            ..base.clone()
        };
        assert_eq!(capture(debug, emit), format!("[{}] [DBG] d\n", pid()));
        let trace = LogConfig {
            trace: true,
            ..base.clone()
        };
        assert_eq!(capture(trace, emit), format!("[{}] [TRC] t\n", pid()));
        let switched = capture(base, |handle| {
            handle.set_levels(true, true);
            emit(handle);
        });
        assert_eq!(
            switched,
            format!("[{p}] [DBG] d\n[{p}] [TRC] t\n", p = pid())
        );
    }

    #[test]
    fn config_from_the_command_line() {
        let options = CliOptions {
            logtime: Some(false),
            trace: Some(true),
            log_size_limit: Some(-5),
            ..CliOptions::default()
        };
        let config = LogConfig::from_cli(&options);
        assert!(!config.logtime && config.trace && !config.debug);
        assert_eq!(config.size_limit_bytes, 0);
        assert_eq!(
            LogConfig::from_cli(&CliOptions::default()),
            LogConfig::default()
        );
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rnats-log-{name}-{}", pid()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_is_appended_reopened_and_rotated() {
        let dir = scratch_dir("file");
        let path = dir.join("server.log");
        std::fs::write(&path, "old\n").unwrap();
        let config = LogConfig {
            file: Some(path.clone()),
            logtime: false,
            size_limit_bytes: 200,
            ..LogConfig::default()
        };
        let (subscriber, handle) = build(config, fixed_clock).unwrap();
        assert!(handle.is_file());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("one");
            std::fs::rename(&path, dir.join("moved.log")).unwrap();
            handle.reopen().unwrap();
            tracing::info!("two");
            tracing::info!("{}", "x".repeat(200));
        });
        let moved = std::fs::read_to_string(dir.join("moved.log")).unwrap();
        assert_eq!(moved, format!("old\n[{}] [INF] one\n", pid()));
        let backup_name = "server.log.2026.11.22.08.19.30.123456789";
        let backups: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("server.log."))
            .collect();
        // The rotation time is local; the name's shape is what matters here.
        assert_eq!(backups.len(), 1);
        assert_eq!(backups[0].len(), backup_name.len());
        let backup = std::fs::read_to_string(dir.join(&backups[0])).unwrap();
        assert!(backup.starts_with(&format!("[{}] [INF] File log re-opened\n", pid())));
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert!(fresh.starts_with(&format!(
            "[{}] [INF] Rotated log, backup saved as \"",
            pid()
        )));
        assert!(fresh.ends_with("\"\r\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_failure_reads_like_the_reference() {
        let config = LogConfig {
            file: Some(PathBuf::from("/nonexistent/x")),
            ..LogConfig::default()
        };
        let error = build(config, fixed_clock).err().unwrap();
        assert_eq!(
            error.to_string(),
            "error opening file: open /nonexistent/x: no such file or directory"
        );
    }

    #[test]
    fn reopen_without_a_file_says_so() {
        let config = LogConfig {
            logtime: false,
            ..LogConfig::default()
        };
        let text = capture(config, |handle| handle.reopen().unwrap());
        assert_eq!(
            text,
            format!(
                "[{}] [INF] File log re-open ignored, not a file logger\n",
                pid()
            )
        );
    }
}
