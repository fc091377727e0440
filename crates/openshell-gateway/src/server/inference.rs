//! Providers and the inference route: kept by the gateway (credentials only in
//! its owner-only database and in each fenced sandbox's owner-only route file,
//! on the host side), handed to every running sandbox's proxy when they change.

use openshell_proxy::router::{Backend, InferenceRoute, ProviderKind, Secret};

use openshell_driver::{Applied, RouteUpdate};
use openshell_gateway_api::proto::{Phase, ProviderInfo, Response, RouteInfo};
use openshell_gateway_api::{ApiError, ErrorCode};

use super::{Gateway, check_name};
use crate::now;
use crate::state::ProviderRow;

/// The longest idle timeout a route may have, in seconds.
const MAX_TIMEOUT: u64 = 3600;

/// Whether `name` can name an environment variable (how credentials are named).
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Gateway {
    pub(super) fn provider_create(
        &self,
        name: &str,
        kind: &str,
        base_url: Option<&str>,
        credential_name: &str,
        credential: String,
    ) -> Result<Option<Response>, ApiError> {
        check_name(name, "provider")?;
        let kind = ProviderKind::parse(kind).ok_or_else(|| {
            ApiError::invalid(format!("unknown provider type `{kind}`: use openai, anthropic or openai-compatible"))
        })?;
        let base_url = match (base_url, kind.default_base_url()) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(url)) => url.to_owned(),
            (None, None) => {
                return Err(ApiError::invalid(format!("a provider of type {} needs --base-url", kind.as_str())));
            }
        };
        Backend::parse(&base_url).map_err(|e| ApiError::invalid(format!("--base-url: {e}")))?;
        if !is_env_name(credential_name) {
            return Err(ApiError::invalid(format!(
                "credential name `{credential_name}`: use a variable name such as OPENAI_API_KEY (letters, digits, `_`)"
            )));
        }
        if credential.trim().is_empty() {
            return Err(ApiError::invalid(format!("the credential {credential_name} is empty")));
        }
        let row = ProviderRow {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: kind.as_str().to_owned(),
                base_url,
                credential_name: credential_name.to_owned(),
                created: now(),
            },
            credential,
        };
        if !self.db().add_provider(&row)? {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("a provider named `{name}` exists already (delete it first)"),
            ));
        }
        Ok(Some(Response::Done { message: format!("provider `{name}` ({}) created", kind.as_str()) }))
    }

    pub(super) fn provider_list(&self, only: Option<&str>) -> Result<Option<Response>, ApiError> {
        let mut providers: Vec<ProviderInfo> = self.db().providers()?.into_iter().map(|p| p.info).collect();
        if let Some(name) = only {
            providers.retain(|p| p.name == name);
            if providers.is_empty() {
                return Err(ApiError::not_found(format!("no provider named `{name}`")));
            }
        }
        Ok(Some(Response::Providers { providers }))
    }

    pub(super) fn provider_delete(&self, name: &str) -> Result<Option<Response>, ApiError> {
        if let Some(route) = self.db().inference()?
            && route.provider == name
        {
            return Err(ApiError::precondition(format!(
                "provider `{name}` serves the inference route: `openshell inference delete` (or set another) first"
            )));
        }
        if !self.db().delete_provider(name)? {
            return Err(ApiError::not_found(format!("no provider named `{name}`")));
        }
        Ok(Some(Response::Done { message: format!("provider `{name}` deleted") }))
    }

    /// The route as every sandbox's proxy gets it (with the credential).
    pub(super) fn route_file(&self) -> Result<RouteUpdate, ApiError> {
        let mut db = self.db();
        let generation = db.route_generation()?;
        let Some(row) = db.inference()? else {
            return Ok(RouteUpdate { generation, route: None });
        };
        let provider = db.providers()?.into_iter().find(|p| p.info.name == row.provider).ok_or_else(|| {
            ApiError::internal(format!("the route names provider `{}`, which does not exist", row.provider))
        })?;
        let kind = ProviderKind::parse(&provider.info.kind)
            .ok_or_else(|| ApiError::internal(format!("provider `{}` has an unknown type", provider.info.name)))?;
        Ok(RouteUpdate {
            generation,
            route: Some(InferenceRoute {
                provider: provider.info.name,
                kind,
                base_url: provider.info.base_url,
                credential: Secret(provider.credential),
                model: Some(row.model),
                timeout_secs: row.timeout_secs,
            }),
        })
    }

    pub(super) fn inference_set(
        &self,
        provider: &str,
        model: &str,
        timeout_secs: u64,
    ) -> Result<Option<Response>, ApiError> {
        if model.trim().is_empty() {
            return Err(ApiError::invalid("--model is empty"));
        }
        if !(1..=MAX_TIMEOUT).contains(&timeout_secs) {
            return Err(ApiError::invalid(format!("--timeout {timeout_secs}: use 1 to {MAX_TIMEOUT} seconds")));
        }
        let exists = self.db().providers()?.iter().any(|p| p.info.name == provider);
        if !exists {
            return Err(ApiError::not_found(format!("no provider named `{provider}` (`openshell provider list`)")));
        }
        self.db().set_inference(provider, model, timeout_secs)?;
        let pushed = self.push_route()?;
        Ok(Some(Response::Done {
            message: format!("inference route: provider `{provider}`, model `{model}` ({pushed})"),
        }))
    }

    pub(super) fn inference_get(&self) -> Result<Option<Response>, ApiError> {
        let route = self.route_file()?.route.map(|r| RouteInfo {
            provider: r.provider,
            kind: r.kind.as_str().to_owned(),
            base_url: r.base_url,
            model: r.model.unwrap_or_default(),
            timeout_secs: r.timeout_secs,
        });
        Ok(Some(Response::Inference { route }))
    }

    pub(super) fn inference_delete(&self) -> Result<Option<Response>, ApiError> {
        if self.db().inference()?.is_none() {
            return Err(ApiError::not_found("no inference route is set"));
        }
        self.db().delete_inference()?;
        let pushed = self.push_route()?;
        Ok(Some(Response::Done { message: format!("inference route deleted ({pushed})") }))
    }

    /// Hands the current route to every sandbox with a proxy: running ones (and
    /// the standby ones) at once, confirmed; stopped ones at their next start.
    fn push_route(&self) -> Result<String, ApiError> {
        let file = self.route_file()?;
        let records = self.db().all()?;
        let mut applied = 0;
        let mut failed = Vec::new();
        for rec in records.iter().filter(|r| self.driver.has_network(&r.info.id)) {
            let running = rec.info.phase == Phase::Running;
            match self.driver.set_route(&rec.info.id, &file, running, true) {
                Ok(Applied::Confirmed) => applied += 1,
                Ok(_) => {}
                Err(e) => failed.push(format!("{}: {e}", rec.info.name)),
            }
        }
        let standby: Vec<String> =
            self.standby.lock().unwrap_or_else(|p| p.into_inner()).ready().map(|s| s.id.clone()).collect();
        for id in standby {
            if let Err(e) = self.driver.set_route(&id, &file, true, true) {
                tracing::warn!(%e, "handing the route to a standby sandbox");
            }
        }
        if failed.is_empty() {
            Ok(format!("applied to {applied} running sandbox{}", if applied == 1 { "" } else { "es" }))
        } else {
            Err(ApiError::internal(format!("recorded, but not applied to: {}", failed.join("; "))))
        }
    }

    /// Gives a new sandbox the current route (before it starts), when it has a
    /// proxy; returns the route's provider type.
    pub(super) fn give_route(&self, id: &str) -> Result<Option<ProviderKind>, ApiError> {
        if !self.driver.has_network(id) {
            return Ok(None);
        }
        let file = self.route_file()?;
        let kind = file.route.as_ref().map(|r| r.kind);
        self.driver.set_route(id, &file, false, false)?;
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::is_env_name;

    #[test]
    fn credential_names() {
        assert!(is_env_name("OPENAI_API_KEY") && is_env_name("_k1"));
        assert!(!is_env_name("") && !is_env_name("1KEY") && !is_env_name("A-B") && !is_env_name("A B"));
    }
}
