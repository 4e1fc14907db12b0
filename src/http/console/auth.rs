//! Who is looking at the console: a signed session cookie (from signing in
//! with the read token), a trusted proxy's user header, or nobody. Also the
//! checks every console answer shares: the security headers and the
//! `Origin` check on the two forms. Decides only; the handlers answer.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};

use super::session::{cookie_value, SessionKey, COOKIE};
use crate::config::{Config, Secrets};
use crate::ingest::signature;

/// The console's content security policy: nothing from anywhere but this
/// server, no script at all, no framing, forms only to this server.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the person got in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A session cookie from signing in with the read token.
    Session,
    /// The user header of a trusted proxy.
    Proxy,
    /// No read token is configured: the console is as open as the read API
    /// (which `serve` allows on loopback only).
    Open,
}

/// The person looking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub name: String,
    pub via: Via,
}

/// How the console authenticates, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `None` when no read token is configured.
    key: Option<SessionKey>,
    read_token: Option<Vec<u8>>,
    lifetime: Duration,
    secure: bool,
    proxy_header: Option<header::HeaderName>,
    proxies: Vec<ipnet::IpNet>,
    public_origin: Option<String>,
}

impl Auth {
    pub fn from_config(config: &Config, secrets: &Secrets) -> Self {
        let read_token = secrets
            .read_token
            .as_ref()
            .map(|t| t.expose().as_bytes().to_vec());
        let public = url::Url::parse(config.server.public_url.trim()).ok();
        let proxies = config
            .console
            .trusted_proxies
            .iter()
            .filter_map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| p.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        Self {
            key: read_token.as_deref().map(SessionKey::derive),
            read_token,
            lifetime: Duration::hours(i64::from(config.console.session_hours.max(1))),
            secure: public.as_ref().is_some_and(|u| u.scheme() == "https"),
            proxy_header: header::HeaderName::from_bytes(
                config.console.trusted_proxy_header.trim().as_bytes(),
            )
            .ok(),
            proxies,
            public_origin: public.map(|u| u.origin().ascii_serialization()),
        }
    }

    /// Whether the read token is configured (otherwise nobody signs in).
    pub fn sign_in_needed(&self) -> bool {
        self.key.is_some()
    }

    /// The person behind a request, or `None` when they must sign in. The
    /// proxy header counts only from a configured proxy address; a session
    /// cookie only when its signature matches and it has not expired.
    pub fn viewer(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        now: DateTime<Utc>,
    ) -> Option<Viewer> {
        if let (Some(name), Some(peer)) = (&self.proxy_header, peer) {
            let trusted = self.proxies.iter().any(|net| net.contains(&peer.ip()));
            let user = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim);
            if let (true, Some(user)) = (trusted, user.filter(|u| !u.is_empty())) {
                return Some(Viewer {
                    name: user.chars().take(200).collect(),
                    via: Via::Proxy,
                });
            }
        }
        let Some(key) = &self.key else {
            return Some(Viewer {
                name: "anyone (no read token is set)".into(),
                via: Via::Open,
            });
        };
        let cookies = headers.get_all(header::COOKIE);
        for value in cookies.iter().filter_map(|v| v.to_str().ok()) {
            if let Some(cookie) = cookie_value(value, COOKIE) {
                if let Ok(session) = key.verify(cookie, now) {
                    return Some(Viewer {
                        name: session.user,
                        via: Via::Session,
                    });
                }
            }
        }
        None
    }

    /// Whether `presented` is the read token (constant time). Only the read
    /// token signs in: the admin token is not accepted (the console is
    /// read-only, and the token that changes things should not be typed
    /// into a browser), nor the ingest token, unless either equals the read
    /// token.
    pub fn is_read_token(&self, presented: &str) -> bool {
        self.read_token
            .as_deref()
            .is_some_and(|t| signature::verify_token(t, Some(presented)).is_ok())
    }

    /// The `Set-Cookie` value of a new session for `user` signed in at `now`.
    pub fn session_cookie(&self, user: &str, now: DateTime<Utc>) -> Option<String> {
        let key = self.key.as_ref()?;
        let value = key.sign(user, now + self.lifetime);
        Some(format!(
            "{COOKIE}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.lifetime.num_seconds(),
            if self.secure { "; Secure" } else { "" }
        ))
    }

    /// The `Set-Cookie` value that ends the session.
    pub fn cleared_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Whether a form post comes from this site. Browsers that send
    /// `Sec-Fetch-Site` are believed: `same-origin` (or `none`, typed by
    /// the person) passes, anything else does not. Otherwise an `Origin`
    /// header must be `server.public_url`'s origin or the origin of the
    /// `Host` the request was sent to; `Origin: null` is refused (under
    /// `Referrer-Policy: no-referrer` browsers send it for their own forms,
    /// but those browsers send `Sec-Fetch-Site` too). With neither header
    /// (older browsers, non-browser clients) the post passes, the session
    /// cookie being `SameSite=Strict`.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        if let Some(site) = headers.get("sec-fetch-site") {
            return matches!(site.to_str(), Ok("same-origin") | Ok("none"));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().trim_end_matches('/');
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match (host, origin.split_once("://")) {
            (Some(host), Some((scheme, rest))) => {
                matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host.trim())
            }
            _ => false,
        }
    }
}

