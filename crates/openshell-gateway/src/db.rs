//! The gateway's durable state: one SQLite database (WAL) in the gateway directory.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use openshell_gateway_api::proto::{Phase, PolicyRevision, ProviderInfo, SandboxInfo};

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("gateway state {path}: {source}")]
pub struct DbError {
    pub path: String,
    #[source]
    pub source: rusqlite::Error,
}

/// One sandbox's row: what `SandboxInfo` shows, plus what only the gateway needs.
/// (The `supervisor_pid` column of older databases is no longer written: the
/// local driver keeps its supervisors' records itself.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub info: SandboxInfo,
    pub auto_remove: bool,
}

pub struct Db {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    pid INTEGER,
    supervisor_pid INTEGER,
    auto_remove INTEGER NOT NULL,
    created INTEGER NOT NULL,
    started INTEGER,
    finished INTEGER,
    owner TEXT NOT NULL DEFAULT 'local'
);
CREATE TABLE IF NOT EXISTS policies (
    sandbox TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    revision INTEGER NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (sandbox, revision)
);
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    credential_name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inference (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    provider TEXT NOT NULL REFERENCES providers(name),
    model TEXT NOT NULL,
    timeout_secs INTEGER NOT NULL,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

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

fn next_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES ('route', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [],
    )?;
    tx.query_row("SELECT value FROM counters WHERE name = 'route'", [], |r| r.get::<_, i64>(0)).map(|v| v as u64)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let name = path.display().to_string();
        let err = |source| DbError { path: name.clone(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        // WAL + NORMAL: a crash may lose the last transactions, never corrupt the file;
        // the state also lives in each sandbox's directory (exit.json) for recovery.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        // A deleted provider's credential is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Databases made before sandboxes had owners: theirs are the local owner's.
        let has_owner = conn
            .prepare("SELECT 1 FROM pragma_table_info('sandboxes') WHERE name = 'owner'")
            .and_then(|mut s| s.exists([]))
            .map_err(err)?;
        if !has_owner {
            conn.execute_batch("ALTER TABLE sandboxes ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'").map_err(err)?;
        }
        // Provider credentials live here: owner-only, whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        for file in [path.to_path_buf(), path.with_extension("db-wal"), path.with_extension("db-shm")] {
            if file.exists() {
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            }
        }
        Ok(Db { conn, path: name })
    }

    pub fn add_provider(&self, row: &ProviderRow) -> Result<bool, DbError> {
        let i = &row.info;
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO providers (name, kind, base_url, credential_name, credential, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![i.name, i.kind, i.base_url, i.credential_name, row.credential, i.created as i64],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    pub fn providers(&self) -> Result<Vec<ProviderRow>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, kind, base_url, credential_name, credential, created FROM providers ORDER BY name")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ProviderRow {
                    info: ProviderInfo {
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        base_url: r.get(2)?,
                        credential_name: r.get(3)?,
                        created: r.get::<_, i64>(5)? as u64,
                    },
                    credential: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn delete_provider(&self, name: &str) -> Result<bool, DbError> {
        let n = self.conn.execute("DELETE FROM providers WHERE name = ?1", params![name]).map_err(self.err())?;
        Ok(n == 1)
    }

    /// Sets the route; returns its generation (grows with every change).
    pub fn set_inference(&self, provider: &str, model: &str, timeout_secs: u64) -> Result<u64, DbError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let generation = next_generation(&tx).map_err(self.err())?;
        tx.execute(
            "INSERT OR REPLACE INTO inference (id, provider, model, timeout_secs, generation) VALUES (1, ?1, ?2, ?3, ?4)",
            params![provider, model, timeout_secs as i64, generation as i64],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(generation)
    }

    pub fn inference(&self) -> Result<Option<InferenceRow>, DbError> {
        self.conn
            .query_row("SELECT provider, model, timeout_secs, generation FROM inference WHERE id = 1", [], |r| {
                Ok(InferenceRow {
                    provider: r.get(0)?,
                    model: r.get(1)?,
                    timeout_secs: r.get::<_, i64>(2)? as u64,
                    generation: r.get::<_, i64>(3)? as u64,
                })
            })
            .optional()
            .map_err(self.err())
    }

    /// Removes the route; returns the generation of "no route".
    pub fn delete_inference(&self) -> Result<u64, DbError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let generation = next_generation(&tx).map_err(self.err())?;
        tx.execute("DELETE FROM inference", []).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(generation)
    }

    /// The generation of the current route (or of its removal).
    pub fn route_generation(&self) -> Result<u64, DbError> {
        self.conn
            .query_row("SELECT value FROM counters WHERE name = 'route'", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |source| DbError { path: self.path.clone(), source }
    }

    pub fn insert(&self, rec: &Record, policy_text: &str) -> Result<(), DbError> {
        let i = &rec.info;
        let command = serde_json::to_string(&i.command).unwrap_or_else(|_| "[]".into());
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute(
            "INSERT INTO sandboxes (id, name, image, image_digest, policy_name, command, status, auto_remove, created, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                i.id,
                i.name,
                i.image,
                i.image_digest,
                i.policy_name,
                command,
                i.phase.as_str(),
                rec.auto_remove,
                i.created as i64,
                i.owner
            ],
        )
        .map_err(self.err())?;
        tx.execute(
            "INSERT INTO policies (sandbox, revision, name, text, created) VALUES (?1, 1, ?2, ?3, ?4)",
            params![i.id, i.policy_name, policy_text, now() as i64],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    pub fn name_taken(&self, name: &str) -> Result<bool, DbError> {
        self.conn
            .query_row("SELECT 1 FROM sandboxes WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err())
    }

    fn select(&self, filter: &str, arg: Option<&str>) -> Result<Vec<Record>, DbError> {
        let sql = format!(
            "SELECT s.id, s.name, s.image, s.image_digest, s.policy_name, s.command, s.status, s.exit_code, s.pid,
                    s.supervisor_pid, s.auto_remove, s.created, s.started, s.finished,
                    (SELECT MAX(revision) FROM policies p WHERE p.sandbox = s.id), s.owner
             FROM sandboxes s {filter} ORDER BY s.created, s.name"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let map = |row: &rusqlite::Row<'_>| {
            let command: String = row.get(5)?;
            Ok(Record {
                info: SandboxInfo {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    image: row.get(2)?,
                    image_digest: row.get(3)?,
                    policy_name: row.get(4)?,
                    command: serde_json::from_str(&command).unwrap_or_default(),
                    phase: {
                        let text: String = row.get(6)?;
                        Phase::parse(&text).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                6,
                                rusqlite::types::Type::Text,
                                format!("unknown sandbox status `{text}`").into(),
                            )
                        })?
                    },
                    exit_code: row.get(7)?,
                    pid: row.get(8)?,
                    created: row.get::<_, i64>(11)? as u64,
                    started: row.get::<_, Option<i64>>(12)?.map(|v| v as u64),
                    finished: row.get::<_, Option<i64>>(13)?.map(|v| v as u64),
                    policy_revision: row.get::<_, Option<i64>>(14)?.unwrap_or(0),
                    owner: row.get(15)?,
                },
                auto_remove: row.get(10)?,
            })
        };
        let rows = match arg {
            Some(a) => stmt.query_map([a], map),
            None => stmt.query_map([], map),
        }
        .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn all(&self) -> Result<Vec<Record>, DbError> {
        self.select("", None)
    }

    /// By name, or by id when no name matches.
    pub fn find(&self, name_or_id: &str) -> Result<Option<Record>, DbError> {
        let by_name = self.select("WHERE s.name = ?1", Some(name_or_id))?;
        if let Some(r) = by_name.into_iter().next() {
            return Ok(Some(r));
        }
        Ok(self.select("WHERE s.id = ?1", Some(name_or_id))?.into_iter().next())
    }

    pub fn set_running(&self, id: &str, pid: Option<i32>) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE sandboxes SET status = ?2, pid = ?3, supervisor_pid = NULL, exit_code = NULL,
                 started = ?4, finished = NULL WHERE id = ?1",
                params![id, Phase::Running.as_str(), pid, now() as i64],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// `stopped` with an exit code, or `dead` without one.
    pub fn set_finished(&self, id: &str, exit_code: Option<i32>, finished: Option<u64>) -> Result<(), DbError> {
        let status = if exit_code.is_some() { Phase::Stopped } else { Phase::Dead }.as_str();
        self.conn
            .execute(
                "UPDATE sandboxes SET status = ?2, exit_code = ?3, pid = NULL, supervisor_pid = NULL, finished = ?4
                 WHERE id = ?1",
                params![id, status, exit_code, finished.unwrap_or_else(now) as i64],
            )
            .map(drop)
            .map_err(self.err())
    }

    pub fn remove(&self, id: &str) -> Result<(), DbError> {
        self.conn.execute("DELETE FROM sandboxes WHERE id = ?1", [id]).map(drop).map_err(self.err())
    }

    /// The current policy text and its revision.
    pub fn policy(&self, id: &str) -> Result<Option<(i64, String, String)>, DbError> {
        self.conn
            .query_row(
                "SELECT revision, name, text FROM policies WHERE sandbox = ?1 ORDER BY revision DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// Every revision of the sandbox's policy, oldest first.
    pub fn policies(&self, id: &str) -> Result<Vec<PolicyRevision>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT revision, name, created, text FROM policies WHERE sandbox = ?1 ORDER BY revision")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(PolicyRevision {
                    revision: r.get(0)?,
                    name: r.get(1)?,
                    created: r.get::<_, i64>(2)? as u64,
                    text: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn add_policy(&self, id: &str, name: &str, text: &str) -> Result<i64, DbError> {
        let next = self.policy(id)?.map(|(r, _, _)| r + 1).unwrap_or(1);
        self.conn
            .execute(
                "INSERT INTO policies (sandbox, revision, name, text, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, next, name, text, now() as i64],
            )
            .map_err(self.err())?;
        Ok(next)
    }
}
