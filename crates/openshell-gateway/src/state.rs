//! The gateway's durable state, behind one trait with two stores: SQLite (WAL)
//! in the gateway directory, the embedded default, and PostgreSQL
//! (`--database postgres://...`), which several gateway replicas share.
//!
//! Replicas share sandboxes through leases: a sandbox that runs (or is being
//! created) is reconciled — watched, adopted, cleaned up — by the one replica
//! holding its lease; a replica renews its leases while it lives, and one that
//! dies lets them expire for another to take.

mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use openshell_gateway_api::proto::{Phase, PolicyRevision, ProviderInfo, SandboxInfo};

/// Where the state is kept, as `--database` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (one gateway at a time: the gateway directory's lock).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its `postgres://` (or `postgresql://`) URL;
    /// TLS (as its `sslmode` asks: `prefer` by default) verifies the server
    /// against `ca`, else the system's roots.
    Postgres { url: String, ca: Option<PathBuf> },
}

impl Database {
    /// `postgres://...`/`postgresql://...`, `sqlite://PATH`, or a path (SQLite).
    pub fn parse(text: &str) -> Result<Database, StateError> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres { url: text.to_owned(), ca: None });
        }
        if let Some(path) = text.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if text.is_empty() || text.contains("://") {
            return Err(StateError::Location {
                text: text.to_owned(),
                why: "use postgres://USER@HOST/DB, sqlite://PATH or a file path",
            });
        }
        Ok(Database::Sqlite(PathBuf::from(text)))
    }

    /// With the CA PostgreSQL's certificate must chain to (`--database-ca`);
    /// a SQLite file has no server to verify, so a CA for one is refused.
    pub fn with_ca(self, ca: Option<PathBuf>) -> Result<Database, StateError> {
        match (self, ca) {
            (Database::Postgres { url, .. }, ca) => Ok(Database::Postgres { url, ca }),
            (sqlite, None) => Ok(sqlite),
            (Database::Sqlite(path), Some(_)) => Err(StateError::Location {
                text: path.display().to_string(),
                why: "--database-ca applies to a postgres:// database only",
            }),
        }
    }

    /// What `gateway status` shows: the kind and where, never a password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite {}", path.display()),
            Database::Postgres { url, .. } => format!("postgresql {}", postgres::redacted(url)),
        }
    }
}

/// Why the state could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("--database `{text}`: {why}")]
    Location { text: String, why: &'static str },
    #[error("gateway state {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// `at` is the database's URL without its password; the message carries
    /// the causes too (postgres's errors name only their kind, e.g. "error
    /// performing TLS handshake", and keep why in their source).
    #[error("gateway state in PostgreSQL {at}: {}", causes(source))]
    Postgres {
        at: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("gateway state in PostgreSQL {at}: migration {migration}: {source}")]
    Migration {
        at: String,
        migration: &'static str,
        #[source]
        source: ::postgres::Error,
    },
    /// Two creates of one name raced: the other one's record came first.
    #[error("a sandbox named `{0}` exists already")]
    NameTaken(String),
    #[error("gateway state in PostgreSQL: TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("gateway state: stored sandbox status `{0}` is not one this gateway knows")]
    UnknownPhase(String),
}

/// One sandbox's row: what `SandboxInfo` shows, plus what only the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub info: SandboxInfo,
    pub auto_remove: bool,
}

/// A provider as stored: its credential only in `credential`, never in `info`.
#[derive(Clone)]
pub struct ProviderRow {
    pub info: ProviderInfo,
    pub credential: String,
}

/// The inference route as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceRow {
    pub provider: String,
    pub model: String,
    pub timeout_secs: u64,
    pub generation: u64,
}

/// The gateway's state, in whichever store holds it. Every call is one
/// transaction.
pub trait State: Send {
    fn add_provider(&mut self, row: &ProviderRow) -> Result<bool, StateError>;
    fn providers(&mut self) -> Result<Vec<ProviderRow>, StateError>;
    fn delete_provider(&mut self, name: &str) -> Result<bool, StateError>;
    /// Sets the route; returns its generation (grows with every change).
    fn set_inference(&mut self, provider: &str, model: &str, timeout_secs: u64) -> Result<u64, StateError>;
    fn inference(&mut self) -> Result<Option<InferenceRow>, StateError>;
    /// Removes the route; returns the generation of "no route".
    fn delete_inference(&mut self) -> Result<u64, StateError>;
    /// The generation of the current route (or of its removal).
    fn route_generation(&mut self) -> Result<u64, StateError>;

