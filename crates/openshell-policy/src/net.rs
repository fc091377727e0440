//! Address classes for the SSRF rules: what a sandbox may never reach, and what
//! it may reach only when an endpoint's `allowed_ips` says so.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use ipnet::IpNet;

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

const BLOCKED_TABLE: &[(&str, &str)] = &[
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local and cloud metadata (169.254.0.0/16)"),
    ("0.0.0.0/8", "the unspecified network (0.0.0.0/8)"),
    ("::1/128", "loopback (::1)"),
    ("::/128", "the unspecified address (::)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("::ffff:127.0.0.0/104", "IPv4-mapped loopback (::ffff:127.0.0.0/104)"),
    ("::ffff:169.254.0.0/112", "IPv4-mapped link-local (::ffff:169.254.0.0/112)"),
    ("::ffff:0.0.0.0/104", "IPv4-mapped unspecified (::ffff:0.0.0.0/104)"),
];

const PRIVATE_TABLE: &[(&str, &str)] = &[
    ("10.0.0.0/8", "private (10.0.0.0/8)"),
    ("172.16.0.0/12", "private (172.16.0.0/12)"),
    ("192.168.0.0/16", "private (192.168.0.0/16)"),
    ("100.64.0.0/10", "shared address space (100.64.0.0/10)"),
    ("fc00::/7", "unique local (fc00::/7)"),
];

/// Parses a table of CIDR constants (checked by the `tables_parse` test).
fn parse_table(table: &[(&str, &'static str)]) -> Vec<(IpNet, &'static str)> {
    table.iter().filter_map(|(cidr, name)| cidr.parse().ok().map(|net| (net, *name))).collect()
}

fn build_always_blocked() -> Vec<(IpNet, &'static str)> {
    parse_table(BLOCKED_TABLE)
}

fn build_private_ranges() -> Vec<(IpNet, &'static str)> {
    parse_table(PRIVATE_TABLE)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The always-blocked range that `net` overlaps, if any.
pub fn blocked_overlap(net: &IpNet) -> Option<&'static str> {
    always_blocked().iter().find(|(b, _)| overlaps(net, b)).map(|(_, name)| *name)
}

/// The IPv4 address inside IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks) and NAT64
/// (`64:ff9b::a.b.c.d`) forms; other addresses unchanged. `::` and `::1` stay IPv6.
pub fn embedded_v4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let seg = v6.segments();
    let tail = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
    let compatible = seg[..6].iter().all(|&s| s == 0) && seg[6] != 0;
    let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|&s| s == 0);
    if compatible || nat64 { IpAddr::V4(tail) } else { ip }
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
    let ip = embedded_v4(ip);
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
    fn tables_parse() {
        assert_eq!(always_blocked().len(), BLOCKED_TABLE.len());
        assert_eq!(private_ranges().len(), PRIVATE_TABLE.len());
    }

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
        assert!(matches!(c("::7f00:1"), AddrClass::Blocked(_)));
        assert!(matches!(c("64:ff9b::a9fe:a9fe"), AddrClass::Blocked(_)));
        assert!(matches!(c("64:ff9b::10.0.0.1"), AddrClass::Private(_)));
        assert!(matches!(c("::1"), AddrClass::Blocked(_)));
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
