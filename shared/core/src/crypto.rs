//! Encryption at rest (AES-256-GCM) and secret-key digests.
//!
//! A sealed value is `version (1 byte) || nonce (12 bytes) || ciphertext+tag`. Callers bind each
//! value to where it lives through the associated data (e.g. `connection:<id>:credentials`), so
//! a ciphertext copied into another row fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The 32-byte key that encrypts credentials at rest.
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for EncryptionKey {
    fn clone(&self) -> Self {
        Self::new(*self.expose())
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Seals under the current key; opens with it or any previous key still configured
/// (`LASSO_PREVIOUS_ENCRYPTION_KEYS`), so a key can be rotated while values are re-sealed.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    previous: std::sync::Arc<[Aes256Gcm]>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

impl Cipher {
    pub fn new(key: &EncryptionKey) -> Self {
        Self::with_previous(key, &[])
    }

    /// A cipher that seals under `key` and still opens what the `previous` keys sealed.
    pub fn with_previous(key: &EncryptionKey, previous: &[EncryptionKey]) -> Self {
        let aead = |k: &EncryptionKey| Aes256Gcm::new_from_slice(k.expose()).expect("32 bytes");
        Self {
            aead: aead(key),
            previous: previous.iter().map(aead).collect(),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>> {
        self.open_any(sealed, aad).map(|(plain, _)| plain)
    }

    /// Opens `sealed`; also says whether the current key sealed it (false: a previous one).
    fn open_any(&self, sealed: &[u8], aad: &str) -> Result<(Vec<u8>, bool)> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(Error::Decrypt);
        }
        let nonce_bytes: [u8; NONCE_LEN] =
            sealed[1..1 + NONCE_LEN].try_into().expect("length checked");
        let nonce = Nonce::from(nonce_bytes);
        let payload = || Payload {
            msg: &sealed[1 + NONCE_LEN..],
            aad: aad.as_bytes(),
        };
        if let Ok(plain) = self.aead.decrypt(&nonce, payload()) {
            return Ok((plain, true));
        }
        self.previous
            .iter()
            .find_map(|aead| aead.decrypt(&nonce, payload()).ok())
            .map(|plain| (plain, false))
            .ok_or(Error::Decrypt)
    }

    /// `sealed` sealed again under the current key when a previous key sealed it; `None` when
    /// the current key did already (key rotation re-seals only what needs it).
    pub fn reseal(&self, sealed: &[u8], aad: &str) -> Result<Option<Vec<u8>>> {
        match self.open_any(sealed, aad)? {
            (_, true) => Ok(None),
            (plain, false) => Ok(Some(self.seal(&plain, aad))),
        }
    }

    pub fn seal_json(&self, value: &serde_json::Value, aad: &str) -> Vec<u8> {
        self.seal(value.to_string().as_bytes(), aad)
    }

    pub fn open_json(&self, sealed: &[u8], aad: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.open(sealed, aad)?).map_err(|_| Error::Decrypt)
    }
}

/// Random URL-safe token with 256 bits of entropy.
pub fn random_token(prefix: &str) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Digest under which a high-entropy secret (API key, session token) is stored and looked up.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Cipher {
        Cipher::new(&EncryptionKey::new([7u8; 32]))
    }

    #[test]
    fn round_trips_and_binds_to_aad() {
        let c = cipher();
        let sealed = c.seal(b"top secret", "connection:1:credentials");
        assert!(!sealed.windows(10).any(|w| w == b"top secret"));
        assert_eq!(
            c.open(&sealed, "connection:1:credentials").unwrap(),
            b"top secret"
        );
        assert!(c.open(&sealed, "connection:2:credentials").is_err());
    }

    #[test]
    fn a_previous_key_still_opens_and_reseal_moves_values_to_the_current_key() {
        let old = cipher();
        let new_key = EncryptionKey::new([9u8; 32]);
        let rotating = Cipher::with_previous(&new_key, &[EncryptionKey::new([7u8; 32])]);
        let sealed = old.seal(b"value", "aad");
        assert_eq!(rotating.open(&sealed, "aad").unwrap(), b"value");
        let fresh = rotating.reseal(&sealed, "aad").unwrap().expect("re-sealed");
        assert!(
            rotating.reseal(&fresh, "aad").unwrap().is_none(),
            "already current"
        );
        assert_eq!(Cipher::new(&new_key).open(&fresh, "aad").unwrap(), b"value");
        assert!(old.open(&fresh, "aad").is_err());
        assert!(rotating.reseal(&sealed, "other aad").is_err());
    }

    #[test]
    fn tampering_and_wrong_key_fail() {
        let c = cipher();
        let mut sealed = c.seal(b"value", "aad");
        let other = Cipher::new(&EncryptionKey::new([8u8; 32]));
        assert!(other.open(&sealed, "aad").is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(c.open(&sealed, "aad").is_err());
        assert!(c.open(b"short", "aad").is_err());
    }

    #[test]
    fn nonces_differ() {
        let c = cipher();
        assert_ne!(c.seal(b"same", "a"), c.seal(b"same", "a"));
    }

    #[test]
    fn tokens_are_random_and_digests_fixed_length() {
        let a = random_token("sk_");
        assert!(a.starts_with("sk_") && a.len() > 40);
        assert_ne!(a, random_token("sk_"));
        assert_eq!(token_digest(&a).len(), 32);
    }
}
