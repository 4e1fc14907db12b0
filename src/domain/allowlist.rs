//! The one allowlist of `http` actions (`remediate.http_allowlist`): which
//! hosts a playbook may name, and which network addresses a request may
//! reach. It owns the address rules (loopback, link-local, private,
//! unique-local, unspecified, CGNAT and their IPv4-mapped forms are refused
//! unless an entry names the address or its network); it does no I/O —
//! resolving and connecting are the executor's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// An exact host name (lowercase, no trailing dot).
    Host(String),
    /// `*.domain`: every subdomain of `domain`, not `domain` itself.
    Subdomains(String),
    /// An address (`127.0.0.1`, a /32 or /128) or a network in CIDR form.
    Net(IpNet),
}

/// The parsed `remediate.http_allowlist`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAllowlist {
    entries: Vec<Entry>,
}

/// Why an entry is not an allowlist entry.
pub fn check_allowlist_entry(entry: &str) -> Result<(), String> {
    parse_entry(entry).map(|_| ())
}

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let text = entry.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Entry::Net(IpNet::from(canonical(ip))));
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(Entry::Net(net.trunc()));
    }
    let host = text.strip_prefix("*.").unwrap_or(text);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !host.starts_with('.')
        && !host.ends_with('.');
    if !valid {
        return Err(format!(
            "{entry:?} must be a host name (hooks.internal.example), *.domain, an IP address (10.0.0.5) or a CIDR network (10.0.0.0/24), with no scheme, port or path"
        ));
    }
    let host = host.to_ascii_lowercase();
    Ok(if text.starts_with("*.") {
        Entry::Subdomains(host)
    } else {
        Entry::Host(host)
    })
}

impl HttpAllowlist {
    /// The allowlist of `entries`, or the first bad entry (its index and
    /// why). Configuration validation reports every bad entry before this.
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e).map_err(|m| (i, m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// The valid entries of `entries` (bad ones are left out).
    pub fn lenient(entries: &[String]) -> Self {
        Self {
            entries: entries.iter().filter_map(|e| parse_entry(e).ok()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a URL's host may be named: an exact name, a subdomain of a
    /// `*.domain` entry, or an address inside an address or network entry.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.names_address(ip);
        }
        self.entries.iter().any(|entry| match entry {
            Entry::Host(name) => *name == host,
            Entry::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            Entry::Net(_) => false,
        })
    }

    /// Whether an address or network entry names `ip` (an IPv4-mapped IPv6
    /// address counts as its IPv4 address).
    pub fn names_address(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|entry| match entry {
            Entry::Net(net) => net.contains(&ip),
            _ => false,
        })
    }

    /// Whether a request may connect to `ip`: a public address, or one an
    /// entry names. The error says which kind of address was refused.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), String> {
        if self.names_address(ip) {
            return Ok(());
        }
        match restricted_address(ip) {
            Some(kind) => Err(format!(
                "{ip} is a {kind} address; add it to remediate.http_allowlist to allow it"
            )),
            None => Ok(()),
        }
    }
}

/// `ip`, with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The kind of a non-public address an `http` action may not reach
/// unless allowlisted, or `None` for a public one.
pub fn restricted_address(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if let Some(v4) = embedded_v4(ip) {
        restricted_v4(v4)
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) address, which would reach that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new(
        (s[6] >> 8) as u8,
        (s[6] & 0xff) as u8,
        (s[7] >> 8) as u8,
        (s[7] & 0xff) as u8,
    );
    let compatible = s[..6].iter().all(|x| *x == 0);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
    (compatible || nat64).then_some(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let none = HttpAllowlist::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(none.check_address(ip(refused)).is_err(), "{refused}");
        }
        for public in [
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(none.check_address(ip(public)).is_ok(), "{public}");
        }
        let message = none.check_address(ip("169.254.169.254")).unwrap_err();
        assert!(message.contains("link-local"), "{message}");
        assert!(message.contains("remediate.http_allowlist"), "{message}");
    }

    #[test]
    fn entries_name_addresses_and_networks() {
        let list = HttpAllowlist::parse(&[
            "127.0.0.1".into(),
            "10.20.0.0/16".into(),
            "fd12::/16".into(),
            "hooks.internal.example".into(),
            "*.ops.example".into(),
        ])
        .unwrap();
        assert!(list.check_address(ip("127.0.0.1")).is_ok());
        assert!(list.check_address(ip("::ffff:127.0.0.1")).is_ok());
        assert!(list.check_address(ip("127.0.0.2")).is_err());
        assert!(list.check_address(ip("10.20.3.4")).is_ok());
        assert!(list.check_address(ip("10.21.0.1")).is_err());
        assert!(list.check_address(ip("fd12::5")).is_ok());
        assert!(list.check_address(ip("169.254.169.254")).is_err());
        assert!(list.allows_host("127.0.0.1"));
        assert!(list.allows_host("10.20.9.9"));
        assert!(list.allows_host("[fd12::5]"));
        assert!(!list.allows_host("169.254.169.254"));
        assert!(list.allows_host("HOOKS.internal.example."));
        assert!(list.allows_host("a.ops.example"));
        assert!(!list.allows_host("ops.example"));
        assert!(!list.allows_host("evilops.example"));
        // A name entry never makes its addresses allowed.
        assert!(!list.names_address(ip("192.168.0.1")));
    }

    #[test]
    fn bad_entries_are_named() {
        let (i, message) =
            HttpAllowlist::parse(&["ok.example".into(), "https://x/".into()]).unwrap_err();
        assert_eq!(i, 1);
        assert!(message.contains("CIDR"), "{message}");
        assert!(check_allowlist_entry("10.0.0.0/33").is_err());
        assert!(check_allowlist_entry("10.0.0.0/8").is_ok());
        assert!(check_allowlist_entry("::1").is_ok());
    }
}
