//! Name resolution happens in the proxy (a sandbox has no resolver of its own).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync {
    /// Looks the host up; may block (the proxy runs it on its blocking pool).
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;

    /// The answer when it is known without waiting (an IP literal, a fixed
    /// table): the proxy then takes it at once, with no trip to the blocking
    /// pool. `None`: [`Resolve::resolve`] must run.
    fn known(&self, host: &str, _port: u16) -> Option<std::io::Result<Vec<IpAddr>>> {
        literal(host).map(|ip| Ok(vec![ip]))
    }
}

/// An IP literal (an IPv6 one with or without brackets) is its own address.
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The system's resolver (getaddrinfo). IP literals resolve to themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// A fixed table (tests map `.test` names to their own servers); IP literals
/// resolve to themselves, other names are not found.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolve for StaticResolver {
    fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        if let Some(ip) = literal(host) {
            return Ok(vec![ip]);
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        self.0
            .get(&key)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no such host")))
    }

    fn known(&self, host: &str, port: u16) -> Option<std::io::Result<Vec<IpAddr>>> {
        Some(self.resolve(host, port))
    }
}

/// What is wrong with a `name=ip[,name=ip...]` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("`{0}`: expected name=ip")]
    NotNameIp(String),
    #[error("`{item}`: `{ip}` is not an IP address")]
    NotAnIp { item: String, ip: String },
}

/// Fixed names first (e.g. `.test` names of a test's servers, or an air-gapped
/// site's hosts), the system's resolver for the rest.
#[derive(Debug, Clone, Default)]
pub struct WithOverrides(pub StaticResolver);

impl WithOverrides {
    /// Parses `name=ip[,name=ip...]` (the `OPENSHELL_PROXY_HOSTS` form).
    pub fn parse(spec: &str) -> Result<WithOverrides, OverrideError> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, ip) = item.split_once('=').ok_or_else(|| OverrideError::NotNameIp(item.to_owned()))?;
            let ip: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| OverrideError::NotAnIp { item: item.to_owned(), ip: ip.trim().to_owned() })?;
            map.entry(name.trim().trim_end_matches('.').to_ascii_lowercase()).or_default().push(ip);
        }
        Ok(WithOverrides(StaticResolver(map)))
    }
}

impl Resolve for WithOverrides {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        match self.0.resolve(host, port) {
            Ok(ips) => Ok(ips),
            Err(_) => SystemResolver.resolve(host, port),
        }
    }

    /// A fixed name or an IP literal; other names go to the system's resolver.
    fn known(&self, host: &str, port: u16) -> Option<std::io::Result<Vec<IpAddr>>> {
        self.0.resolve(host, port).ok().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_known_without_a_lookup() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // IP literals, for every resolver; a name is the system's to look up.
        assert_eq!(SystemResolver.known("10.1.2.3", 80).map(Result::ok), Some(Some(vec![ip("10.1.2.3")])));
        assert_eq!(SystemResolver.known("[::1]", 443).map(Result::ok), Some(Some(vec![ip("::1")])));
        assert!(SystemResolver.known("localhost", 80).is_none());
        // A fixed table answers every name, found or not.
        let table = StaticResolver(HashMap::from([("api.test".to_owned(), vec![ip("10.200.0.2")])]));
        assert_eq!(table.known("API.test.", 80).map(Result::ok), Some(Some(vec![ip("10.200.0.2")])));
        assert!(table.known("other.test", 80).is_some_and(|r| r.is_err()));
        // Overrides answer their names; the rest waits for the system's resolver.
        let overrides = WithOverrides::parse("api.test=10.200.0.2").expect("spec");
        assert_eq!(overrides.known("api.test", 80).map(Result::ok), Some(Some(vec![ip("10.200.0.2")])));
        assert!(overrides.known("localhost", 80).is_none());
        assert_eq!(overrides.resolve("localhost", 80).ok().map(|ips| ips.iter().all(IpAddr::is_loopback)), Some(true));
    }
}
