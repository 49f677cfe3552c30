//! The account resolvers that hold or fetch JWTs outside the
//! configuration: the directory resolvers' store (`full` and `cache`),
//! account JWTs kept as files `<dir>/<account key>.jwt`, as nats-server's
//! `DirJWTStore` keeps them (unsharded); and the URL resolver, which
//! fetches an account's JWT over HTTP (`GET <url><account key>`) the first
//! time a user of it logs in.
//!
//! Between servers (`server/resolver_peers.rs`) the store is compared by
//! [`DirResolver::hash`] (the XOR of every stored JWT's SHA-256, so the
//! order of the files does not matter) and merged with
//! [`DirResolver::save_if_newer`] (a JWT replaces the held one only if it
//! is another JWT issued no earlier), as the reference's pack exchange.
//!
//! Role: hold the JWTs exactly as stored (verified or not: trust is
//! checked when an account is built from one, in `operator.rs`), decide
//! what a save or a delete changes, and name the file operations for the
//! runtime to carry out ([`ResolverWrite`]). It never touches a file.
//!
//! Invariants:
//! - `stored` holds at most `limit` JWTs; a save of a new key beyond it is
//!   refused ("jwt store is full") by the full resolver, and evicts the
//!   least recently saved JWT in the cache (the reference's LRU).
//! - Every change to `stored` yields exactly one [`ResolverWrite`] that
//!   makes the directory say the same.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How the resolver deletes an account's JWT (`allow_delete`, `hard_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtDelete {
    /// Deleting is refused (no `allow_delete`).
    Never,
    /// The file is renamed to `<key>.jwt.deleted`.
    Rename,
    /// The file is removed (`hard_delete: true`).
    Remove,
}

/// Which directory resolver: `full` holds every account and serves its
/// peers; `cache` holds the accounts it looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    Full,
    /// `ttl`: a JWT file is removed this long after it was stored (`None`:
    /// kept until evicted).
    Cache {
        ttl: Option<Duration>,
    },
}

/// How often the full resolver compares its directory with a peer's when
/// no `interval` is set.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How many JWTs the cache holds when no `limit` is set.
pub const DEFAULT_CACHE_LIMIT: u64 = 1000;

/// The directory resolver as configured, with the JWTs it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DirResolver {
    pub dir: String,
    pub kind: DirKind,
    pub delete: JwtDelete,
    /// At most this many JWTs (`None`: no limit).
    pub limit: Option<u64>,
    /// The full resolver asks a peer for differing JWTs this often.
    pub interval: Duration,
    /// How long a lookup from the peers may take (`timeout`).
    pub timeout: Duration,
    /// The JWTs held, by account key, exactly as stored.
    pub stored: BTreeMap<String, String>,
    /// When each JWT was last saved (a counter), for the cache's LRU.
    pub saved_at: BTreeMap<String, u64>,
    pub saves: u64,
}

/// A change to the resolver's directory, for the runtime to make (in the
/// order given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverWrite {
    /// Write `jwt` as the whole content of `path` (atomically, durably).
    Save { path: String, jwt: String },
    /// Remove `path`, or rename it to `renamed`.
    Delete {
        path: String,
        renamed: Option<String>,
    },
}

/// Why a save was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    #[error("jwt store is full")]
    Full,
}

/// `resolver: URL("<base>")`: account JWTs are fetched from `<base><key>`
/// (the base always ends in `/`). The fetch is the runtime's
/// ([`AccountFetch`]); a fetched account stays until the server stops, and
/// a failed fetch is not remembered (the next login asks again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlResolver {
    pub base: String,
    /// `resolver_tls`: how an `https` URL is trusted.
    pub tls: Option<ResolverTls>,
}

/// `resolver_tls { ca_file, cert_file, key_file }`: the roots an `https`
/// account server's certificate must chain to (the system's when no
/// `ca_file`), and the client certificate to show, if any. Paths as
/// written; the runtime reads the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

impl UrlResolver {
    /// The resolver for `url` as configured (a `/` is added when missing,
    /// as the reference does).
    pub fn new(url: &str) -> UrlResolver {
        let mut base = url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        UrlResolver { base, tls: None }
    }

    /// What to fetch for account `key`.
    pub fn fetch(&self, key: &str) -> AccountFetch {
        AccountFetch {
            account: key.to_owned(),
            url: format!("{}{key}", self.base),
            tls: self.tls.clone(),
        }
    }
}

