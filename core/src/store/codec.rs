//! Sealing of message records: compression (`compression: "s2"`, snappy)
//! and encryption at rest (`jetstream { key, cipher }`), record by record.
//!
//! Role: turn a message's subject, headers and payload into the body of a
//! [`Kind::Sealed`] record and back. The record layer around it (length,
//! sequence, timestamp, crc32) is unchanged, so recovery, scanning and
//! fault detection work on sealed records exactly as on plain ones: a
//! flipped byte fails the record's crc32 before anything is opened.
//!
//! A sealed record's payload (its subject and headers fields are empty):
//!
//! ```text
//! flags u8 (bit 0: compressed, bit 1: encrypted, bit 2: AES-256-GCM
//!           rather than ChaCha20-Poly1305; never 0)
//! encrypted: nonce (12) | AEAD ciphertext of the inner bytes | tag (16)
//!            (associated data: the record's first 36 bytes, so a sealed
//!            body moved to another sequence or kind fails to open)
//! inner:     compressed: snappy raw block of the plain bytes
//!            otherwise:  the plain bytes
//! plain:     subject length u16 | headers length u32 | subject | headers | payload
//! ```
//!
//! Why per record and not per block: a random load reads one record from
//! the nearest sparse index entry (`filestore.rs`), recovery cuts at a
//! record and a flipped byte costs exactly one record; a compressed block
//! would make each of those cost a whole block. Measured on this machine
//! (`store::codec::tests::compression_ratio_per_record_and_per_block`,
//! JSON-like payloads): per record stores 128 B messages at 0.85 of
//! their size and 16 KiB ones at 0.32; one snappy block over the same
//! records gives 0.34 and 0.30: small messages lose most of what block
//! compression would give (the price of the properties above), so
//! a record that does not shrink is stored plain (the flag is per record).
//!
//! Nonces: the record's sequence (8 bytes) and 4 bytes drawn from a ChaCha
//! stream the caller seeds (core's seeded randomness; never the OS here):
//! a sequence is sealed twice only after a truncate hands it out again, and
//! then the drawn bytes differ.
//!
//! Invariants: `open(seal(m)) == m`; nothing is returned from `open` that
//! did not pass the AEAD tag (encrypted) or the length checks (compressed);
//! the plain length is bounded by [`MAX_RECORD`] before any allocation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use bytes::Bytes;
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::Sha256;

use super::record::{self, Kind, HEADER_LEN, MAX_RECORD, MIN_RECORD};

const FLAG_COMPRESSED: u8 = 1;
const FLAG_ENCRYPTED: u8 = 2;
const FLAG_AES: u8 = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// subject length u16 | headers length u32.
const PLAIN_PREFIX: usize = 6;

/// The AEAD a store's records are encrypted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherKind {
    ChaCha20Poly1305,
    Aes256Gcm,
}

/// A 256-bit key with its cipher. Debug hides the key.
#[derive(Clone)]
pub struct SecretKey {
    pub(super) cipher: CipherKind,
    pub(super) key: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("cipher", &self.cipher)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl SecretKey {
    /// Derive a key from configured key text with HKDF-SHA256; `purpose`
    /// separates keys derived from the same text (one per store and use).
    pub fn derive(cipher: CipherKind, secret: &[u8], salt: &[u8], purpose: &[u8]) -> SecretKey {
        let hkdf = Hkdf::<Sha256>::new(Some(salt), secret);
        let mut key = [0u8; 32];
        hkdf.expand(purpose, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretKey { cipher, key }
    }

    /// The same key bytes under `cipher`.
    pub(super) fn with_cipher(&self, cipher: CipherKind) -> SecretKey {
        SecretKey {
            cipher,
            key: self.key,
        }
    }

    /// Encrypt `plain` with `nonce`, authenticating `aad` too; appends
    /// nonce | ciphertext | tag to `out`.
    pub(super) fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plain: &[u8],
        out: &mut Vec<u8>,
    ) {
        let payload = Payload { msg: plain, aad };
        let sealed = match self.cipher {
            CipherKind::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new((&self.key).into()).encrypt(nonce.into(), payload)
            }
            CipherKind::Aes256Gcm => {
                Aes256Gcm::new((&self.key).into()).encrypt(nonce.into(), payload)
            }
        }
        .expect("AEAD encryption of a bounded buffer cannot fail");
        assert_eq!(sealed.len(), plain.len() + TAG_LEN, "tag appended");
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
    }

