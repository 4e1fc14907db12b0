//! Request authentication for the ingest routes: GitHub's
//! `X-Hub-Signature-256` HMAC, and the shared tokens of GitLab
//! (`X-Gitlab-Token`), the AWS EventBridge API destination
//! (`X-Pipemedic-Secret`) and the generic API (`Authorization: Bearer`).
//!
//! Every comparison runs in constant time. Errors say which check failed,
//! never what was expected or presented, so they are safe to log and to
//! return to the caller.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of GitHub's `X-Hub-Signature-256` header value.
const GITHUB_PREFIX: &str = "sha256=";

/// Why a request's credential was refused (all answered with HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header carrying the credential is absent.
    #[error("credential is missing")]
    Missing,
    /// The header is present but not in the expected form.
    #[error("credential is malformed")]
    Malformed,
    /// The credential is well formed but wrong.
    #[error("credential does not match")]
    Mismatch,
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` signed with
/// `secret`: `sha256=` followed by the lowercase hex HMAC-SHA256. For tests
/// and for clients that post to the GitHub route.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    format!("{GITHUB_PREFIX}{}", hex::encode(github_mac(secret, body)))
}

fn github_mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks GitHub's `X-Hub-Signature-256` header (`sha256=<64 hex digits>`)
/// against the HMAC-SHA256 of the raw `body` under `secret`, in constant
/// time. The hex digits may be upper or lower case.
pub fn verify_github_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let digits = header
        .get(..GITHUB_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(GITHUB_PREFIX))
        .map(|_| &header[GITHUB_PREFIX.len()..])
        .ok_or(SignatureError::Malformed)?;
    if digits.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let presented = hex::decode(digits).map_err(|_| SignatureError::Malformed)?;
    let expected = github_mac(secret, body);
    if bool::from(expected.ct_eq(&presented)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Compares a presented token with the expected one in constant time (the
/// comparison takes the same time wherever the first difference is; only
/// the length of the expected token may be learnt). Used for GitLab's
/// `X-Gitlab-Token`, the AWS shared-secret header and bearer tokens.
pub fn verify_token(expected: &[u8], presented: Option<&str>) -> Result<(), SignatureError> {
    let presented = presented.ok_or(SignatureError::Missing)?;
    if presented.is_empty() {
        return Err(SignatureError::Missing);
    }
    if bool::from(expected.ct_eq(presented.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive).
pub fn parse_bearer(header: Option<&str>) -> Result<&str, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let (scheme, token) = header.split_once(' ').ok_or(SignatureError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(SignatureError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    #[test]
    fn github_documented_test_vector() {
        // The example GitHub publishes for validating webhook deliveries.
        assert_eq!(
            sign_github(SECRET, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn github_signature_good_bad_missing_malformed() {
        let body = br#"{"action":"completed"}"#;
        let good = sign_github(SECRET, body);
        assert_eq!(verify_github_signature(SECRET, body, Some(&good)), Ok(()));
        assert_eq!(
            verify_github_signature(
                SECRET,
                body,
                Some(&good.to_uppercase().replace("SHA256=", "sha256="))
            ),
            Ok(())
        );
        assert_eq!(
            verify_github_signature(b"other secret", body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_github_signature(SECRET, b"{\"action\":\"requested\"}", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_github_signature(SECRET, body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_github_signature(SECRET, body, Some("")),
            Err(SignatureError::Missing)
        );
        for bad in [
            "sha1=0123",
            "sha256=",
            "sha256=zz07107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            &good[..good.len() - 2],
        ] {
            assert_eq!(
                verify_github_signature(SECRET, body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert_eq!(verify_token(b"s3cret", Some("s3cret")), Ok(()));
        assert_eq!(
            verify_token(b"s3cret", Some("s3cre")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_token(b"s3cret", Some("s3cret ")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_token(b"s3cret", None), Err(SignatureError::Missing));
        assert_eq!(
            verify_token(b"s3cret", Some("")),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(parse_bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(parse_bearer(Some("bearer   abc ")), Ok("abc"));
        assert_eq!(parse_bearer(None), Err(SignatureError::Missing));
        assert_eq!(parse_bearer(Some("")), Err(SignatureError::Missing));
        assert_eq!(
            parse_bearer(Some("Basic abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(parse_bearer(Some("Bearer")), Err(SignatureError::Malformed));
        assert_eq!(
            parse_bearer(Some("Bearer a b")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn messages_never_echo_credentials() {
        let err = verify_token(b"topsecret", Some("guess")).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("topsecret") && !text.contains("guess"),
            "{text}"
        );
    }
}