/// An account JWT for the runtime to fetch: an HTTP GET of `url` within
/// [`ACCOUNT_FETCH_TIMEOUT`]; only a `200` answer's body is the JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFetch {
    pub account: String,
    /// Empty: a directory resolver asks its peers instead.
    pub url: String,
    pub tls: Option<ResolverTls>,
}

/// How long a fetch may take (the reference's HTTP client timeout, just
/// under the default auth timeout).
pub const ACCOUNT_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1900);

impl DirResolver {
    /// A full resolver of `dir` with the reference's defaults.
    pub fn full(dir: &str) -> DirResolver {
        DirResolver {
            dir: dir.to_owned(),
            kind: DirKind::Full,
            delete: JwtDelete::Never,
            limit: None,
            interval: DEFAULT_SYNC_INTERVAL,
            timeout: ACCOUNT_FETCH_TIMEOUT,
            stored: BTreeMap::new(),
            saved_at: BTreeMap::new(),
            saves: 0,
        }
    }

    pub fn is_cache(&self) -> bool {
        matches!(self.kind, DirKind::Cache { .. })
    }

    fn path(&self, key: &str) -> String {
        format!("{}/{key}.jwt", self.dir.trim_end_matches('/'))
    }

    /// Store `jwt` for `key`: the file changes to make, in order (none:
    /// the same JWT was already held). A cache at its limit first evicts
    /// the JWT saved longest ago.
    pub fn save(&mut self, key: &str, jwt: &str) -> Result<Vec<ResolverWrite>, SaveError> {
        let mut writes = Vec::new();
        match self.stored.get(key) {
            Some(held) if held == jwt => return Ok(writes),
            Some(_) => {}
            None => {
                if self
                    .limit
                    .is_some_and(|limit| self.stored.len() as u64 >= limit)
                {
                    if !self.is_cache() {
                        return Err(SaveError::Full);
                    }
                    let oldest = self
                        .saved_at
                        .iter()
                        .min_by_key(|(_, at)| **at)
                        .map(|(key, _)| key.clone());
                    writes.extend(oldest.and_then(|oldest| self.evict(&oldest)));
                }
            }
        }
        self.stored.insert(key.to_owned(), jwt.to_owned());
        self.saves += 1;
        self.saved_at.insert(key.to_owned(), self.saves);
        debug_assert!(self
            .limit
            .is_none_or(|limit| self.stored.len() as u64 <= limit));
        writes.push(ResolverWrite::Save {
            path: self.path(key),
            jwt: jwt.to_owned(),
        });
        Ok(writes)
    }

    /// Store `jwt` for `key` unless the JWT held is the same one (same
    /// `jti`) or was issued later: the rule of a merge from a peer and of
    /// a JWT looked up from one. Errors in the reference's words.
    pub fn save_if_newer(&mut self, key: &str, jwt: &str) -> Result<Vec<ResolverWrite>, String> {
        let new = super::jwt::decode_generic(jwt).map_err(|error| error.to_string())?;
        if new.claims.subject != key {
            return Err(String::from(
                "jwt subject nkey and provided nkey do not match",
            ));
        }
        if let Some(held) = self
            .stored
            .get(key)
            .and_then(|held| super::jwt::decode_generic(held).ok())
        {
            if held.claims.id == new.claims.id || held.claims.issued_at > new.claims.issued_at {
                return Ok(Vec::new());
            }
            if held.claims.subject != new.claims.subject {
                return Err(String::from("subject of existing and new jwt do not match"));
            }
        }
        self.save(key, jwt).map_err(|error| error.to_string())
    }

    /// Drop `key`'s JWT and remove its file (the cache's eviction and
    /// expiry; the account keeps running, as in the reference).
    pub fn evict(&mut self, key: &str) -> Option<ResolverWrite> {
        self.saved_at.remove(key);
        self.stored.remove(key).map(|_| ResolverWrite::Delete {
            path: self.path(key),
            renamed: None,
        })
    }

    /// The XOR of the SHA-256 of every JWT held: equal hashes, equal
    /// directories (as the reference compares them).
    pub fn hash(&self) -> [u8; 32] {
        let mut hash = [0u8; 32];
        for jwt in self.stored.values() {
            let digest = Sha256::digest(jwt.as_bytes());
            for (into, byte) in hash.iter_mut().zip(digest.iter()) {
                *into ^= byte;
            }
        }
        hash
    }

