//! The directory resolver's files: the machine decides what the directory
//! must hold (`ResolverWrite`s); the runner makes each change here, one at
//! a time in the order given, off the machine's lock
//! (`Runner::resolver_write_loop`), and reports it done.
//!
//! A saved JWT is written to a temporary file, synced, renamed over
//! `<key>.jwt` and the directory synced: after a crash the file holds the
//! old JWT or the new one, never a torn mix (the reference writes in place
//! without a sync).

use std::io::Write;
use std::path::Path;

use rnats_core::auth::ResolverWrite;

/// Make one change (called on the blocking pool, in order).
pub fn apply(write: &ResolverWrite) -> std::io::Result<()> {
    match write {
        ResolverWrite::Save { path, jwt } => {
            let path = Path::new(path);
            let temp = path.with_extension("jwt.tmp");
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(jwt.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            sync_parent(path)
        }
        ResolverWrite::Delete { path, renamed } => {
            let result = match renamed {
                Some(renamed) => std::fs::rename(path, renamed),
                None => std::fs::remove_file(path),
            };
            match result {
                // Already gone: what the delete wanted.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.and_then(|()| sync_parent(Path::new(path))),
            }
        }
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
