//! Applying the policy's Landlock rules to the calling thread (and everything it
//! later executes). The sandbox's init calls this after dropping privileges and
//! right before exec; Landlock is one-way, so the rules can never be loosened.

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use openshell_policy::model::Compatibility;
use openshell_policy::profile::LandlockProfile;

/// What was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockReport {
    /// `fully enforced`, `partially enforced` or `not enforced` (best_effort only).
    pub status: &'static str,
    /// Paths whose rules were added.
    pub applied: Vec<String>,
    /// Paths skipped, with the reason (missing, unreadable).
    pub skipped: Vec<(String, String)>,
}

/// Why Landlock could not be applied as the policy requires.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("`{0}` is not a Landlock access right")]
    UnknownRight(String),
    #[error(
        "landlock: compatibility is hard_requirement (the default when the policy omits it), but the kernel {status} the filesystem rules; refusing to start the sandbox"
    )]
    NotEnforced { status: &'static str },
    #[error(
        "landlock: compatibility is hard_requirement (the default when the policy omits it), but none of the policy's paths could be applied: {0}"
    )]
    NoPaths(String),
    #[error("landlock: {0}")]
    Ruleset(String),
}

fn right(name: &str) -> Result<AccessFs, LandlockError> {
    Ok(match name {
        "execute" => AccessFs::Execute,
        "write_file" => AccessFs::WriteFile,
        "read_file" => AccessFs::ReadFile,
        "read_dir" => AccessFs::ReadDir,
        "remove_dir" => AccessFs::RemoveDir,
        "remove_file" => AccessFs::RemoveFile,
        "make_char" => AccessFs::MakeChar,
        "make_dir" => AccessFs::MakeDir,
        "make_reg" => AccessFs::MakeReg,
        "make_sock" => AccessFs::MakeSock,
        "make_fifo" => AccessFs::MakeFifo,
        "make_block" => AccessFs::MakeBlock,
        "make_sym" => AccessFs::MakeSym,
        "refer" => AccessFs::Refer,
        "truncate" => AccessFs::Truncate,
        other => return Err(LandlockError::UnknownRight(other.to_owned())),
    })
}

fn rights(names: &[&str]) -> Result<BitFlags<AccessFs>, LandlockError> {
    names.iter().try_fold(BitFlags::empty(), |acc, n| Ok(acc | right(n)?))
}

/// Whether the running kernel has Landlock at all (a ruleset of the first ABI's
/// rights can be made). Nothing is restricted by asking.
pub fn kernel_has_landlock() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create())
        .is_ok()
}

/// Whether anything less than full enforcement is an error: the omitted
/// default is hard wherever the kernel has Landlock at all.
fn is_hard(compatibility: Compatibility, kernel_has_landlock: impl FnOnce() -> bool) -> bool {
    match compatibility {
        Compatibility::HardRequirement => true,
        Compatibility::BestEffort => false,
        Compatibility::HardWhereSupported => kernel_has_landlock(),
    }
}

/// Restricts the calling thread to the profile's rules. `best_effort`: a kernel
/// without (enough) Landlock is reported, not fatal; `hard_requirement` (and the
/// omitted default on a kernel with Landlock): anything less than full
/// enforcement is an error. Missing paths are skipped in both modes.
///
/// A profile that handles no right at all restricts nothing, so no domain is
/// created (and no_new_privs is not set here). Policies never compile to that
/// (every right is handled); tests use it to lift Landlock as a whole.
pub fn apply(profile: &LandlockProfile) -> Result<LandlockReport, LandlockError> {
    if profile.handled.is_empty() {
        return Ok(LandlockReport { status: "not enforced", applied: Vec::new(), skipped: Vec::new() });
    }
    let hard = is_hard(profile.compatibility, kernel_has_landlock);
    let abi = match profile.abi {
        1 => ABI::V1,
        2 => ABI::V2,
        _ => ABI::V3,
    };
    let handled = rights(&profile.handled)? & AccessFs::from_all(abi);
    let level = if hard { CompatLevel::HardRequirement } else { CompatLevel::BestEffort };
    let err = |e: &dyn std::fmt::Display| LandlockError::Ruleset(e.to_string());
    let mut ruleset =
        Ruleset::default().set_compatibility(level).handle_access(handled).map_err(|e| err(&e))?.create().map_err(
            |e| match e {
                landlock::RulesetError::CreateRuleset(_) if hard => {
                    LandlockError::NotEnforced { status: "does not support" }
                }
                e => err(&e),
            },
        )?;
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for rule in &profile.rules {
        let is_dir = match std::fs::metadata(&rule.path) {
            Ok(m) => m.is_dir(),
            Err(e) => {
                skipped.push((rule.path.clone(), e.to_string()));
                continue;
            }
        };
        let fd = match PathFd::new(&rule.path) {
            Ok(fd) => fd,
            Err(e) => {
                skipped.push((rule.path.clone(), e.to_string()));
                continue;
            }
        };
        let access = if is_dir { rights(&rule.directory_rights)? } else { rights(&rule.file_rights)? } & handled;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(|e| err(&e))?;
        applied.push(rule.path.clone());
    }
    if hard && applied.is_empty() && !profile.rules.is_empty() {
        let why: Vec<String> = skipped.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        return Err(LandlockError::NoPaths(why.join("; ")));
    }
    let status = ruleset.restrict_self().map_err(|e| match e {
        landlock::RulesetError::RestrictSelf(_) if hard => LandlockError::NotEnforced { status: "cannot enforce" },
        e => err(&e),
    })?;
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    };
    if hard && status != "fully enforced" {
        return Err(LandlockError::NotEnforced { status: "only partially enforces" });
    }
    if status != "fully enforced" {
        tracing::warn!(status, "landlock (best_effort): the kernel does not fully enforce the filesystem rules");
    }
    Ok(LandlockReport { status, applied, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_omitted_default_is_hard_wherever_the_kernel_has_landlock() {
        assert!(is_hard(Compatibility::HardWhereSupported, || true));
        assert!(!is_hard(Compatibility::HardWhereSupported, || false));
        assert!(is_hard(Compatibility::HardRequirement, || false));
        assert!(!is_hard(Compatibility::BestEffort, || true));
        // This machine's kernel has it (CI's too): the default is hard here.
        assert!(kernel_has_landlock(), "the kernel has no Landlock (LSM list in /sys/kernel/security/lsm)");
    }
}