    /// Open nonce | ciphertext | tag; `None` if the tag does not match
    /// (wrong key, or bytes changed).
    pub(super) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        let payload = Payload { msg: body, aad };
        let plain = match self.cipher {
            CipherKind::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new((&self.key).into()).decrypt(nonce.into(), payload)
            }
            CipherKind::Aes256Gcm => {
                Aes256Gcm::new((&self.key).into()).decrypt(nonce.into(), payload)
            }
        }
        .ok()?;
        debug_assert_eq!(plain.len() + NONCE_LEN + TAG_LEN, sealed.len());
        Some(plain)
    }
}

/// Why a sealed record does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The flags byte is missing, zero, or names an unknown flag.
    BadFlags,
    /// Encrypted, and the store has no key.
    NoKey,
    /// The AEAD tag does not match: wrong key or changed bytes.
    Authentication,
    /// The snappy block does not decompress, or its length is impossible.
    Decompress,
    /// The plain bytes' lengths do not add up.
    BadLengths,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpenError::BadFlags => "sealed record with impossible flags",
            OpenError::NoKey => "encrypted record and no key",
            OpenError::Authentication => "encrypted record fails authentication",
            OpenError::Decompress => "compressed record does not decompress",
            OpenError::BadLengths => "sealed record lengths do not add up",
        })
    }
}

/// A message's parts, opened: one buffer, three slices of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

/// How one store seals its message records.
#[derive(Debug)]
pub struct Codec {
    compress: bool,
    key: Option<SecretKey>,
    nonces: ChaCha8Rng,
    plain: Vec<u8>,
    inner: Vec<u8>,
    body: Vec<u8>,
}

