//! Where an `http` action may connect: a DNS resolver for the action's
//! HTTP client that hands the connector only addresses the allowlist
//! permits ([`HttpAllowlist::check_address`]). The check and the connection
//! use the same answer, so a name that resolves to a public address when
//! checked and to 127.0.0.1 a moment later (DNS rebinding) cannot redirect
//! a request. It decides nothing else about the request.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::HttpAllowlist;

/// A name whose every address the allowlist refuses.
#[derive(Debug, thiserror::Error)]
#[error("host {host:?} resolves only to refused addresses: {reasons}")]
pub struct RefusedAddress {
    pub host: String,
    pub reasons: String,
}

/// Resolves with the system resolver and keeps the permitted addresses.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    allowlist: Arc<HttpAllowlist>,
}

impl CheckedResolver {
    pub fn new(allowlist: Arc<HttpAllowlist>) -> Self {
        Self { allowlist }
    }
}

/// The permitted addresses of `addrs`, or why none is.
pub fn permitted(
    allowlist: &HttpAllowlist,
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, RefusedAddress> {
    let mut kept = Vec::new();
    let mut reasons = Vec::new();
    for addr in addrs {
        match allowlist.check_address(addr.ip()) {
            Ok(()) => kept.push(addr),
            Err(reason) => reasons.push(reason),
        }
    }
    if kept.is_empty() {
        if reasons.is_empty() {
            reasons.push("no address".to_string());
        }
        return Err(RefusedAddress {
            host: host.to_string(),
            reasons: reasons.join("; "),
        });
    }
    Ok(kept)
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowlist = self.allowlist.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = permitted(&allowlist, &host, found)?;
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The [`RefusedAddress`] behind a failed send, if that is why it failed.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return Some(refused.to_string());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_names_say_why_and_allowed_ones_pass() {
        let none = Arc::new(HttpAllowlist::default());
        let resolver = CheckedResolver::new(none);
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let message = refusal_in(err.as_ref()).expect("a refusal");
        assert!(message.contains("loopback"), "{message}");

        let local = Arc::new(HttpAllowlist::parse(&["127.0.0.0/8".into(), "::1".into()]).unwrap());
        let resolver = CheckedResolver::new(local);
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = match resolver.resolve(name).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => panic!("allowlisted loopback refused: {e}"),
        };
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn a_mixed_answer_keeps_only_permitted_addresses() {
        let none = HttpAllowlist::default();
        let kept = permitted(
            &none,
            "mixed.example",
            [
                "127.0.0.1:0".parse().unwrap(),
                "93.184.216.34:0".parse().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(kept, ["93.184.216.34:0".parse::<SocketAddr>().unwrap()]);
    }
}
