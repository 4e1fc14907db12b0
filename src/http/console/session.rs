//! The console's session cookie: who signed in and until when, signed with
//! HMAC-SHA256 under a key derived from the read token, so every replica
//! with the same token accepts the same cookie and changing the token ends
//! every session. Pure: no I/O, the time is passed in.
//!
//! The value is `v1.<expires unix seconds>.<user, hex>.<mac, hex>`; the mac
//! covers everything before it, so neither the expiry nor the user can be
//! changed without the key.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The cookie's name.
pub const COOKIE: &str = "pipemedic_console";

/// What the key is derived for (changing it ends every session).
const KEY_LABEL: &[u8] = b"pipemedic console session key v1";

/// Why a cookie value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is not in the expected shape")]
    Malformed,
    #[error("the session cookie's signature does not match")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
}

/// The signing key of sessions, derived from the read token.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub expires: DateTime<Utc>,
}

impl SessionKey {
    /// The key for sessions signed in with `read_token`.
    pub fn derive(read_token: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(read_token).expect("HMAC takes any key length");
        mac.update(KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }

    /// The cookie value for `user` until `expires`.
    pub fn sign(&self, user: &str, expires: DateTime<Utc>) -> String {
        let signed = format!("v1.{}.{}", expires.timestamp(), hex::encode(user));
        let tag = hex::encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The session of a cookie value, if it was signed with this key and
    /// has not expired at `now` (the signature is checked in constant time
    /// before anything else is believed).
    pub fn verify(&self, value: &str, now: DateTime<Utc>) -> Result<Session, SessionError> {
        let (signed, tag) = value.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| SessionError::Malformed)?;
        self.mac(signed)
            .verify_slice(&tag)
            .map_err(|_| SessionError::BadSignature)?;
        let mut parts = signed.split('.');
        let (Some("v1"), Some(expires), Some(user), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let expires = expires
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .ok_or(SessionError::Malformed)?;
        let user = hex::decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(SessionError::Malformed)?;
        if now >= expires {
            return Err(SessionError::Expired);
        }
        Ok(Session { user, expires })
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_signed_session_verifies_until_it_expires() {
        let key = SessionKey::derive(b"read-token");
        let value = key.sign("read token", at("2026-01-01T12:00:00Z"));
        let session = key.verify(&value, at("2026-01-01T11:59:59Z")).unwrap();
        assert_eq!(session.user, "read token");
        assert_eq!(
            key.verify(&value, at("2026-01-01T12:00:00Z")),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn a_changed_expiry_user_or_key_is_refused() {
        let key = SessionKey::derive(b"read-token");
        let now = at("2026-01-01T00:00:00Z");
        let value = key.sign("alice", at("2026-01-01T12:00:00Z"));
        let later = value.replacen(
            &at("2026-01-01T12:00:00Z").timestamp().to_string(),
            &at("2027-01-01T12:00:00Z").timestamp().to_string(),
            1,
        );
        assert_eq!(key.verify(&later, now), Err(SessionError::BadSignature));
        let other_user = value.replacen(&hex::encode("alice"), &hex::encode("mallory"), 1);
        assert_eq!(
            key.verify(&other_user, now),
            Err(SessionError::BadSignature)
        );
        let other_key = SessionKey::derive(b"another-token");
        assert_eq!(
            other_key.verify(&value, now),
            Err(SessionError::BadSignature)
        );
        assert_eq!(key.verify("garbage", now), Err(SessionError::Malformed));
        assert_eq!(key.verify("", now), Err(SessionError::Malformed));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "a=1; pipemedic_console=v1.2.3.4; b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("v1.2.3.4"));
        assert_eq!(cookie_value("pipemedic_consolex=1", COOKIE), None);
    }
}
