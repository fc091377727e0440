//! A sandbox's job: what its process 1 runs, with which environment.

use openshell_proxy::router::ProviderKind;

use crate::Created;

/// Where a sandbox with an egress proxy finds its trust bundle (the image's
/// system roots plus the sandbox's CA).
pub const CA_BUNDLE: &str = openshell_proxy::tls::SANDBOX_BUNDLE;

/// The variables that point a sandbox's clients at its proxy, as [`Job::new`]
/// sets them (the proxy's URL six times, the exemptions twice, Node's switch).
const PROXY_VARIABLES: [&str; 9] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "NODE_USE_ENV_PROXY",
];

/// The placeholder key routed sandboxes see (the router replaces it).
pub const ROUTED_KEY: &str = "openshell-routed";

/// What a sandbox's process 1 runs: `args` (none: idle, processes join with
/// exec) with `env`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub args: Vec<String>,
    pub env: Vec<String>,
}

impl Job {
    /// The job of a sandbox that `created` made: `command` with the image's
    /// environment, the proxy's variables and `extra` (`K=V`) on top. `route`:
    /// the inference route's provider type, when one exists: the agents' SDKs
    /// are pointed at the router (with a placeholder key: the real one never
    /// enters the sandbox).
    /// The job without the proxy's and the trust bundle's variables: for a
    /// sandbox that gets them from elsewhere (a pod's, from its node's runtime).
    pub fn without_proxy_variables(&self) -> Job {
        let key = |kv: &str| kv.split_once('=').map_or(kv.to_owned(), |(k, _)| k.to_owned());
        let dropped = |k: &str| PROXY_VARIABLES.contains(&k) || openshell_proxy::tls::TRUST_VARIABLES.contains(&k);
        let env = self.env.iter().filter(|kv| !dropped(&key(kv))).cloned().collect();
        Job { args: self.args.clone(), env }
    }

    pub fn new(created: &Created, command: &[String], extra: &[String], route: Option<ProviderKind>) -> Job {
        let mut env = created.env.clone();
        let set = |env: &mut Vec<String>, key: &str, value: &str| {
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(format!("{key}={value}"));
        };
        if let (Some(kind), Some(_)) = (route, &created.proxy) {
            for (k, v) in routed_env(kind) {
                set(&mut env, k, &v);
            }
        }
        if let Some(proxy) = &created.proxy {
            // Every client finds the proxy; Node's fetch only with NODE_USE_ENV_PROXY.
            let no_proxy = "localhost,127.0.0.1,::1";
            for (k, v) in
                PROXY_VARIABLES.iter().zip([proxy.as_str(), proxy, proxy, proxy, proxy, proxy, no_proxy, no_proxy, "1"])
            {
                set(&mut env, k, v);
            }
            // The trust bundle: system roots plus the CA of L7 inspection.
            for k in openshell_proxy::tls::TRUST_VARIABLES {
                set(&mut env, k, CA_BUNDLE);
            }
        }
        for kv in extra {
            let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(kv.clone());
        }
        Job { args: command.to_vec(), env }
    }
}

/// What a sandbox's agents get when an inference route exists: base URLs at the
/// privacy router, a key that is only a placeholder, and opencode's providers
/// at the router with a default model of the route's API (the router rewrites
/// the model; codex, whose base URL is built in, is routed by host).
pub fn routed_env(kind: ProviderKind) -> Vec<(&'static str, String)> {
    let provider = r#""options":{"baseURL":"https://inference.local/v1","apiKey":"openshell-routed"}"#;
    let model = match kind {
        ProviderKind::Anthropic => "anthropic/claude-sonnet-4-5",
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => "openai/gpt-4.1",
    };
    vec![
        ("ANTHROPIC_BASE_URL", "https://inference.local".to_owned()),
        ("ANTHROPIC_API_KEY", ROUTED_KEY.to_owned()),
        ("OPENAI_BASE_URL", "https://inference.local/v1".to_owned()),
        ("OPENAI_API_KEY", ROUTED_KEY.to_owned()),
        (
            "OPENCODE_CONFIG_CONTENT",
            format!(r#"{{"model":"{model}","provider":{{"anthropic":{{{provider}}},"openai":{{{provider}}}}}}}"#),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_proxy_variables_keeps_the_routers_and_the_callers() {
        let created = Created { env: vec!["PATH=/bin".into()], proxy: Some("http://127.0.0.1:15128".into()) };
        let job = Job::new(&created, &["run".into()], &["MINE=1".into()], Some(ProviderKind::Openai));
        assert!(job.env.iter().any(|kv| kv.starts_with("HTTPS_PROXY=")));
        let kept = job.without_proxy_variables();
        let keys: Vec<&str> = kept.env.iter().map(|kv| kv.split('=').next().unwrap_or_default()).collect();
        for gone in ["HTTP_PROXY", "https_proxy", "NO_PROXY", "NODE_USE_ENV_PROXY", "SSL_CERT_FILE", "GIT_SSL_CAINFO"] {
            assert!(!keys.contains(&gone), "{gone} kept: {keys:?}");
        }
        for kept in ["PATH", "MINE", "OPENAI_BASE_URL", "OPENAI_API_KEY"] {
            assert!(keys.contains(&kept), "{kept} dropped: {keys:?}");
        }
        assert_eq!(kept.args, ["run"]);
    }
}
