//! The machine's side of JetStream's settings: the temporary directory,
//! memory and disk space the defaults are computed from, and the store
//! directory made ready, as nats-server does at start.
//!
//! Core decides everything else ([`JetStreamRequest`]): this file only
//! measures and creates, then hands numbers back.

use std::path::Path;

use rnats_core::jetstream::banner::StartupNotes;
use rnats_core::jetstream::config::{
    JetStreamConfig, JetStreamRequest, MachineDefaults, MAX_MEMORY_FALLBACK, MAX_STORE_FALLBACK,
};

/// The store directory, limits and notes for the start-up lines, or why
/// JetStream cannot start (the reference's "Can't start JetStream: ...").
pub fn resolve(request: &JetStreamRequest) -> Result<(JetStreamConfig, StartupNotes), String> {
    let temp_dir = std::env::temp_dir();
    let temp_dir = temp_dir.to_string_lossy();
    let store_dir = request.store_dir(&temp_dir);
    let path = Path::new(&store_dir.path);
    let machine = if request.is_dynamic() {
        MachineDefaults {
            max_memory: memory_default(),
            max_store: disk_default(path),
        }
    } else {
        // Both limits are configured; nothing is measured.
        MachineDefaults {
            max_memory: 0,
            max_store: 0,
        }
    };
    let config = request.resolve(&store_dir, machine);
    prepare_store_dir(path)?;
    Ok((config, StartupNotes::new(request, &store_dir)))
}

/// 75% of the machine's memory, or 256 MB when it cannot be read.
pub fn memory_default() -> u64 {
    match total_memory() {
        Some(total) if total > 0 => total / 4 * 3,
        _ => MAX_MEMORY_FALLBACK,
    }
}

#[cfg(target_os = "linux")]
fn total_memory() -> Option<u64> {
    // SAFETY: sysinfo fills the zeroed struct it is given and reads nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable sysinfo struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    // `totalram` is a C unsigned long: 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    u64::from(info.totalram).checked_mul(u64::from(info.mem_unit))
}

#[cfg(not(target_os = "linux"))]
fn total_memory() -> Option<u64> {
    None
}

/// 75% of the disk space available at `store_dir` (created first, as the
/// reference does), or 1 TB when it cannot be measured.
pub fn disk_default(store_dir: &Path) -> u64 {
    if !store_dir.exists() {
        let _ = create_dir(store_dir);
    }
    available_bytes(store_dir).map_or(MAX_STORE_FALLBACK, |available| available / 4 * 3)
}

#[cfg(unix)]
fn available_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `stat` is valid and writable.
    if unsafe { libc::statvfs(name.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // The reference multiplies the blocks available by the block size.
    #[allow(clippy::useless_conversion)]
    u64::from(stat.f_bavail).checked_mul(u64::from(stat.f_bsize))
}

#[cfg(not(unix))]
fn available_bytes(_path: &Path) -> Option<u64> {
    None
}

fn create_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o750);
    }
    builder.create(path)
}

/// The store directory exists, is a directory, and can be written to; the
/// errors are the reference's.
pub fn prepare_store_dir(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create_dir(path).map_err(|error| {
                format!(
                    "could not create storage directory - mkdir {}: {}",
                    path.display(),
                    crate::logging::os_error_text(&error)
                )
            })
        }
        Ok(metadata) if metadata.is_dir() => {
            let probe = path.join(format!("_test_{}", std::process::id()));
            std::fs::File::create(&probe)
                .map_err(|_| String::from("storage directory is not writable"))?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        _ => Err(String::from("storage directory is not a directory")),
    }
}

/// The `Node:` of the start-up lines: eight characters from the SHA-256 of
/// the server name, each byte taken modulo 62 into `0-9A-Za-z`.
pub fn node_hash(server_name: &str) -> String {
    use sha2::Digest;
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const LENGTH: usize = 8;
    let digest = sha2::Sha256::digest(server_name.as_bytes());
    let hash: String = digest[..LENGTH]
        .iter()
        .map(|byte| char::from(DIGITS[usize::from(*byte) % DIGITS.len()]))
        .collect();
    assert_eq!(hash.len(), LENGTH);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnats_core::store::SyncPolicy;

    /// From the reference's start-up lines: "Name: NADZH7..." gave "Node: RLX4ct7Z".
    #[test]
    fn node_hash_as_the_reference_computes_it() {
        assert_eq!(
            node_hash("NADZH7LLWDKQHSJM6BO6T74ZMVC63LSB5G7INQSRPAIFBRH2XUETJ34F"),
            "RLX4ct7Z"
        );
        assert_eq!(
            node_hash("NAWIMSEXJB2FOXP7TF6FU4XZIWWH6UEIZAHG3VDCFIG6PBOIKXG5H2VK"),
            "0dGF7iY6"
        );
    }

    #[test]
    fn the_machine_gives_the_defaults() {
        assert!(memory_default() > 0);
        let dir = std::env::temp_dir().join(format!("rnats-js-{}", std::process::id()));
        let request = JetStreamRequest {
            store_dir: Some(dir.display().to_string()),
            max_memory: None,
            max_store: Some(1 << 20),
            domain: None,
            strict: true,
            sync: SyncPolicy::BeforeAck,
            max_buffered_msgs: None,
            max_buffered_size: None,
            encryption: None,
            limits: Default::default(),
        };
        let (config, notes) = resolve(&request).unwrap();
        assert!(notes.dynamic && !notes.temporary_store_dir);
        assert_eq!(
            config.store_dir,
            dir.join("jetstream").display().to_string()
        );
        assert!(dir.join("jetstream").is_dir());
        assert_eq!(config.max_store, 1 << 20);
        assert_eq!(config.max_memory, memory_default());
        let file = dir.join("a_file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            prepare_store_dir(&file),
            Err(String::from("storage directory is not a directory"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
