//! Address rules for `auth.allow` / `auth.reject`, shared by bricks and the volfile server.
//!
//! A rule is `*` (everyone), an exact address (`10.1.2.3`, `::1`), a wildcard over IPv4
//! octets (`10.1.*.*`, `192.168.*`), or a CIDR block (`10.0.0.0/8`, `fd00::/8`). An address
//! is admitted when it matches some `allow` rule and no `reject` rule.

use std::net::IpAddr;

/// Checks one rule's syntax; the error says what is wrong.
pub fn check_rule(rule: &str) -> Result<(), String> {
    let r = rule.trim();
    if r == "*" || r.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some((net, bits)) = r.split_once('/') {
        let ip: IpAddr = net
            .parse()
            .map_err(|_| format!("'{rule}': '{net}' is not an address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return match bits.parse::<u32>() {
            Ok(b) if b <= max => Ok(()),
            _ => Err(format!("'{rule}': the prefix length must be 0 to {max}")),
        };
    }
    let parts: Vec<&str> = r.split('.').collect();
    if parts.len() <= 4
        && parts.contains(&"*")
        && parts.iter().all(|p| *p == "*" || p.parse::<u8>().is_ok())
    {
        return Ok(());
    }
    Err(format!(
        "'{rule}' is not '*', an address, a wildcard like 10.1.*.* or a CIDR block like 10.0.0.0/8"
    ))
}

fn matches(rule: &str, ip: IpAddr) -> bool {
    let r = rule.trim();
    if r == "*" {
        return true;
    }
    // An IPv4 client may appear as an IPv4-mapped IPv6 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if let Ok(exact) = r.parse::<IpAddr>() {
        return exact == ip;
    }
    if let Some((net, bits)) = r.split_once('/') {
        let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
            return false;
        };
        return match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        };
    }
    let IpAddr::V4(v4) = ip else { return false };
    let octets = v4.octets();
    let parts: Vec<&str> = r.split('.').collect();
    // "192.168.*" covers the remaining octets.
    parts
        .iter()
        .enumerate()
        .all(|(i, p)| *p == "*" || octets.get(i).is_some_and(|o| p.parse::<u8>() == Ok(*o)))
        && (parts.len() == 4 || parts.last() == Some(&"*"))
}

/// True when `ip` matches some `allow` rule and no `reject` rule. An empty `allow` list
/// admits everyone.
pub fn admitted(ip: IpAddr, allow: &[String], reject: &[String]) -> bool {
    let allowed = allow.is_empty() || allow.iter().any(|r| matches(r, ip));
    allowed && !reject.iter().any(|r| matches(r, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v(rules: &[&str]) -> Vec<String> {
        rules.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules() {
        assert!(admitted(ip("10.1.2.3"), &v(&["*"]), &[]));
        assert!(admitted(ip("10.1.2.3"), &[], &[]));
        assert!(admitted(ip("10.1.2.3"), &v(&["10.1.*.*"]), &[]));
        assert!(admitted(ip("10.1.2.3"), &v(&["10.1.*"]), &[]));
        assert!(!admitted(ip("10.2.2.3"), &v(&["10.1.*"]), &[]));
        assert!(admitted(ip("10.1.2.3"), &v(&["10.0.0.0/8"]), &[]));
        assert!(!admitted(ip("11.1.2.3"), &v(&["10.0.0.0/8"]), &[]));
        assert!(!admitted(ip("10.1.2.3"), &v(&["*"]), &v(&["10.1.2.3"])));
        assert!(admitted(ip("::ffff:10.1.2.3"), &v(&["10.1.2.3"]), &[]));
        assert!(admitted(ip("fd00::1"), &v(&["fd00::/8"]), &[]));
        assert!(
            !admitted(ip("10.1.2.3"), &v(&["10.1.2"]), &[]),
            "a partial address without * is not a wildcard"
        );
        assert!(admitted(ip("0.0.0.1"), &v(&["0.0.0.0/0"]), &[]));
    }

    #[test]
    fn syntax() {
        for ok in [
            "*",
            "10.1.2.3",
            "10.1.*.*",
            "192.168.*",
            "10.0.0.0/8",
            "::1",
            "fd00::/8",
        ] {
            check_rule(ok).unwrap();
        }
        for bad in [
            "10.0.0.0/33",
            "host.example",
            "10.1.2.300",
            "10.*.x.*",
            "fd00::/200",
        ] {
            assert!(check_rule(bad).is_err(), "{bad}");
        }
    }
}