    /// A new sandbox and its first policy revision.
    fn insert(&mut self, rec: &Record, policy_text: &str) -> Result<(), StateError>;
    fn name_taken(&mut self, name: &str) -> Result<bool, StateError>;
    fn all(&mut self) -> Result<Vec<Record>, StateError>;
    /// By name, or by id when no name matches.
    fn find(&mut self, name_or_id: &str) -> Result<Option<Record>, StateError>;
    fn set_running(&mut self, id: &str, pid: Option<i32>) -> Result<(), StateError>;
    /// The end of sandbox `id`'s run (exit `code`, `at` seconds since the epoch,
    /// else now), and `holder`'s lease on it given up: the sandbox removed when it
    /// was created `--rm` (returns true), else `stopped` with a code or `dead`
    /// without one. One transaction: the client gets the exit code after it.
    fn finish(
        &mut self,
        id: &str,
        exit_code: Option<i32>,
        finished: Option<u64>,
        holder: &str,
    ) -> Result<bool, StateError>;
    /// The sandbox, its policies and its lease.
    fn remove(&mut self, id: &str) -> Result<(), StateError>;
    /// The current policy's revision, name and text.
    fn policy(&mut self, id: &str) -> Result<Option<(i64, String, String)>, StateError>;
    /// Every revision of the sandbox's policy, oldest first.
    fn policies(&mut self, id: &str) -> Result<Vec<PolicyRevision>, StateError>;
    fn add_policy(&mut self, id: &str, name: &str, text: &str) -> Result<i64, StateError>;

    /// Takes (or renews) the lease of sandbox `id` for `holder`, unless another
    /// holder's lease on it is still live; returns whether `holder` has it.
    fn lease(&mut self, id: &str, holder: &str, ttl: Duration) -> Result<bool, StateError>;
    /// Extends every lease of `holder`.
    fn renew(&mut self, holder: &str, ttl: Duration) -> Result<(), StateError>;
    /// Gives up `holder`'s lease on `id`.
    fn release(&mut self, id: &str, holder: &str) -> Result<(), StateError>;
    /// Gives up every lease of `holder` (a replica stopping: another takes its
    /// sandboxes over at its next round, not once the leases expire).
    fn release_all(&mut self, holder: &str) -> Result<(), StateError>;
    /// Ids leased by `holder`, live or not.
    fn held(&mut self, holder: &str) -> Result<Vec<String>, StateError>;
    /// Sandboxes created or running that no live lease covers.
    fn unleased(&mut self) -> Result<Vec<String>, StateError>;
    /// Every sandbox recorded and every id under a live lease (a sandbox being
    /// made, or a standby one): what a driver may keep.
    fn known(&mut self) -> Result<HashSet<String>, StateError>;
    /// Drops expired leases of ids that have no record (what a dead replica
    /// was making).
    fn drop_orphan_leases(&mut self) -> Result<(), StateError>;
}

/// Opens (and migrates) the state at `database`.
pub fn open(database: &Database) -> Result<Box<dyn State>, StateError> {
    Ok(match database {
        Database::Sqlite(path) => Box::new(sqlite::SqliteState::open(path)?),
        Database::Postgres { url, ca } => Box::new(postgres::PostgresState::open(url, ca.as_deref())?),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An error and each of its sources, joined by ": ".
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(&format!(": {e}"));
        next = e.source();
    }
    text
}

fn parse_phase(text: &str) -> Result<Phase, StateError> {
    Phase::parse(text).ok_or_else(|| StateError::UnknownPhase(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_locations_parse_or_say_what_is_wrong() {
        let pg = |url: &str| Some(Database::Postgres { url: url.into(), ca: None });
        assert_eq!(Database::parse("postgres://u@h/db").ok(), pg("postgres://u@h/db"));
        assert_eq!(Database::parse("postgresql://h/db").ok(), pg("postgresql://h/db"));
        assert_eq!(Database::parse("sqlite:///x/s.db").ok(), Some(Database::Sqlite("/x/s.db".into())));
        assert_eq!(Database::parse("/x/s.db").ok(), Some(Database::Sqlite("/x/s.db".into())));
        let ca = Some(PathBuf::from("/ca.pem"));
        let e = Database::parse("/x/s.db").and_then(|d| d.with_ca(ca.clone())).expect_err("a CA for SQLite");
        assert!(e.to_string().contains("--database-ca applies to a postgres:// database only"), "{e}");
        let pg = Database::parse("postgres://h/db").and_then(|d| d.with_ca(ca.clone())).ok();
        assert_eq!(pg, Some(Database::Postgres { url: "postgres://h/db".into(), ca }));
        for bad in ["", "mysql://h/db"] {
            let e = Database::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("postgres://"), "{e}");
        }
    }
}
