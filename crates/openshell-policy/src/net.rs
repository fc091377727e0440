//! Address classes for the SSRF rules: what a sandbox may never reach, and what
//! it may reach only when an endpoint's `allowed_ips` says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

static ALWAYS_BLOCKED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(build_always_blocked);
static PRIVATE_RANGES: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(build_private_ranges);

/// Ranges never reachable from a sandbox, whatever the policy says.
pub fn always_blocked() -> &'static [(IpNet, &'static str)] {
    &ALWAYS_BLOCKED
}

/// Private ranges: reachable only through an endpoint's `allowed_ips`.
pub fn private_ranges() -> &'static [(IpNet, &'static str)] {
    &PRIVATE_RANGES
}

fn build_always_blocked() -> Vec<(IpNet, &'static str)> {
    let v4 = |a, b, c, d, len| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len));
    let v6 = |s: &str, len| IpNet::V6(Ipv6Net::new_assert(s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED), len));
    vec![
        (v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"),
        (v4(169, 254, 0, 0, 16), "link-local and cloud metadata (169.254.0.0/16)"),
        (v4(0, 0, 0, 0, 8), "the unspecified network (0.0.0.0/8)"),
        (v6("::1", 128), "loopback (::1)"),
        (v6("::", 128), "the unspecified address (::)"),
        (v6("fe80::", 10), "link-local (fe80::/10)"),
        (v6("::ffff:127.0.0.0", 104), "IPv4-mapped loopback (::ffff:127.0.0.0/104)"),
        (v6("::ffff:169.254.0.0", 112), "IPv4-mapped link-local (::ffff:169.254.0.0/112)"),
        (v6("::ffff:0.0.0.0", 104), "IPv4-mapped unspecified (::ffff:0.0.0.0/104)"),
    ]
}

fn build_private_ranges() -> Vec<(IpNet, &'static str)> {
    let v4 = |a, b, c, d, len| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len));
    let v6 = |s: &str, len| IpNet::V6(Ipv6Net::new_assert(s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED), len));
    vec![
        (v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
        (v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
        (v4(192, 168, 0, 0, 16), "private (192.168.0.0/16)"),
        (v4(100, 64, 0, 0, 10), "shared address space (100.64.0.0/10)"),
        (v6("fc00::", 7), "unique local (fc00::/7)"),
    ]
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The always-blocked range that `net` overlaps, if any.
pub fn blocked_overlap(net: &IpNet) -> Option<&'static str> {
    always_blocked().iter().find(|(b, _)| overlaps(net, b)).map(|(_, name)| *name)
}

/// How the SSRF rules classify a destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Never reachable; names the range.
    Blocked(&'static str),
    /// Reachable only through `allowed_ips`; names the range.
    Private(&'static str),
    Public,
}

/// Classifies an address, seeing through IPv4-mapped IPv6 forms.
pub fn classify(ip: IpAddr) -> AddrClass {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_multicast() {
        return AddrClass::Blocked("multicast");
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return AddrClass::Blocked("broadcast (255.255.255.255)");
    }
    if let Some((_, name)) = always_blocked().iter().find(|(n, _)| n.contains(&ip)) {
        return AddrClass::Blocked(name);
    }
    if let Some((_, name)) = private_ranges().iter().find(|(n, _)| n.contains(&ip)) {
        return AddrClass::Private(name);
    }
    AddrClass::Public
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = |s: &str| classify(s.parse().expect("ip"));
        assert!(matches!(c("127.0.0.1"), AddrClass::Blocked(_)));
        assert!(matches!(c("169.254.169.254"), AddrClass::Blocked(_)));
        assert!(matches!(c("::ffff:127.0.0.1"), AddrClass::Blocked(_)));
        assert!(matches!(c("0.0.0.0"), AddrClass::Blocked(_)));
        assert!(matches!(c("::"), AddrClass::Blocked(_)));
        assert!(matches!(c("fe80::1"), AddrClass::Blocked(_)));
        assert!(matches!(c("224.0.0.1"), AddrClass::Blocked(_)));
        assert!(matches!(c("10.1.2.3"), AddrClass::Private(_)));
        assert!(matches!(c("::ffff:192.168.1.1"), AddrClass::Private(_)));
        assert!(matches!(c("fd00::1"), AddrClass::Private(_)));
        assert_eq!(c("93.184.216.34"), AddrClass::Public);
        assert_eq!(c("2606:4700::1"), AddrClass::Public);
    }

    #[test]
    fn overlap() {
        let o = |s: &str| blocked_overlap(&s.parse().expect("net"));
        assert!(o("0.0.0.0/0").is_some());
        assert!(o("127.0.0.1/32").is_some());
        assert!(o("169.254.0.0/24").is_some());
        assert!(o("::/0").is_some());
        assert!(o("10.0.0.0/8").is_none());
        assert!(o("192.168.1.0/24").is_none());
    }
}