impl Codec {
    /// `compress`: try snappy on every message; `key`: encrypt every
    /// message with it; `seed`: the nonce stream's seed.
    pub fn new(compress: bool, key: Option<SecretKey>, seed: u64) -> Codec {
        Codec {
            compress,
            key,
            nonces: ChaCha8Rng::seed_from_u64(seed),
            plain: Vec::new(),
            inner: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Compress the messages written from now on (or not).
    pub fn set_compress(&mut self, compress: bool) {
        self.compress = compress;
    }

    /// Whether messages are written as plain [`Kind::Message`] records.
    pub fn is_plain(&self) -> bool {
        !self.compress && self.key.is_none()
    }

    /// Append message `seq`'s record to `out`: plain, or sealed (compressed
    /// when that makes it smaller, encrypted when the store has a key).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_message(
        &mut self,
        out: &mut Vec<u8>,
        seq: u64,
        ts: u64,
        ttl: u64,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) {
        if self.is_plain() {
            record::encode(out, Kind::Message, seq, ts, ttl, subject, headers, payload);
            return;
        }
        assert!(subject.len() <= usize::from(u16::MAX), "subject too long");
        self.plain.clear();
        self.plain
            .extend_from_slice(&(subject.len() as u16).to_le_bytes());
        self.plain
            .extend_from_slice(&(headers.len() as u32).to_le_bytes());
        self.plain.extend_from_slice(subject);
        self.plain.extend_from_slice(headers);
        self.plain.extend_from_slice(payload);
        let mut flags = 0;
        self.inner.clear();
        if self.compress {
            let bound = snap::raw::max_compress_len(self.plain.len());
            self.inner.resize(bound, 0);
            let written = snap::raw::Encoder::new()
                .compress(&self.plain, &mut self.inner)
                .expect("snappy compresses any input within its bound");
            self.inner.truncate(written);
            if written < self.plain.len() {
                flags |= FLAG_COMPRESSED;
            }
        }
        if flags & FLAG_COMPRESSED == 0 {
            if self.key.is_none() {
                // Compression only, and it did not shrink: a plain record.
                record::encode(out, Kind::Message, seq, ts, ttl, subject, headers, payload);
                return;
            }
            std::mem::swap(&mut self.inner, &mut self.plain);
        }
        self.body.clear();
        match &self.key {
            None => {
                assert_eq!(flags, FLAG_COMPRESSED, "sealed without a key: compressed");
                self.body.push(flags);
                self.body.extend_from_slice(&self.inner);
            }
            Some(key) => {
                flags |= FLAG_ENCRYPTED;
                if key.cipher == CipherKind::Aes256Gcm {
                    flags |= FLAG_AES;
                }
                self.body.push(flags);
                let body_len = 1 + NONCE_LEN + self.inner.len() + TAG_LEN;
                let aad = record::header(Kind::Sealed, seq, ts, ttl, 0, 0, body_len);
                let mut nonce = [0u8; NONCE_LEN];
                nonce[..8].copy_from_slice(&seq.to_le_bytes());
                self.nonces.fill_bytes(&mut nonce[8..]);
                key.seal_into(&nonce, &aad, &self.inner, &mut self.body);
                assert_eq!(self.body.len(), body_len, "sealed body length");
            }
        }
        record::encode(out, Kind::Sealed, seq, ts, ttl, b"", b"", &self.body);
    }

    /// The subject, headers and payload of a message record (plain or
    /// sealed) whose crc32 matched.
    pub fn open(&self, record: &record::Record<'_>) -> Result<Opened, OpenError> {
        match record.kind {
            Kind::Message => Ok(Opened {
                subject: Bytes::copy_from_slice(record.subject),
                headers: Bytes::copy_from_slice(record.headers),
                payload: Bytes::copy_from_slice(record.payload),
            }),
            Kind::Sealed => open_sealed(self.key.as_ref(), record),
            other => panic!("open of a {other:?} record"),
        }
    }
}

/// Open a [`Kind::Sealed`] record with `key` (if it has one).
pub fn open_sealed(
    key: Option<&SecretKey>,
    record: &record::Record<'_>,
) -> Result<Opened, OpenError> {
    assert_eq!(record.kind, Kind::Sealed, "open_sealed of a plain record");
    let (&flags, body) = record.payload.split_first().ok_or(OpenError::BadFlags)?;
    let known = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_AES;
    if flags == 0 || flags & !known != 0 || flags & (FLAG_ENCRYPTED | FLAG_AES) == FLAG_AES {
        return Err(OpenError::BadFlags);
    }
    let decrypted;
    let inner = if flags & FLAG_ENCRYPTED != 0 {
        // The record names its cipher: a store keeps reading what it wrote
        // before `cipher` changed.
        let cipher = if flags & FLAG_AES != 0 {
            CipherKind::Aes256Gcm
        } else {
            CipherKind::ChaCha20Poly1305
        };
        let key = &key.ok_or(OpenError::NoKey)?.with_cipher(cipher);
        let aad = record::header(
            Kind::Sealed,
            record.seq,
            record.ts,
            record.ttl,
            0,
            0,
            record.payload.len(),
        );
        decrypted = key.open(&aad, body).ok_or(OpenError::Authentication)?;
        &decrypted[..]
    } else {
        body
    };
    let plain = if flags & FLAG_COMPRESSED != 0 {
        let len = snap::raw::decompress_len(inner).map_err(|_| OpenError::Decompress)?;
        if len > MAX_RECORD {
            return Err(OpenError::Decompress);
        }
        let mut plain = vec![0u8; len];
        let written = snap::raw::Decoder::new()
            .decompress(inner, &mut plain)
            .map_err(|_| OpenError::Decompress)?;
        if written != len {
            return Err(OpenError::Decompress);
        }
        plain
    } else {
        inner.to_vec()
    };
    split_plain(plain)
}

fn split_plain(plain: Vec<u8>) -> Result<Opened, OpenError> {
    if plain.len() < PLAIN_PREFIX {
        return Err(OpenError::BadLengths);
    }
    let subject_len = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
    let headers_len = u32::from_le_bytes(plain[2..6].try_into().expect("4 bytes")) as usize;
    let end = PLAIN_PREFIX
        .checked_add(subject_len)
        .and_then(|n| n.checked_add(headers_len))
        .ok_or(OpenError::BadLengths)?;
    if end > plain.len() {
        return Err(OpenError::BadLengths);
    }
    let all = Bytes::from(plain);
    Ok(Opened {
        subject: all.slice(PLAIN_PREFIX..PLAIN_PREFIX + subject_len),
        headers: all.slice(PLAIN_PREFIX + subject_len..end),
        payload: all.slice(end..),
    })
}

/// The largest sealed body for a message whose plain parts take `plain`
/// bytes: what a record of it may grow to (compression never grows a
/// record: one that does not shrink is written plain).
pub fn sealed_len_max(plain: usize) -> usize {
    MIN_RECORD + 1 + NONCE_LEN + TAG_LEN + PLAIN_PREFIX + plain
}

/// The keys encryption at rest is configured with (`jetstream { key,
/// cipher, prev_key }`): what is written is sealed under `key`; what was
/// sealed under `prev_key` still opens, and is sealed again under `key`
/// (key rotation). Debug hides the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    cipher: CipherKind,
    key: Vec<u8>,
    prev: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("cipher", &self.cipher)
            .field("key", &"[REDACTED]")
            .field("prev", &self.prev.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Why something encrypted at rest does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Encrypted, and no key is configured.
    NotConfigured,
    /// Neither the key nor the previous key opens it (or it was changed).
    Unrecoverable,
    /// The key file's own checksum fails: it is damaged.
    Damaged,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::NotConfigured => "encrypted at rest and no key is configured",
            // The reference's words for the same failure.
            KeyError::Unrecoverable => "unable to recover keys",
            KeyError::Damaged => "key file damaged",
        })
    }
}

