//! Constant-time request authentication helpers.

use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("credential is missing")]
    Missing,
    #[error("credential is malformed")]
    Malformed,
    #[error("credential does not match")]
    Mismatch,
}

/// Compares a presented token with the expected one in constant time.
pub fn verify_token(expected: &[u8], presented: Option<&str>) -> Result<(), SignatureError> {
    let presented = presented.ok_or(SignatureError::Missing)?;
    if bool::from(expected.ct_eq(presented.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn parse_bearer(header: Option<&str>) -> Result<&str, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(SignatureError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok(token.trim())
}
