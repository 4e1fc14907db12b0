//! Slack request signatures: `v0=` + hex HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` with the signing secret, compared
//! in constant time, with the timestamp within five minutes of `now`. Pure:
//! the caller passes the clock's time.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest accepted distance between the request timestamp and now.
pub const MAX_SKEW_S: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackVerifyError {
    #[error("X-Slack-Request-Timestamp is missing or not a number")]
    BadTimestamp,
    #[error("request timestamp is more than five minutes from now")]
    Stale,
    #[error("X-Slack-Signature is missing or malformed")]
    BadSignatureHeader,
    #[error("signature does not match")]
    Mismatch,
}

/// What Slack's inbound routes need to authenticate requests.
#[derive(Clone)]
pub struct SlackInbound {
    signing_secret: crate::config::Secret,
}

impl SlackInbound {
    pub fn new(
        signing_secret: crate::config::Secret,
        _config: &crate::config::SlackConfig,
    ) -> Self {
        Self { signing_secret }
    }

    /// Checks a request's signature headers (looked up with `header`).
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SlackVerifyError> {
        verify(
            self.signing_secret.expose().as_bytes(),
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
            now,
        )
    }
}

/// Checks a request signed by Slack.
pub fn verify(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SlackVerifyError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SlackVerifyError::BadTimestamp)?;
    if (now.timestamp() - ts).abs() > MAX_SKEW_S {
        return Err(SlackVerifyError::Stale);
    }
    let presented = signature
        .and_then(|s| s.trim().strip_prefix("v0="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
        .ok_or(SlackVerifyError::BadSignatureHeader)?;
    mac_for(signing_secret, ts, body)
        .verify_slice(&presented)
        .map_err(|_| SlackVerifyError::Mismatch)
}

/// The `X-Slack-Signature` value for a body (used by tests and fakes).
pub fn sign(signing_secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = mac_for(signing_secret, timestamp, body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac_for(signing_secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's documented example: secret, timestamp, body and signature.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    #[test]
    fn slack_documented_example_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), 1531420618, BODY.as_bytes()), SIG);
        verify(
            SECRET.as_bytes(),
            Some(TS),
            Some(SIG),
            BODY.as_bytes(),
            at(1531420618 + 60),
        )
        .unwrap();
    }

    #[test]
    fn tampered_stale_or_missing_is_refused() {
        let now = at(1531420618);
        assert_eq!(
            verify(SECRET.as_bytes(), Some(TS), Some(SIG), b"other", now),
            Err(SlackVerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET.as_bytes(),
                Some(TS),
                Some(SIG),
                BODY.as_bytes(),
                at(1531420618 + 301)
            ),
            Err(SlackVerifyError::Stale)
        );
        assert_eq!(
            verify(SECRET.as_bytes(), None, Some(SIG), BODY.as_bytes(), now),
            Err(SlackVerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(
                SECRET.as_bytes(),
                Some(TS),
                Some("abc"),
                BODY.as_bytes(),
                now
            ),
            Err(SlackVerifyError::BadSignatureHeader)
        );
    }
}
