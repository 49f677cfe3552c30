//! `--signal <signal>[=<pid or pid file>]`: signal a running server, then exit.
//!
//! Input: the signal's name and the optional target from the command line.
//! Output: Unix signals sent, or a [`SignalError`] whose text is the
//! reference's (the caller prints `rnats-server: <error>` and exits 1; on
//! success it exits 0 silently).
//!
//! The names map to the signals the reference's server handles:
//!
//! | name | signal | effect on the server |
//! | --- | --- | --- |
//! | `stop` | SIGKILL | killed at once |
//! | `quit` | SIGINT | shuts down |
//! | `term` | SIGTERM | shuts down (unless in lame duck mode) |
//! | `reopen` | SIGUSR1 | reopens its log file |
//! | `reload` | SIGHUP | reloads its configuration |
//! | `ldm` | SIGUSR2 | enters lame duck mode |
//!
//! The target is a pid, a pid followed by `*` (every running server whose pid
//! starts with those digits; `*` alone is all of them), or a file holding a
//! pid. Without a target, the single running `rnats-server` process (other
//! than this one) is signalled; none or several is an error. As in the
//! reference, the target is resolved before the signal's name is checked.
//!
//! Two deliberate differences: a pid file's surrounding whitespace (a
//! trailing newline) is ignored, and pids below 1 are refused, since
//! `kill(-1, ..)` would signal every process we may signal.

use std::io;
use std::path::Path;

use crate::flags::{go_quote, PROGRAM_NAME};
use crate::logging::os_error_text;

/// A signal the server understands, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCommand {
    /// `stop`: SIGKILL.
    Stop,
    /// `quit`: SIGINT.
    Quit,
    /// `term`: SIGTERM.
    Term,
    /// `reopen`: SIGUSR1.
    Reopen,
    /// `reload`: SIGHUP.
    Reload,
    /// `ldm`: SIGUSR2.
    LameDuck,
}

impl SignalCommand {
    /// Every command, for tables and tests.
    pub const ALL: [SignalCommand; 6] = [
        SignalCommand::Stop,
        SignalCommand::Quit,
        SignalCommand::Term,
        SignalCommand::Reopen,
        SignalCommand::Reload,
        SignalCommand::LameDuck,
    ];

    /// The command of a name (case matters, as in the reference).
    pub fn from_name(name: &str) -> Option<SignalCommand> {
        SignalCommand::ALL
            .into_iter()
            .find(|command| command.name() == name)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SignalCommand::Stop => "stop",
            SignalCommand::Quit => "quit",
            SignalCommand::Term => "term",
            SignalCommand::Reopen => "reopen",
            SignalCommand::Reload => "reload",
            SignalCommand::LameDuck => "ldm",
        }
    }

    /// The Unix signal sent.
    pub fn signal_number(self) -> libc::c_int {
        match self {
            SignalCommand::Stop => libc::SIGKILL,
            SignalCommand::Quit => libc::SIGINT,
            SignalCommand::Term => libc::SIGTERM,
            SignalCommand::Reopen => libc::SIGUSR1,
            SignalCommand::Reload => libc::SIGHUP,
            SignalCommand::LameDuck => libc::SIGUSR2,
        }
    }
}

/// Why no signal, or not every signal, was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The target is neither a pid, a pid glob, nor a file holding a pid.
    #[error("invalid pid: {0}")]
    InvalidPid(String),
    /// The running processes could not be listed.
    #[error("unable to resolve pid, try providing one")]
    Unresolvable,
    /// No target was given and several servers run.
    #[error("multiple {PROGRAM_NAME} processes running:{}", pid_lines(.0))]
    Multiple(Vec<i32>),
    /// No target was given and no server runs.
    #[error("no {PROGRAM_NAME} processes running")]
    NoneRunning,
    /// The signal's name is not one of [`SignalCommand`]'s.
    #[error("unknown signal {}", go_quote(.0))]
    UnknownSignal(String),
    /// `kill` failed for these processes.
    #[error("{}", kill_failure_lines(.0))]
    Kill(Vec<KillFailure>),
}

/// One failed `kill`.
#[derive(Debug)]
pub struct KillFailure {
    /// The signal's name as given.
    pub signal: String,
    /// The process.
    pub pid: i32,
    /// Why it failed.
    pub error: io::Error,
}

fn pid_lines(pids: &[i32]) -> String {
    pids.iter().map(|pid| format!("\n{pid}")).collect()
}

/// Each failure on its own line, after a line break, as the reference prints.
fn kill_failure_lines(failures: &[KillFailure]) -> String {
    failures
        .iter()
        .map(|failure| {
            format!(
                "\nsignal {} {}: {}",
                go_quote(&failure.signal),
                failure.pid,
                os_error_text(&failure.error)
            )
        })
        .collect()
}