    /// Forget `key`'s JWT. A key not held deletes nothing and is no error
    /// (as the reference's delete of a missing file). `None` when deleting
    /// is not allowed.
    pub fn delete(&mut self, key: &str) -> Option<Option<ResolverWrite>> {
        let path = self.path(key);
        let renamed = match self.delete {
            JwtDelete::Never => return None,
            JwtDelete::Rename => Some(format!("{path}.deleted")),
            JwtDelete::Remove => None,
        };
        self.saved_at.remove(key);
        Some(
            self.stored
                .remove(key)
                .map(|_| ResolverWrite::Delete { path, renamed }),
        )
    }

    pub fn lookup(&self, key: &str) -> Option<&str> {
        self.stored.get(key).map(String::as_str)
    }

    /// The JWTs held that a pack or a list shows, in the directory's
    /// (lexical) order: not empty, and not expired at `now` (seconds), as
    /// the reference's walk of the directory leaves those out.
    pub fn unexpired(&self, now: i64) -> impl Iterator<Item = (&String, &String)> {
        self.stored.iter().filter(move |(_, jwt)| {
            !jwt.is_empty()
                && !super::jwt::decode_generic(jwt)
                    .is_ok_and(|held| held.claims.expires > 0 && held.claims.expires < now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(delete: JwtDelete, limit: Option<u64>) -> DirResolver {
        DirResolver {
            delete,
            limit,
            ..DirResolver::full("jwt/")
        }
    }

    #[test]
    fn saves_write_files_once_and_respect_the_limit() {
        let mut dir = resolver(JwtDelete::Never, Some(1));
        assert_eq!(
            dir.save("AKEY", "t1"),
            Ok(vec![ResolverWrite::Save {
                path: String::from("jwt/AKEY.jwt"),
                jwt: String::from("t1")
            }])
        );
        assert_eq!(
            dir.save("AKEY", "t1"),
            Ok(vec![]),
            "same JWT: nothing to write"
        );
        assert!(
            matches!(dir.save("AKEY", "t2").as_deref(), Ok([_])),
            "an update replaces"
        );
        assert_eq!(dir.save("BKEY", "t3"), Err(SaveError::Full));
        assert_eq!(dir.stored.keys().collect::<Vec<_>>(), ["AKEY"]);
        assert_eq!(dir.lookup("AKEY"), Some("t2"));
        assert_eq!(dir.delete("AKEY"), None, "deleting is not allowed");
    }

    #[test]
    fn the_cache_evicts_the_oldest_save_and_the_hash_ignores_order() {
        let mut dir = DirResolver {
            kind: DirKind::Cache { ttl: None },
            limit: Some(2),
            ..DirResolver::full("jwt")
        };
        let empty = dir.hash();
        assert_eq!(empty, [0; 32]);
        dir.save("AKEY", "t1").unwrap();
        dir.save("BKEY", "t2").unwrap();
        dir.save("AKEY", "t1b").unwrap();
        assert_eq!(
            dir.save("CKEY", "t3").unwrap(),
            vec![
                ResolverWrite::Delete {
                    path: String::from("jwt/BKEY.jwt"),
                    renamed: None
                },
                ResolverWrite::Save {
                    path: String::from("jwt/CKEY.jwt"),
                    jwt: String::from("t3")
                }
            ]
        );
        assert_eq!(dir.stored.keys().collect::<Vec<_>>(), ["AKEY", "CKEY"]);
        let mut other = resolver(JwtDelete::Never, None);
        other.save("CKEY", "t3").unwrap();
        other.save("AKEY", "t1b").unwrap();
        assert_eq!(other.hash(), dir.hash());
        other.save("AKEY", "t1").unwrap();
        assert_ne!(other.hash(), dir.hash());
    }

    #[test]
    fn deletes_rename_or_remove() {
        let mut dir = resolver(JwtDelete::Rename, None);
        let _ = dir.save("AKEY", "t1").unwrap();
        assert_eq!(
            dir.delete("AKEY"),
            Some(Some(ResolverWrite::Delete {
                path: String::from("jwt/AKEY.jwt"),
                renamed: Some(String::from("jwt/AKEY.jwt.deleted")),
            }))
        );
        assert_eq!(dir.delete("AKEY"), Some(None), "already gone: no error");
        let mut dir = resolver(JwtDelete::Remove, None);
        let _ = dir.save("AKEY", "t1").unwrap();
        assert_eq!(
            dir.delete("AKEY"),
            Some(Some(ResolverWrite::Delete {
                path: String::from("jwt/AKEY.jwt"),
                renamed: None,
            }))
        );
    }
}
