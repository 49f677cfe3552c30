//! What the server logs when JetStream starts, line for line as nats-server
//! v2.15.1 logs it (`EnableJetStream`, `enableJetStream`,
//! `dynJetStreamConfig`), with rnats's values.
//!
//! Input: the resolved [`JetStreamConfig`] and how it was reached
//! ([`StartupNotes`]). Output: `(level, text)` pairs the runtime logs in
//! order. Pure: the runtime only adds the time it took.

use std::time::Duration;

use super::config::{AccountLimits, JetStreamConfig, JetStreamRequest, StoreDir};
use crate::server::LogLevel;

/// The JetStream API level rnats reports, as v2.15.1 does.
pub const API_LEVEL: u32 = 5;

/// How the configuration was reached, for the lines that say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupNotes {
    /// A limit was taken from the machine (the reference's "dynamic
    /// configuration").
    pub dynamic: bool,
    /// The store directory is a temporary one.
    pub temporary_store_dir: bool,
}

impl StartupNotes {
    pub fn new(request: &JetStreamRequest, store_dir: &StoreDir) -> Self {
        StartupNotes {
            dynamic: request.is_dynamic(),
            temporary_store_dir: store_dir.temporary,
        }
    }
}

const TEMPORARY_WARNING: &str =
    "Temporary storage directory used, data could be lost on system reboot";

const LOGO: [&str; 7] = [
    "    _ ___ _____ ___ _____ ___ ___   _   __  __",
    " _ | | __|_   _/ __|_   _| _ \\ __| /_\\ |  \\/  |",
    "| || | _|  | | \\__ \\ | | |   / _| / _ \\| |\\/| |",
    " \\__/|___| |_| |___/ |_| |_|_\\___/_/ \\_\\_|  |_|",
    "",
    "         https://docs.nats.io/jetstream",
    "",
];

/// The lines from "Starting JetStream" to the API exports, in order.
pub fn startup_lines(config: &JetStreamConfig, notes: StartupNotes) -> Vec<(LogLevel, String)> {
    let mut lines = vec![(LogLevel::Info, String::from("Starting JetStream"))];
    let temporary = (LogLevel::Warn, String::from(TEMPORARY_WARNING));
    if notes.dynamic {
        if notes.temporary_store_dir {
            lines.push(temporary.clone());
        }
        lines.push((
            LogLevel::Debug,
            format!(
                "JetStream creating dynamic configuration - {} memory, {} disk",
                friendly_bytes(config.max_memory),
                friendly_bytes(config.max_store)
            ),
        ));
    } else if notes.temporary_store_dir {
        lines.push(temporary);
    }
    lines.extend(LOGO.iter().map(|line| (LogLevel::Info, line.to_string())));
    let mut info = |text: String| lines.push((LogLevel::Info, text));
    info(String::from("---------------- JETSTREAM ----------------"));
    if config.strict {
        info(String::from("  Strict:          true"));
    }
    info(format!(
        "  Max Memory:      {}",
        friendly_bytes(config.max_memory)
    ));
    info(format!(
        "  Max Storage:     {}",
        friendly_bytes(config.max_store)
    ));
    info(format!("  Store Directory: \"{}\"", config.store_dir));
    if let Some(domain) = &config.domain {
        info(format!("  Domain:          {domain}"));
    }
    if let Some(encryption) = &config.encryption {
        info(format!("  Encryption:      {}", encryption.cipher.name()));
    }
    info(format!("  API Level:       {API_LEVEL}"));
    info(String::from("-------------------------------------------"));
    lines.push((LogLevel::Debug, String::from("  Exports:")));
    lines.push((LogLevel::Debug, String::from("     $JS.API.>")));
    lines
}

/// The debug lines for an account JetStream is enabled for.
pub fn account_lines(account: &str, limits: &AccountLimits) -> Vec<(LogLevel, String)> {
    let shown = |limit: Option<u64>| match limit {
        Some(bytes) => friendly_bytes(bytes),
        None => friendly_bytes_signed(-1),
    };
    vec![
        (
            LogLevel::Debug,
            format!(
                "Enabled JetStream for account {}",
                crate::format::go_quote(account.as_bytes())
            ),
        ),
        (
            LogLevel::Debug,
            format!("  Max Memory:      {}", shown(limits.max_memory)),
        ),
        (
            LogLevel::Debug,
            format!("  Max Storage:     {}", shown(limits.max_store)),
        ),
    ]
}

/// The line after the others, once JetStream runs.
pub fn started_line(elapsed: Duration) -> String {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    format!(
        "Took {} to start JetStream",
        crate::format::go_duration(nanos)
    )
}