/// Sends `signal` to the target (see the module doc). The caller exits 0 on
/// success, and on error prints `rnats-server: <error>` to stderr and exits 1
/// (`flags::die` does both).
pub fn execute(signal: &str, target: Option<&str>) -> Result<(), SignalError> {
    let own_pid = std::process::id() as i32;
    let (command, pids) = plan(signal, target, || running_pids(PROGRAM_NAME, own_pid))?;
    let failures: Vec<KillFailure> = pids
        .into_iter()
        .filter_map(|pid| {
            send(pid, command).err().map(|error| KillFailure {
                signal: signal.to_string(),
                pid,
                error,
            })
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(SignalError::Kill(failures))
    }
}

/// Decides what to send to whom, without sending anything. `running` lists
/// the other servers' pids; it is called only when no exact pid is given.
fn plan(
    signal: &str,
    target: Option<&str>,
    running: impl FnOnce() -> io::Result<Vec<i32>>,
) -> Result<(SignalCommand, Vec<i32>), SignalError> {
    let target = target.map(read_pid_file_or_keep).unwrap_or_default();
    let (prefix, is_glob) = match target.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (target.as_str(), false),
    };
    let mut pids = Vec::new();
    if !prefix.is_empty() {
        match prefix.parse::<i32>() {
            Ok(pid) if pid > 0 => pids.push(pid),
            _ => return Err(SignalError::InvalidPid(prefix.to_string())),
        }
    }
    if prefix.is_empty() || is_glob {
        pids = running().map_err(|_| SignalError::Unresolvable)?;
        if is_glob {
            pids.retain(|pid| pid.to_string().starts_with(prefix));
        } else if pids.len() > 1 {
            return Err(SignalError::Multiple(pids));
        } else if pids.is_empty() {
            return Err(SignalError::NoneRunning);
        }
    }
    let command = SignalCommand::from_name(signal)
        .ok_or_else(|| SignalError::UnknownSignal(signal.to_string()))?;
    Ok((command, pids))
}

/// The reference reads the target as a pid file when such a file exists.
fn read_pid_file_or_keep(target: &str) -> String {
    match std::fs::read_to_string(target) {
        Ok(contents) => contents.trim().to_string(),
        Err(_) => target.to_string(),
    }
}

fn send(pid: i32, command: SignalCommand) -> io::Result<()> {
    assert!(pid > 0, "refusing to signal process group or all processes");
    // SAFETY: kill takes plain integers and touches no memory of ours.
    let status = unsafe { libc::kill(pid, command.signal_number()) };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pids of processes whose name contains `name` (what `pgrep <name>` finds),
/// in increasing order, except `own_pid`.
fn running_pids(name: &str, own_pid: i32) -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|text| text.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may exit while we look; skip it then.
        let Ok(comm) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
        else {
            continue;
        };
        if pid != own_pid && comm.trim_end_matches('\n').contains(name) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_reference_signals() {
        let table = [
            ("stop", libc::SIGKILL),
            ("quit", libc::SIGINT),
            ("term", libc::SIGTERM),
            ("reopen", libc::SIGUSR1),
            ("reload", libc::SIGHUP),
            ("ldm", libc::SIGUSR2),
        ];
        for (name, signal) in table {
            let command = SignalCommand::from_name(name).unwrap();
            assert_eq!(command.name(), name);
            assert_eq!(command.signal_number(), signal);
        }
        assert_eq!(SignalCommand::from_name("RELOAD"), None);
        assert_eq!(SignalCommand::from_name("foo"), None);
    }

    fn none_running() -> io::Result<Vec<i32>> {
        Ok(vec![])
    }

    #[test]
    fn targets() {
        let never = || -> io::Result<Vec<i32>> { panic!("no lookup expected") };
        let (command, pids) = plan("reload", Some("1234"), never).unwrap();
        assert_eq!((command, pids), (SignalCommand::Reload, vec![1234]));

        let (_, pids) = plan("quit", None, || Ok(vec![77])).unwrap();
        assert_eq!(pids, vec![77]);

        let (_, pids) = plan("quit", Some("12*"), || Ok(vec![12, 123, 45, 1])).unwrap();
        assert_eq!(pids, vec![12, 123]);
        let (_, pids) = plan("quit", Some("*"), || Ok(vec![5, 6])).unwrap();
        assert_eq!(pids, vec![5, 6]);
        let (_, pids) = plan("quit", Some("9*"), none_running).unwrap();
        assert!(pids.is_empty());

        let dir = std::env::temp_dir().join(format!("rnats-signal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("x.pid");
        std::fs::write(&pid_file, "4321\n").unwrap();
        let (command, pids) = plan("ldm", pid_file.to_str(), never).unwrap();
        assert_eq!((command, pids), (SignalCommand::LameDuck, vec![4321]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_read_like_the_reference() {
        let text = |result: Result<(SignalCommand, Vec<i32>), SignalError>| {
            result.unwrap_err().to_string()
        };
        assert_eq!(
            text(plan("reload", Some("abc"), none_running)),
            "invalid pid: abc"
        );
        assert_eq!(
            text(plan("reload", Some("x*"), none_running)),
            "invalid pid: x"
        );
        assert_eq!(
            text(plan("reload", Some("-1"), none_running)),
            "invalid pid: -1"
        );
        assert_eq!(
            text(plan("foo", Some("1"), none_running)),
            "unknown signal \"foo\""
        );
        assert_eq!(
            text(plan("reload", None, none_running)),
            "no rnats-server processes running"
        );
        // The target is resolved before the name is checked.
        assert_eq!(
            text(plan("foo", None, || Ok(vec![5409, 5666]))),
            "multiple rnats-server processes running:\n5409\n5666"
        );
        assert_eq!(
            text(plan("reload", None, || Err(io::Error::other("no /proc")))),
            "unable to resolve pid, try providing one"
        );
        let failure = KillFailure {
            signal: "reload".into(),
            pid: 99999,
            error: io::Error::from_raw_os_error(libc::ESRCH),
        };
        assert_eq!(
            SignalError::Kill(vec![failure]).to_string(),
            "\nsignal \"reload\" 99999: no such process"
        );
    }

    #[test]
    fn process_scan_skips_ourselves() {
        let own = std::process::id() as i32;
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let pids = running_pids(comm.trim_end(), own).unwrap();
        assert!(!pids.contains(&own));
        let pids = running_pids(comm.trim_end(), -1).unwrap();
        assert!(pids.contains(&own));
    }
}
