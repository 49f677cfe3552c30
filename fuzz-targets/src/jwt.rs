//! The NATS JWT decoder (`rnats_core::auth::jwt`): operator, account, user,
//! activation and authorization response claims, and the auth callout's
//! judgement of an answer (`rnats_core::auth::callout::judge_response`).
//!
//! Input: the first byte picks the form. `0`: the rest is a whole token as
//! a client or a config file would hand it over. `1`: the rest is a callout
//! answer as it arrives (maybe sealed). `2`: the rest is a user JWT's claims,
//! signed with the fixed account key and wrapped in a well-formed response,
//! so the user-claims judgement is reached. Anything else: the rest is the
//! claims JSON, which the target signs with a fixed account key, so the
//! claim decoding behind the signature check is reached too.
//!
//! Checked: no panic for any input; a signed token decodes only with the
//! signer as issuer, and only as the kind its JSON names; the same token
//! with one payload byte changed never decodes; an unsigned answer never
//! admits, and an admission names the request's user in a known account.
//! The JWT library's rules (`claims_check`) run over every user JWT that
//! decodes and every claims JSON that reads as an account's.

use std::sync::OnceLock;

use base64::Engine;
use rnats_core::auth::{callout, claims_check, jwt};

fn signer() -> &'static nkeys::KeyPair {
    static KEY: OnceLock<nkeys::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        // Fixed, so runs repeat exactly.
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Account, [7; 32]).expect("a raw key")
    })
}

fn decode_all(token: &str) -> [bool; 5] {
    [
        jwt::decode_operator(token).is_ok(),
        jwt::decode_account(token).is_ok(),
        jwt::decode_user(token).is_ok(),
        jwt::decode_activation(token).is_ok(),
        jwt::decode_authorization_response(token).is_ok(),
    ]
}

/// Judge `payload` as the answer to a request for a fixed user key.
fn judge(payload: &[u8], user: &str) -> Result<callout::Admitted, String> {
    let keys = callout::ServerKeys::default();
    let server_id = keys.server_id();
    let issuer = signer().public_key();
    let service = nkeys::XKey::new_from_raw([5; 32]).public_key();
    let exists = |name: &str| name == "APP";
    callout::judge_response(
        payload,
        &callout::Expected {
            keys: &keys,
            server_id: &server_id,
            user_nkey: user,
            account: "AUTH",
            issuer: &issuer,
            xkey: Some(&service),
            now: 1_800_000_000,
            account_exists: &exists,
            operator: None,
        },
    )
}

fn sign(claims: &[u8]) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64(claims)
    );
    let signature = signer().sign(signed.as_bytes()).expect("signing works");
    format!("{signed}.{}", b64(&signature))
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
    let user = nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [3; 32])
        .expect("a raw key")
        .public_key();
    if mode == 1 {
        // Nothing the fuzzer writes carries the issuer's signature.
        assert!(judge(rest, &user).is_err(), "an unsigned answer admitted");
        return;
    }
    if mode == 2 {
        let keys = callout::ServerKeys::default();
        let response = serde_json::json!({
            "iss": signer().public_key(), "sub": user, "aud": keys.server_id(), "iat": 1,
            "nats": {"type": "authorization_response", "version": 2, "jwt": sign(rest)},
        });
        if let Ok(admitted) = judge(sign(response.to_string().as_bytes()).as_bytes(), &user) {
            assert_eq!(admitted.user, user);
            assert_eq!(admitted.account, "APP");
        }
        return;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let token = sign(rest);
    let signature = token.rsplit('.').next().unwrap_or_default();
    let decoded = decode_all(&token);
    assert!(
        decoded.iter().filter(|ok| **ok).count() <= 1,
        "a token decoded as two kinds"
    );
    if let Ok(user) = jwt::decode_user(&token) {
        assert_eq!(user.claims.issuer, signer().public_key());
        let found = claims_check::check_user(&user.claims, &user.nats, Some(1_800_000_000));
        assert_eq!(
            found.is_blocking(false),
            found.errors_text() != "[]"
                && found
                    .issues
                    .iter()
                    .any(|i| i.severity == claims_check::Severity::Error)
        );
    }
    // The account rules, over the claims as any account JWT would carry
    // them (the fixed signer cannot issue one).
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) {
        let data = serde_json::from_value::<jwt::ClaimsData>(claims.clone());
        let nats = claims.get("nats").cloned().unwrap_or_default();
        if let (Ok(data), Ok(account)) = (data, serde_json::from_value::<jwt::AccountNats>(nats)) {
            let found = claims_check::check_account(&data, &account, Some(1_800_000_000));
            assert!(found.is_blocking(true) || !found.is_blocking(false));
        }
    }
    if let Ok(activation) = jwt::decode_activation(&token) {
        assert_eq!(activation.claims.issuer, signer().public_key());
    }
    if let Ok(response) = jwt::decode_authorization_response(&token) {
        assert_eq!(response.claims.issuer, signer().public_key());
    }
    // One changed payload byte: never accepted.
    let mut tampered = rest.to_vec();
    if let Some(byte) = tampered.get_mut(usize::from(mode) % rest.len().max(1)) {
        *byte ^= 0x20;
        let forged = format!(
            "{}.{}.{}",
            b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
            b64(&tampered),
            signature
        );
        assert_eq!(decode_all(&forged), [false; 5], "a forged token decoded");
    }
}