/// A byte count as the reference prints it: under 1024 as is (`512 B`),
/// else with two decimals in the largest 1024-based unit (`11.71 GB`).
pub fn friendly_bytes(bytes: u64) -> String {
    friendly_bytes_signed(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// [`friendly_bytes`] of a signed count (the reference's -1 for "no limit"
/// prints as `-1 B`).
pub fn friendly_bytes_signed(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    const BASE: f64 = 1024.0;
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // The unit from logarithms in floating point, as the reference finds
    // it: 1048575 bytes is "1024.00 KB", not "1.00 MB".
    let value = bytes as f64;
    let exponent = (value.ln() / BASE.ln()) as i32;
    assert!((1..=6).contains(&exponent), "{bytes} gives {exponent}");
    let unit = UNITS[usize::try_from(exponent - 1).expect("at least 1")];
    format!("{:.2} {unit}B", value / BASE.powi(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::config::{Cipher, Encryption};

    /// Values and texts from nats-server v2.15.1's start-up lines.
    #[test]
    fn sizes_as_the_reference_prints_them() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KB"),
            (1_048_575, "1024.00 KB"),
            (1_048_576, "1.00 MB"),
            (1 << 30, "1.00 GB"),
            (1 << 40, "1.00 TB"),
            (1 << 50, "1.00 PB"),
            (1 << 60, "1.00 EB"),
            (12_345_678_901, "11.50 GB"),
            (999_999_999_999, "931.32 GB"),
            (1_000_000_000, "953.67 MB"),
            (i64::MAX as u64, "8.00 EB"),
            (u64::MAX, "8.00 EB"),
        ] {
            assert_eq!(friendly_bytes(bytes), text, "{bytes}");
        }
        assert_eq!(friendly_bytes_signed(-1), "-1 B");
    }

    fn config() -> JetStreamConfig {
        JetStreamConfig::with_bounds("/tmp/jsx/jetstream", 18_962_383_667, 33_103_854_387)
    }

    fn texts(lines: &[(LogLevel, String)]) -> Vec<String> {
        lines
            .iter()
            .map(|(level, text)| format!("{level:?} {text}"))
            .collect()
    }

    /// `nats-server -js -sd /tmp/jsx -D`, line for line.
    #[test]
    fn the_lines_of_a_dynamic_configuration() {
        let notes = StartupNotes {
            dynamic: true,
            temporary_store_dir: false,
        };
        let lines = texts(&startup_lines(&config(), notes));
        let expected = [
            "Info Starting JetStream",
            "Debug JetStream creating dynamic configuration - 17.66 GB memory, 30.83 GB disk",
            "Info     _ ___ _____ ___ _____ ___ ___   _   __  __",
            "Info  _ | | __|_   _/ __|_   _| _ \\ __| /_\\ |  \\/  |",
            "Info | || | _|  | | \\__ \\ | | |   / _| / _ \\| |\\/| |",
            "Info  \\__/|___| |_| |___/ |_| |_|_\\___/_/ \\_\\_|  |_|",
            "Info ",
            "Info          https://docs.nats.io/jetstream",
            "Info ",
            "Info ---------------- JETSTREAM ----------------",
            "Info   Strict:          true",
            "Info   Max Memory:      17.66 GB",
            "Info   Max Storage:     30.83 GB",
            "Info   Store Directory: \"/tmp/jsx/jetstream\"",
            "Info   API Level:       5",
            "Info -------------------------------------------",
            "Debug   Exports:",
            "Debug      $JS.API.>",
        ];
        assert_eq!(lines, expected);
        let temporary = StartupNotes {
            dynamic: true,
            temporary_store_dir: true,
        };
        let lines = texts(&startup_lines(&config(), temporary));
        assert_eq!(
            lines[1],
            "Warn Temporary storage directory used, data could be lost on system reboot"
        );
        assert!(lines[2].starts_with("Debug JetStream creating dynamic configuration"));
    }

    /// A `jetstream {}` block with both limits, a domain, `strict: false`
    /// and a key (which rnats refuses today; the line is still the
    /// reference's).
    #[test]
    fn the_lines_of_a_configured_block() {
        let mut config = config();
        config.max_memory = 1_000_000_000;
        config.max_store = 1_000_000_000_000;
        config.store_dir = String::from("/tmp/jetstream");
        config.domain = Some(String::from("hub"));
        config.strict = false;
        config.encryption = Some(Encryption {
            cipher: Cipher::Aes,
            key: String::from("k"),
            prev_key: None,
        });
        let notes = StartupNotes {
            dynamic: false,
            temporary_store_dir: true,
        };
        let lines = texts(&startup_lines(&config, notes));
        assert_eq!(
            lines[..2],
            [
                "Info Starting JetStream",
                "Warn Temporary storage directory used, data could be lost on system reboot"
            ]
        );
        assert_eq!(
            lines[9..16],
            [
                "Info ---------------- JETSTREAM ----------------",
                "Info   Max Memory:      953.67 MB",
                "Info   Max Storage:     931.32 GB",
                "Info   Store Directory: \"/tmp/jetstream\"",
                "Info   Domain:          hub",
                "Info   Encryption:      AES-GCM",
                "Info   API Level:       5",
            ]
        );
    }

    #[test]
    fn account_and_timing_lines() {
        assert_eq!(
            texts(&account_lines("$G", &AccountLimits::default())),
            [
                "Debug Enabled JetStream for account \"$G\"",
                "Debug   Max Memory:      -1 B",
                "Debug   Max Storage:     -1 B",
            ]
        );
        let limits = AccountLimits {
            max_memory: Some(1_000_000),
            ..AccountLimits::default()
        };
        assert_eq!(
            account_lines("A", &limits)[1].1,
            "  Max Memory:      976.56 KB"
        );
        assert_eq!(
            started_line(Duration::from_micros(1397)),
            "Took 1.397ms to start JetStream"
        );
    }
}
