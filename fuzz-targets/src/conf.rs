//! The config file parser (`conf::parse`) and the options mapping
//! (`conf::load_options`) over an in-memory [`ConfSource`].
//!
//! Input: NUL-separated parts, read as UTF-8 (lossily). Part 0 is
//! `main.conf`; parts 1 to 3 are the files `a.conf`, `b.conf` and
//! `c.conf` (found under any directory, so relative, absolute and nested
//! includes all resolve); parts 4 to 6 are the environment variables `A`,
//! `B` and `C`.
//!
//! Checked: no panic, no stack overflow; both calls agree (a text that does
//! not parse does not load, with the same error); every value count stays
//! within `MAX_VALUES`. A file that loads then goes through what
//! rnats-server does next: the unsupported-key policy and the translation
//! into a `ServerConfig` (`conf::server_config`), without flags and with
//! flags over it. Time is bounded by the parser's own limits and
//! watched by libFuzzer's `-timeout`.

use rnats_core::conf::{self, ConfSource, ValueKind, MAX_VALUES};
use rnats_core::server::ServerConfig;

/// Files and environment taken from the fuzzer's input.
pub struct FakeSource<'a> {
    files: [(&'static str, Option<&'a str>); 3],
    env: [(&'static str, Option<&'a str>); 3],
}

impl ConfSource for FakeSource<'_> {
    fn read_include(&self, from: &str, path: &str) -> Result<(String, String), String> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let directory = from.rsplit_once('/').map_or("", |(dir, _)| dir);
        for (file, text) in &self.files {
            if let (true, Some(text)) = (*file == name, text) {
                let resolved = if directory.is_empty() {
                    path.to_string()
                } else {
                    format!("{directory}/{path}")
                };
                // Resolved paths grow with each nested include; keep them short.
                let resolved = if resolved.len() > 256 {
                    name.to_string()
                } else {
                    resolved
                };
                return Ok((resolved, (*text).to_string()));
            }
        }
        Err(format!("open {path}: no such file or directory"))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.map(str::to_string))
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let main = parts.next().unwrap_or("");
    let mut next = || parts.next();
    let source = FakeSource {
        files: [("a.conf", next()), ("b.conf", next()), ("c.conf", next())],
        env: [("A", next()), ("B", next()), ("C", next())],
    };
    let parsed = conf::parse("main.conf", main, &source);
    let loaded = conf::load_options("main.conf", main, &source);
    match (&parsed, &loaded) {
        (Ok(root), _) => {
            assert!(matches!(root.kind, ValueKind::Map(_)));
            assert!(root.node_count() <= MAX_VALUES + 1);
        }
        (Err(parse_error), Err(load_error)) => assert_eq!(parse_error, load_error),
        (Err(_), Ok(_)) => panic!("load_options succeeded on a text that does not parse"),
    }
    if let Ok((options, unsupported)) = loaded {
        translate(&options, unsupported);
    }
}

/// The rest of what rnats-server does with a loaded file, short of files
/// and sockets: the unsupported-key policy and the translation into the
/// machine's configuration, without flags and with TLS flags laid over it.
fn translate(options: &conf::FileOptions, unsupported: Vec<conf::Unsupported>) {
    let refused = conf::refuse_unsupported(unsupported.clone());
    let refusing = unsupported.iter().filter(|key| key.refuses_start()).count();
    match refused {
        Ok(ignored) => assert!(refusing == 0 && ignored.len() == unsupported.len()),
        Err(keys) => assert_eq!(keys.0.len(), refusing),
    }
    let identity = ServerConfig::default();
    let flags = conf::Overrides {
        server_name: Some(String::from("flagged")),
        tls: conf::TlsFlags {
            tls: true,
            cert_file: Some(String::from("c.pem")),
            key_file: Some(String::from("k.pem")),
            ..conf::TlsFlags::default()
        },
        ..conf::Overrides::default()
    };
    for overrides in [conf::Overrides::default(), flags] {
        let Ok(config) = conf::server_config(options, &overrides, &identity) else {
            assert!(options.tls.is_some() && !overrides.tls.given());
            continue;
        };
        assert!(config.max_payload > 0 && config.max_control_line > 0);
        assert!(config.max_pending > 0 && config.ping_max > 0);
        assert!(!config.server_name.is_empty() || identity.identity.server_id.is_empty());
        if overrides.tls.given() {
            assert!(config.tls.required && !config.tls.allow_non_tls);
            assert_eq!(config.server_name, "flagged");
        }
    }
    jetstream(options);
}

/// JetStream's settings from the file, with and without `-js -sd`, resolved
/// against a fixed machine, and their start-up lines.
fn jetstream(options: &conf::FileOptions) {
    use rnats_core::jetstream::banner::{startup_lines, StartupNotes};
    use rnats_core::jetstream::config::MachineDefaults;
    let flags = conf::Overrides {
        jetstream: true,
        store_dir: Some(String::from("/flag")),
        ..conf::Overrides::default()
    };
    for overrides in [conf::Overrides::default(), flags] {
        let request = match conf::jetstream_request(options, &overrides) {
            Ok(Some(request)) => request,
            Ok(None) => {
                assert!(!overrides.jetstream && options.jetstream.enabled != Some(true));
                continue;
            }
            // A bad domain, or JetStream asked of the system account.
            Err(_) => continue,
        };
        let store_dir = request.store_dir("/tmp");
        let machine = MachineDefaults {
            max_memory: 3 << 30,
            max_store: 1 << 40,
        };
        let config = request.resolve(&store_dir, machine);
        assert!(config.store_dir.ends_with("jetstream"));
        if overrides.jetstream {
            assert_eq!(config.store_dir, "/flag/jetstream");
        }
        let lines = startup_lines(&config, StartupNotes::new(&request, &store_dir));
        assert_eq!(lines[0].1, "Starting JetStream");
    }
}
