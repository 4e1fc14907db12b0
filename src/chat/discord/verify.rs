//! Discord interaction signatures: Ed25519 over `timestamp + body` with the
//! application's public key (`X-Signature-Ed25519`, `X-Signature-Timestamp`).
//! The timestamp must also be within five minutes of `now`, so a captured
//! request cannot be replayed later. Pure: the caller passes the time.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

/// Largest accepted distance between the request timestamp and now.
pub const MAX_SKEW_S: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscordVerifyError {
    #[error("X-Signature-Timestamp is missing or not a number")]
    BadTimestamp,
    #[error("request timestamp is more than five minutes from now")]
    Stale,
    #[error("X-Signature-Ed25519 is missing or malformed")]
    BadSignatureHeader,
    #[error("signature does not match")]
    Mismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Discord public key must be 32 bytes of hex")]
pub struct BadPublicKey;

/// Parses the application's public key as Discord shows it (hex).
pub fn public_key(hex_key: &str) -> Result<VerifyingKey, BadPublicKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| BadPublicKey)
}

/// What Discord's inbound route needs to authenticate and translate
/// requests.
#[derive(Clone)]
pub struct DiscordInbound {
    key: VerifyingKey,
    api_url: String,
}

impl DiscordInbound {
    /// `public_key_hex` is the application's public key as Discord shows it.
    pub fn new(
        public_key_hex: &str,
        config: &crate::config::DiscordConfig,
    ) -> Result<Self, BadPublicKey> {
        Ok(Self {
            key: public_key(public_key_hex)?,
            api_url: config.api_url.clone(),
        })
    }

    /// The API base URL that follow-up links in interactions point at.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Checks a request's signature headers (looked up with `header`).
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), DiscordVerifyError> {
        verify(
            &self.key,
            header("x-signature-timestamp"),
            header("x-signature-ed25519"),
            body,
            now,
        )
    }
}

/// Checks a request signed by Discord.
pub fn verify(
    key: &VerifyingKey,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), DiscordVerifyError> {
    let timestamp = timestamp
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(DiscordVerifyError::BadTimestamp)?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| DiscordVerifyError::BadTimestamp)?;
    if (now.timestamp() - ts).abs() > MAX_SKEW_S {
        return Err(DiscordVerifyError::Stale);
    }
    let bytes: [u8; 64] = signature
        .and_then(|s| hex::decode(s.trim()).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(DiscordVerifyError::BadSignatureHeader)?;
    let signature = Signature::from_bytes(&bytes);
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify(&message, &signature)
        .map_err(|_| DiscordVerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn signed_requests_verify_and_tampering_does_not() {
        let signing = SigningKey::from_bytes(&[3; 32]);
        let key = public_key(&hex::encode(signing.verifying_key().to_bytes())).unwrap();
        let now = DateTime::from_timestamp(1_764_072_000, 0).unwrap();
        let ts = "1764072000";
        let body = br#"{"type":1}"#;
        let sig = hex::encode(signing.sign(&[ts.as_bytes(), body].concat()).to_bytes());
        verify(&key, Some(ts), Some(&sig), body, now).unwrap();
        assert_eq!(
            verify(&key, Some(ts), Some(&sig), br#"{"type":2}"#, now),
            Err(DiscordVerifyError::Mismatch)
        );
        assert_eq!(
            verify(&key, Some("1764071000"), Some(&sig), body, now),
            Err(DiscordVerifyError::Stale)
        );
        assert_eq!(
            verify(&key, Some(ts), Some("zz"), body, now),
            Err(DiscordVerifyError::BadSignatureHeader)
        );
        assert_eq!(
            verify(&key, None, Some(&sig), body, now),
            Err(DiscordVerifyError::BadTimestamp)
        );
        assert!(public_key("abcd").is_err());
    }
}
