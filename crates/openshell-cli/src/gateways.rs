//! The gateways this client knows (`openshell gateway add|select|list`): a JSON
//! file in `$XDG_CONFIG_HOME/openshell` (else `~/.config/openshell`). The
//! selected one (or `$OPENSHELL_GATEWAY`) serves every sandbox, policy,
//! provider and inference command; `local` is the local gateway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openshell_gateway_api::remote::RemoteConfig;
use serde::{Deserialize, Serialize};

use crate::sandbox_cmd::{SandboxCmdError, fail};

/// The name of the local gateway.
pub const LOCAL: &str = "local";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Gateways {
    /// The selected gateway (none: local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub gateways: BTreeMap<String, RemoteConfig>,
}

fn config_path() -> Result<PathBuf, SandboxCmdError> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(Path::new(&dir).join("openshell/gateways.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| fail("no HOME: cannot find the gateways file"))?;
    Ok(Path::new(&home).join(".config/openshell/gateways.json"))
}

impl Gateways {
    pub fn load() -> Result<Gateways, SandboxCmdError> {
        let path = config_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Gateways::default()),
            Err(e) => Err(fail(format!("{}: {e}", path.display()))),
        }
    }

    pub fn save(&self) -> Result<(), SandboxCmdError> {
        let path = config_path()?;
        let err = |e: &dyn std::fmt::Display| fail(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(&e))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(|e| err(&e))
    }

    /// The gateway commands talk to: `$OPENSHELL_GATEWAY`, else the selected one;
    /// `None` is the local gateway.
    pub fn selected(&self) -> Result<Option<(String, RemoteConfig)>, SandboxCmdError> {
        let name = std::env::var("OPENSHELL_GATEWAY").ok().filter(|n| !n.is_empty()).or_else(|| self.current.clone());
        match name.as_deref() {
            None | Some(LOCAL) => Ok(None),
            Some(name) => match self.gateways.get(name) {
                Some(config) => Ok(Some((name.to_owned(), config.clone()))),
                None => Err(fail(format!("no gateway named `{name}` (see `openshell gateway list`)"))),
            },
        }
    }
}
