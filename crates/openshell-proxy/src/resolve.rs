//! Name resolution happens in the proxy (a sandbox has no resolver of its own).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;
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
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        self.0
            .get(&key)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no such host")))
    }
}

/// Fixed names first (e.g. `.test` names of a test's servers, or an air-gapped
/// site's hosts), the system's resolver for the rest.
#[derive(Debug, Clone, Default)]
pub struct WithOverrides(pub StaticResolver);

impl WithOverrides {
    /// Parses `name=ip[,name=ip...]` (the `OPENSHELL_PROXY_HOSTS` form).
    pub fn parse(spec: &str) -> Result<WithOverrides, String> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, ip) = item.split_once('=').ok_or_else(|| format!("`{item}`: expected name=ip"))?;
            let ip: IpAddr = ip.trim().parse().map_err(|_| format!("`{item}`: `{ip}` is not an IP address"))?;
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
}
