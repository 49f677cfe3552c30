//! Checking a CONNECT's credentials against the server's [`AuthConfig`].
//!
//! Comparisons run in time independent of where the first difference is, so a
//! client cannot learn a secret byte by byte from response timing.

use super::config::AuthConfig;
use crate::protocol::ConnectOptions;

/// Whether `connect` carries the credentials `auth` demands.
pub fn is_authorized(auth: &AuthConfig, connect: &ConnectOptions) -> bool {
    match auth {
        AuthConfig::None => true,
        AuthConfig::Token(token) => {
            let given = connect.auth_token.as_deref().unwrap_or("");
            constant_time_eq(given.as_bytes(), token.as_bytes())
        }
        AuthConfig::UserPassword { user, password } => {
            let given_user = connect.user.as_deref().unwrap_or("");
            let given_pass = connect.pass.as_deref().unwrap_or("");
            // Evaluate both so timing does not reveal which one was wrong.
            let user_ok = constant_time_eq(given_user.as_bytes(), user.as_bytes());
            let pass_ok = constant_time_eq(given_pass.as_bytes(), password.as_bytes());
            user_ok & pass_ok
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_agrees_with_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("abc", "abc"),
            ("abc", "abd"),
            ("ab", "abc"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} vs {b:?}"
            );
        }
    }
}
