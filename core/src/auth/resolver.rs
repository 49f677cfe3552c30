//! The account resolvers that hold or fetch JWTs outside the
//! configuration: the directory (`full`) resolver's store, account JWTs
//! kept as files `<dir>/<account key>.jwt`, as nats-server's `DirJWTStore`
//! keeps them (unsharded); and the URL resolver, which fetches an account's
//! JWT over HTTP (`GET <url><account key>`) the first time a user of it
//! logs in.
//!
//! Role: hold the JWTs exactly as stored (verified or not: trust is
//! checked when an account is built from one, in `operator.rs`), decide
//! what a save or a delete changes, and name the file operations for the
//! runtime to carry out ([`ResolverWrite`]). It never touches a file.
//!
//! Invariants:
//! - `stored` holds at most `limit` JWTs; a save of a new key beyond it is
//!   refused ("jwt store is full"), never evicting (the full resolver's rule).
//! - Every change to `stored` yields exactly one [`ResolverWrite`] that
//!   makes the directory say the same.

use std::collections::BTreeMap;

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

/// The directory resolver as configured, with the JWTs it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DirResolver {
    pub dir: String,
    pub delete: JwtDelete,
    /// At most this many JWTs (`None`: no limit).
    pub limit: Option<u64>,
    /// The JWTs held, by account key, exactly as stored.
    pub stored: BTreeMap<String, String>,
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
}

impl UrlResolver {
    /// The resolver for `url` as configured (a `/` is added when missing,
    /// as the reference does).
    pub fn new(url: &str) -> UrlResolver {
        let mut base = url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        UrlResolver { base }
    }

    /// What to fetch for account `key`.
    pub fn fetch(&self, key: &str) -> AccountFetch {
        AccountFetch {
            account: key.to_owned(),
            url: format!("{}{key}", self.base),
        }
    }
}

/// An account JWT for the runtime to fetch: an HTTP GET of `url` within
/// [`ACCOUNT_FETCH_TIMEOUT`]; only a `200` answer's body is the JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFetch {
    pub account: String,
    pub url: String,
}

/// How long a fetch may take (the reference's HTTP client timeout, just
/// under the default auth timeout).
pub const ACCOUNT_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1900);

impl DirResolver {
    fn path(&self, key: &str) -> String {
        format!("{}/{key}.jwt", self.dir.trim_end_matches('/'))
    }

    /// Store `jwt` for `key`. `Ok(None)`: the same JWT was already held.
    pub fn save(&mut self, key: &str, jwt: &str) -> Result<Option<ResolverWrite>, SaveError> {
        match self.stored.get(key) {
            Some(held) if held == jwt => return Ok(None),
            Some(_) => {}
            None => {
                if self
                    .limit
                    .is_some_and(|limit| self.stored.len() as u64 >= limit)
                {
                    return Err(SaveError::Full);
                }
            }
        }
        self.stored.insert(key.to_owned(), jwt.to_owned());
        debug_assert!(self
            .limit
            .is_none_or(|limit| self.stored.len() as u64 <= limit));
        Ok(Some(ResolverWrite::Save {
            path: self.path(key),
            jwt: jwt.to_owned(),
        }))
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
        Some(
            self.stored
                .remove(key)
                .map(|_| ResolverWrite::Delete { path, renamed }),
        )
    }

    pub fn lookup(&self, key: &str) -> Option<&str> {
        self.stored.get(key).map(String::as_str)
    }

    /// The account keys held, in the directory's (lexical) order.
    pub fn keys(&self) -> Vec<String> {
        self.stored.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(delete: JwtDelete, limit: Option<u64>) -> DirResolver {
        DirResolver {
            dir: String::from("jwt/"),
            delete,
            limit,
            stored: BTreeMap::new(),
        }
    }

    #[test]
    fn saves_write_files_once_and_respect_the_limit() {
        let mut dir = resolver(JwtDelete::Never, Some(1));
        assert_eq!(
            dir.save("AKEY", "t1"),
            Ok(Some(ResolverWrite::Save {
                path: String::from("jwt/AKEY.jwt"),
                jwt: String::from("t1")
            }))
        );
        assert_eq!(
            dir.save("AKEY", "t1"),
            Ok(None),
            "same JWT: nothing to write"
        );
        assert!(
            matches!(dir.save("AKEY", "t2"), Ok(Some(_))),
            "an update replaces"
        );
        assert_eq!(dir.save("BKEY", "t3"), Err(SaveError::Full));
        assert_eq!(dir.keys(), vec![String::from("AKEY")]);
        assert_eq!(dir.lookup("AKEY"), Some("t2"));
        assert_eq!(dir.delete("AKEY"), None, "deleting is not allowed");
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