/// Magic of a file sealed whole ([`KeyRing::seal_file`]).
const FILE_MAGIC: &[u8; 4] = b"RNSE";
/// Magic of a store's key file ([`KeyRing::new_store_key`]).
const KEY_MAGIC: &[u8; 4] = b"RNSK";
const SALT_LEN: usize = 32;
/// magic 4 | version 1 | cipher 1 | salt 32 | nonce 12 | key 32 + tag 16 | crc32 4
pub const KEY_FILE_LEN: usize = 4 + 1 + 1 + SALT_LEN + NONCE_LEN + 32 + TAG_LEN + 4;
const KEY_FILE_HEADER: usize = 4 + 1 + 1 + SALT_LEN;

fn cipher_byte(cipher: CipherKind) -> u8 {
    match cipher {
        CipherKind::ChaCha20Poly1305 => 1,
        CipherKind::Aes256Gcm => 2,
    }
}

fn cipher_of(byte: u8) -> Option<CipherKind> {
    match byte {
        1 => Some(CipherKind::ChaCha20Poly1305),
        2 => Some(CipherKind::Aes256Gcm),
        _ => None,
    }
}

impl KeyRing {
    pub fn new(cipher: CipherKind, key: &[u8], prev: Option<&[u8]>) -> KeyRing {
        assert!(!key.is_empty(), "an empty key encrypts nothing");
        KeyRing {
            cipher,
            key: key.to_vec(),
            prev: prev.filter(|prev| !prev.is_empty()).map(<[u8]>::to_vec),
        }
    }

    pub fn cipher(&self) -> CipherKind {
        self.cipher
    }

    /// The key and then the previous one, each with whether it is the previous.
    fn secrets(&self) -> impl Iterator<Item = (&[u8], bool)> {
        std::iter::once((&self.key[..], false)).chain(self.prev.as_deref().map(|prev| (prev, true)))
    }

    /// Seal a small file whole (a stream's definition, a consumer's state):
    /// `"RNSE"` | version 1 | cipher u8 | nonce (12) | ciphertext | tag (16),
    /// under a key derived from the configured key and `purpose` (the
    /// file's name: a sealed file copied over another does not open).
    pub fn seal_file(&self, purpose: &str, plain: &[u8], seed: u64) -> Vec<u8> {
        let key = SecretKey::derive(
            self.cipher,
            &self.key,
            b"rnats sealed file v1",
            purpose.as_bytes(),
        );
        let mut out = Vec::with_capacity(6 + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(FILE_MAGIC);
        out.push(1);
        out.push(cipher_byte(self.cipher));
        let mut nonce = [0u8; NONCE_LEN];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut nonce);
        let aad = file_aad(&out, purpose);
        key.seal_into(&nonce, &aad, plain, &mut out);
        debug_assert_eq!(
            self.open_file(purpose, &out).map(|(bytes, _)| bytes),
            Ok(plain.to_vec())
        );
        out
    }

