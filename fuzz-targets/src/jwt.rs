//! The NATS JWT decoder (`rnats_core::auth::jwt`): operator, account, user
//! and activation claims.
//!
//! Input: the first byte picks the form. `0`: the rest is a whole token as
//! a client or a config file would hand it over. Anything else: the rest is
//! the claims JSON, which the target signs with a fixed account key, so the
//! claim decoding behind the signature check is reached too.
//!
//! Checked: no panic for any input; a signed token decodes only with the
//! signer as issuer, and only as the kind its JSON names; the same token
//! with one payload byte changed never decodes.

use std::sync::OnceLock;

use base64::Engine;
use rnats_core::auth::jwt;

fn signer() -> &'static nkeys::KeyPair {
    static KEY: OnceLock<nkeys::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        // Fixed, so runs repeat exactly.
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Account, [7; 32]).expect("a raw key")
    })
}

fn decode_all(token: &str) -> [bool; 4] {
    [
        jwt::decode_operator(token).is_ok(),
        jwt::decode_account(token).is_ok(),
        jwt::decode_user(token).is_ok(),
        jwt::decode_activation(token).is_ok(),
    ]
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let token = String::from_utf8_lossy(rest);
        decode_all(&token);
        let _ = jwt::undecorate(&token);
        return;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64(rest)
    );
    let signature = signer().sign(signed.as_bytes()).expect("signing works");
    let token = format!("{signed}.{}", b64(&signature));
    let decoded = decode_all(&token);
    assert!(
        decoded.iter().filter(|ok| **ok).count() <= 1,
        "a token decoded as two kinds"
    );
    if let Ok(user) = jwt::decode_user(&token) {
        assert_eq!(user.claims.issuer, signer().public_key());
    }
    if let Ok(activation) = jwt::decode_activation(&token) {
        assert_eq!(activation.claims.issuer, signer().public_key());
    }
    // One changed payload byte: never accepted.
    let mut tampered = rest.to_vec();
    if let Some(byte) = tampered.get_mut(usize::from(mode) % rest.len().max(1)) {
        *byte ^= 0x20;
        let forged = format!(
            "{}.{}.{}",
            b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
            b64(&tampered),
            b64(&signature)
        );
        assert_eq!(decode_all(&forged), [false; 4], "a forged token decoded");
    }
}