/// Adds the console's security headers to every answer under `/ui`.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn auth(public_url: &str) -> Auth {
        let mut config = Config::default();
        config.server.public_url = public_url.into();
        config.console.session_hours = 12;
        config.console.trusted_proxy_header = "X-Forwarded-User".into();
        config.console.trusted_proxies = vec!["10.0.0.0/8".into(), "192.168.1.7".into()];
        let secrets = Secrets {
            read_token: Some(Secret::new("read")),
            ..Secrets::default()
        };
        Auth::from_config(&config, &secrets)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_proxy_header_counts_only_from_a_trusted_peer() {
        let a = auth("");
        let now = Utc::now();
        let h = headers(&[("x-forwarded-user", "alice")]);
        let trusted: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let single: SocketAddr = "192.168.1.7:5000".parse().unwrap();
        let other: SocketAddr = "192.168.1.8:5000".parse().unwrap();
        assert_eq!(a.viewer(&h, Some(trusted), now).unwrap().via, Via::Proxy);
        assert_eq!(a.viewer(&h, Some(single), now).unwrap().name, "alice");
        assert_eq!(a.viewer(&h, Some(other), now), None);
        assert_eq!(a.viewer(&h, None, now), None);
    }

    #[test]
    fn cookies_carry_their_flags() {
        let now = Utc::now();
        let plain = auth("http://pm.local").session_cookie("x", now).unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/ui") && plain.contains("Max-Age=43200"));
        assert!(!plain.contains("Secure"));
        let secure = auth("https://pm.example.com").session_cookie("x", now);
        assert!(secure.unwrap().ends_with("; Secure"));
    }

    #[test]
    fn only_the_same_origin_may_post() {
        let a = auth("https://pm.example.com/");
        assert!(a.same_origin(&headers(&[])));
        assert!(a.same_origin(&headers(&[("origin", "https://pm.example.com")])));
        assert!(a.same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!a.same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!a.same_origin(&headers(&[("origin", "null"), ("host", "x")])));
        assert!(a.same_origin(&headers(&[
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!a.same_origin(&headers(&[
            ("origin", "https://pm.example.com"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!a.same_origin(&headers(&[("sec-fetch-site", "same-site")])));
    }

    #[test]
    fn only_the_read_token_signs_in() {
        let a = auth("");
        assert!(a.is_read_token("read"));
        assert!(!a.is_read_token("reads"));
        assert!(!a.is_read_token(""));
    }
}