    /// Open a file [`seal_file`](Self::seal_file) wrote: the plain bytes,
    /// and whether it took the previous key (the caller then seals it again).
    pub fn open_file(&self, purpose: &str, sealed: &[u8]) -> Result<(Vec<u8>, bool), KeyError> {
        let header = sealed.get(..6).ok_or(KeyError::Damaged)?;
        if !is_sealed_file(sealed) || header[4] != 1 {
            return Err(KeyError::Damaged);
        }
        let cipher = cipher_of(header[5]).ok_or(KeyError::Damaged)?;
        let aad = file_aad(header, purpose);
        self.secrets()
            .find_map(|(secret, prev)| {
                let key =
                    SecretKey::derive(cipher, secret, b"rnats sealed file v1", purpose.as_bytes());
                key.open(&aad, &sealed[6..]).map(|plain| (plain, prev))
            })
            .ok_or(KeyError::Unrecoverable)
    }

    /// A new store's data key and its key file: a random salt (from
    /// `seed`, core's seeded randomness) mixed with the configured key by
    /// HKDF, so the data key is as secret as the configured key; the file
    /// holds it sealed under a key derived from the configured key.
    pub fn new_store_key(&self, dir: &str, seed: u64) -> (SecretKey, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let data = SecretKey::derive(
            self.cipher,
            &self.key,
            &salt,
            &purpose("rnats store data key", dir),
        );
        let file = self.wrap(dir, &salt, &data, &mut rng);
        (data, file)
    }

    fn wrap(
        &self,
        dir: &str,
        salt: &[u8; SALT_LEN],
        data: &SecretKey,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_FILE_LEN);
        out.extend_from_slice(KEY_MAGIC);
        out.push(1);
        out.push(cipher_byte(self.cipher));
        out.extend_from_slice(salt);
        let wrapping = SecretKey::derive(
            self.cipher,
            &self.key,
            salt,
            &purpose("rnats store key wrap", dir),
        );
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = out.clone();
        wrapping.seal_into(&nonce, &aad, &data.key, &mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(out.len(), KEY_FILE_LEN, "key file length");
        out
    }

    /// The data key in key file `bytes` of store `dir`; with the previous
    /// key, also the key file sealed again under the current key (to be
    /// written over it: the rotation).
    pub fn open_store_key(
        &self,
        dir: &str,
        bytes: &[u8],
        seed: u64,
    ) -> Result<(SecretKey, Option<Vec<u8>>), KeyError> {
        if bytes.len() != KEY_FILE_LEN || &bytes[..4] != KEY_MAGIC || bytes[4] != 1 {
            return Err(KeyError::Damaged);
        }
        let crc = u32::from_le_bytes(bytes[KEY_FILE_LEN - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..KEY_FILE_LEN - 4]) != crc {
            return Err(KeyError::Damaged);
        }
        let cipher = cipher_of(bytes[5]).ok_or(KeyError::Damaged)?;
        let salt: [u8; SALT_LEN] = bytes[6..KEY_FILE_HEADER].try_into().expect("salt");
        let aad = &bytes[..KEY_FILE_HEADER];
        let sealed = &bytes[KEY_FILE_HEADER..KEY_FILE_LEN - 4];
        let (plain, prev) = self
            .secrets()
            .find_map(|(secret, prev)| {
                let wrapping =
                    SecretKey::derive(cipher, secret, &salt, &purpose("rnats store key wrap", dir));
                wrapping.open(aad, sealed).map(|plain| (plain, prev))
            })
            .ok_or(KeyError::Unrecoverable)?;
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| KeyError::Damaged)?;
        let data = SecretKey {
            cipher: self.cipher,
            key,
        };
        let rewrapped =
            prev.then(|| self.wrap(dir, &salt, &data, &mut ChaCha8Rng::seed_from_u64(seed)));
        Ok((data, rewrapped))
    }
}

/// Whether `bytes` is a file [`KeyRing::seal_file`] wrote (by its magic).
pub fn is_sealed_file(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_MAGIC)
}

fn file_aad(header: &[u8], purpose: &str) -> Vec<u8> {
    let mut aad = header[..6].to_vec();
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

fn purpose(what: &str, dir: &str) -> Vec<u8> {
    let mut out = what.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(dir.as_bytes());
    out
}

const _: () = assert!(HEADER_LEN + 4 == MIN_RECORD);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cipher: CipherKind, text: &str) -> SecretKey {
        SecretKey::derive(cipher, text.as_bytes(), b"salt", b"test")
    }

    fn round_trip(codec: &mut Codec, seq: u64, subject: &[u8], headers: &[u8], payload: &[u8]) {
        let mut out = Vec::new();
        codec.encode_message(&mut out, seq, 5, 7, subject, headers, payload);
        let record = record::decode(&out).expect("a fresh record decodes");
        assert_eq!((record.seq, record.ts, record.ttl), (seq, 5, 7));
        let opened = codec.open(&record).expect("opens");
        assert_eq!(opened.subject.as_ref(), subject);
        assert_eq!(opened.headers.as_ref(), headers);
        assert_eq!(opened.payload.as_ref(), payload);
    }

    #[test]
    fn every_combination_round_trips() {
        let big = b"abcdefgh".repeat(512);
        for compress in [false, true] {
            for cipher in [
                None,
                Some(CipherKind::ChaCha20Poly1305),
                Some(CipherKind::Aes256Gcm),
            ] {
                let mut codec = Codec::new(compress, cipher.map(|c| key(c, "k")), 9);
                round_trip(&mut codec, 1, b"a.b", b"", b"");
                round_trip(&mut codec, 2, b"a.b", b"NATS/1.0\r\nA: b\r\n\r\n", b"x");
                round_trip(&mut codec, 3, b"orders.big", b"", &big);
            }
        }
    }

    #[test]
    fn compression_shrinks_a_repetitive_message_and_leaves_a_random_one_plain() {
        let mut codec = Codec::new(true, None, 1);
        let mut out = Vec::new();
        let payload = b"{\"id\":1,\"name\":\"widget\"}".repeat(100);
        codec.encode_message(&mut out, 1, 0, 0, b"s", b"", &payload);
        let record = record::decode(&out).unwrap();
        assert_eq!(record.kind, Kind::Sealed);
        assert!(out.len() < payload.len() / 5, "{} bytes", out.len());
        let mut plain = Vec::new();
        let mut noise = ChaCha8Rng::seed_from_u64(3);
        let mut random = vec![0u8; 200];
        noise.fill_bytes(&mut random);
        codec.encode_message(&mut plain, 2, 0, 0, b"s", b"", &random);
        assert_eq!(record::decode(&plain).unwrap().kind, Kind::Message);
    }

    #[test]
    fn the_wrong_key_or_a_moved_body_does_not_open() {
        let mut codec = Codec::new(false, Some(key(CipherKind::Aes256Gcm, "right")), 2);
        let mut out = Vec::new();
        codec.encode_message(&mut out, 4, 1, 0, b"s", b"", b"secret");
        assert!(!out.windows(6).any(|w| w == b"secret"), "payload in clear");
        let record = record::decode(&out).unwrap();
        let wrong = key(CipherKind::Aes256Gcm, "wrong");
        assert_eq!(
            open_sealed(Some(&wrong), &record),
            Err(OpenError::Authentication)
        );
        assert_eq!(open_sealed(None, &record), Err(OpenError::NoKey));
        // The same body under another sequence (crc32 fixed up) fails the tag.
        let mut moved = Vec::new();
        record::encode(&mut moved, Kind::Sealed, 5, 1, 0, b"", b"", record.payload);
        let moved = record::decode(&moved).unwrap();
        assert_eq!(codec.open(&moved), Err(OpenError::Authentication));
    }

    #[test]
    fn a_cipher_change_keeps_old_records_readable() {
        let chacha = key(CipherKind::ChaCha20Poly1305, "k");
        let mut codec = Codec::new(false, Some(chacha.clone()), 1);
        let mut out = Vec::new();
        codec.encode_message(&mut out, 1, 0, 0, b"s", b"", b"old");
        let aes = Codec::new(false, Some(chacha.with_cipher(CipherKind::Aes256Gcm)), 1);
        let opened = aes.open(&record::decode(&out).unwrap()).unwrap();
        assert_eq!(opened.payload.as_ref(), b"old");
    }

    #[test]
    fn key_files_open_with_the_key_or_rotate_from_the_previous_one() {
        let old = KeyRing::new(CipherKind::ChaCha20Poly1305, b"old", None);
        let (data, file) = old.new_store_key("streams/1", 5);
        assert_eq!(file.len(), KEY_FILE_LEN);
        assert!(
            !file.windows(32).any(|w| w == data.key),
            "data key in clear"
        );
        let (again, rewrapped) = old.open_store_key("streams/1", &file, 6).unwrap();
        assert_eq!((again.key, rewrapped), (data.key, None));
        // Another directory's key file does not open here.
        assert_eq!(
            old.open_store_key("streams/2", &file, 6).unwrap_err(),
            KeyError::Unrecoverable
        );
        let wrong = KeyRing::new(CipherKind::ChaCha20Poly1305, b"new", None);
        assert_eq!(
            wrong.open_store_key("streams/1", &file, 6).unwrap_err(),
            KeyError::Unrecoverable
        );
        let rotating = KeyRing::new(CipherKind::ChaCha20Poly1305, b"new", Some(b"old"));
        let (rotated, rewrapped) = rotating.open_store_key("streams/1", &file, 6).unwrap();
        assert_eq!(rotated.key, data.key, "the data key survives rotation");
        let rewrapped = rewrapped.expect("sealed again under the new key");
        let (after, none) = wrong.open_store_key("streams/1", &rewrapped, 7).unwrap();
        assert_eq!((after.key, none), (data.key, None));
        let mut damaged = rewrapped.clone();
        damaged[10] ^= 1;
        assert_eq!(
            wrong.open_store_key("streams/1", &damaged, 7).unwrap_err(),
            KeyError::Damaged
        );
    }

    #[test]
    fn sealed_files_open_with_either_key_and_only_under_their_name() {
        let old = KeyRing::new(CipherKind::Aes256Gcm, b"old", None);
        let sealed = old.seal_file("streams/3.meta", b"{\"name\":\"ORDERS\"}", 9);
        assert!(is_sealed_file(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"ORDERS"));
        assert_eq!(
            old.open_file("streams/3.meta", &sealed).unwrap(),
            (b"{\"name\":\"ORDERS\"}".to_vec(), false)
        );
        assert_eq!(
            old.open_file("streams/4.meta", &sealed),
            Err(KeyError::Unrecoverable)
        );
        let rotating = KeyRing::new(CipherKind::ChaCha20Poly1305, b"new", Some(b"old"));
        assert!(
            rotating.open_file("streams/3.meta", &sealed).unwrap().1,
            "took the previous key"
        );
        let new_only = KeyRing::new(CipherKind::ChaCha20Poly1305, b"new", None);
        assert_eq!(
            new_only.open_file("streams/3.meta", &sealed),
            Err(KeyError::Unrecoverable)
        );
    }

    /// The measurement quoted in the module comment.
    #[test]
    fn compression_ratio_per_record_and_per_block() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for size in [128usize, 16 << 10] {
            let mut records = Vec::new();
            let mut plain_total = 0;
            let mut per_record = 0;
            let mut codec = Codec::new(true, None, 1);
            for seq in 1..=2000u64 {
                let payload = json_like(&mut rng, size);
                plain_total += record::encoded_len(10, 0, payload.len());
                let mut out = Vec::new();
                codec.encode_message(&mut out, seq, seq, 0, b"orders.new", b"", &payload);
                per_record += out.len();
                record::encode(
                    &mut records,
                    Kind::Message,
                    seq,
                    seq,
                    0,
                    b"orders.new",
                    b"",
                    &payload,
                );
            }
            let per_block = snap::raw::Encoder::new()
                .compress_vec(&records)
                .unwrap()
                .len();
            let ratio = |n: usize| n as f64 / plain_total as f64;
            assert!(ratio(per_record) < 1.0 && ratio(per_block) < ratio(per_record));
            println!(
                "{size} B: per record {:.2}, per block {:.2}",
                ratio(per_record),
                ratio(per_block)
            );
        }
    }

    /// A JSON-ish payload of about `size` bytes with varying numbers.
    fn json_like(rng: &mut ChaCha8Rng, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 64);
        out.push(b'[');
        while out.len() < size {
            let line = format!(
                "{{\"order\":{},\"customer\":\"c-{}\",\"qty\":{},\"state\":\"new\"}},",
                rng.next_u32(),
                rng.next_u32() % 1000,
                rng.next_u32() % 50
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(size);
        out
    }
}
