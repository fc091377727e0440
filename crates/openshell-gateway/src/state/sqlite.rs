//! The embedded default: one SQLite database (WAL) in the gateway directory,
//! used by one gateway at a time (the directory's lock).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use openshell_gateway_api::proto::{Phase, PolicyRevision, ProviderInfo, SandboxInfo};

use super::{InferenceRow, ProviderRow, Record, State, StateError, now};

pub struct SqliteState {
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
CREATE TABLE IF NOT EXISTS leases (
    sandbox TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires INTEGER NOT NULL
);
";

fn next_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES ('route', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [],
    )?;
    tx.query_row("SELECT value FROM counters WHERE name = 'route'", [], |r| r.get::<_, i64>(0)).map(|v| v as u64)
}

/// Milliseconds since the epoch, on this host's clock (the only gateway's).
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl SqliteState {
    pub fn open(path: &Path) -> Result<SqliteState, StateError> {
        let name = path.display().to_string();
        let err = |source| StateError::Sqlite { path: name.clone(), source };
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
        Ok(SqliteState { conn, path: name })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Sqlite { path: self.path.clone(), source }
    }

    fn select(&self, filter: &str, arg: Option<&str>) -> Result<Vec<Record>, StateError> {
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
}

impl State for SqliteState {
    fn add_provider(&mut self, row: &ProviderRow) -> Result<bool, StateError> {
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

    fn providers(&mut self) -> Result<Vec<ProviderRow>, StateError> {
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

    fn delete_provider(&mut self, name: &str) -> Result<bool, StateError> {
        let n = self.conn.execute("DELETE FROM providers WHERE name = ?1", params![name]).map_err(self.err())?;
        Ok(n == 1)
    }

    fn set_inference(&mut self, provider: &str, model: &str, timeout_secs: u64) -> Result<u64, StateError> {
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

    fn inference(&mut self) -> Result<Option<InferenceRow>, StateError> {
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

    fn delete_inference(&mut self) -> Result<u64, StateError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let generation = next_generation(&tx).map_err(self.err())?;
        tx.execute("DELETE FROM inference", []).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(generation)
    }

    fn route_generation(&mut self) -> Result<u64, StateError> {
        self.conn
            .query_row("SELECT value FROM counters WHERE name = 'route'", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(self.err())
    }

    fn insert(&mut self, rec: &Record, policy_text: &str) -> Result<(), StateError> {
        let i = &rec.info;
        let command = serde_json::to_string(&i.command).unwrap_or_else(|_| "[]".into());
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let n = tx.execute(
            "INSERT INTO sandboxes (id, name, image, image_digest, policy_name, command, status, auto_remove, created, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(name) DO NOTHING",
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
        if n == 0 {
            return Err(StateError::NameTaken(i.name.clone()));
        }
        tx.execute(
            "INSERT INTO policies (sandbox, revision, name, text, created) VALUES (?1, 1, ?2, ?3, ?4)",
            params![i.id, i.policy_name, policy_text, now() as i64],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    fn name_taken(&mut self, name: &str) -> Result<bool, StateError> {
        self.conn
            .query_row("SELECT 1 FROM sandboxes WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err())
    }

    fn all(&mut self) -> Result<Vec<Record>, StateError> {
        self.select("", None)
    }

    fn find(&mut self, name_or_id: &str) -> Result<Option<Record>, StateError> {
        let by_name = self.select("WHERE s.name = ?1", Some(name_or_id))?;
        if let Some(r) = by_name.into_iter().next() {
            return Ok(Some(r));
        }
        Ok(self.select("WHERE s.id = ?1", Some(name_or_id))?.into_iter().next())
    }

    fn set_running(&mut self, id: &str, pid: Option<i32>) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE sandboxes SET status = ?2, pid = ?3, supervisor_pid = NULL, exit_code = NULL,
                 started = ?4, finished = NULL WHERE id = ?1",
                params![id, Phase::Running.as_str(), pid, now() as i64],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn finish(&mut self, id: &str, code: Option<i32>, at: Option<u64>, holder: &str) -> Result<bool, StateError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let auto_remove: Option<bool> = tx
            .query_row("SELECT auto_remove FROM sandboxes WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        let removed = auto_remove == Some(true);
        if removed {
            tx.execute("DELETE FROM sandboxes WHERE id = ?1", [id]).map_err(self.err())?;
            tx.execute("DELETE FROM leases WHERE sandbox = ?1", [id]).map_err(self.err())?;
        } else {
            let status = if code.is_some() { Phase::Stopped } else { Phase::Dead }.as_str();
            tx.execute(
                "UPDATE sandboxes SET status = ?2, exit_code = ?3, pid = NULL, supervisor_pid = NULL, finished = ?4
                 WHERE id = ?1",
                params![id, status, code, at.unwrap_or_else(now) as i64],
            )
            .map_err(self.err())?;
            tx.execute("DELETE FROM leases WHERE sandbox = ?1 AND holder = ?2", params![id, holder])
                .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(removed)
    }

    fn remove(&mut self, id: &str) -> Result<(), StateError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute("DELETE FROM sandboxes WHERE id = ?1", [id]).map_err(self.err())?;
        tx.execute("DELETE FROM leases WHERE sandbox = ?1", [id]).map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    fn policy(&mut self, id: &str) -> Result<Option<(i64, String, String)>, StateError> {
        self.conn
            .query_row(
                "SELECT revision, name, text FROM policies WHERE sandbox = ?1 ORDER BY revision DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())
    }

    fn policies(&mut self, id: &str) -> Result<Vec<PolicyRevision>, StateError> {
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

    fn add_policy(&mut self, id: &str, name: &str, text: &str) -> Result<i64, StateError> {
        let next = self.policy(id)?.map(|(r, _, _)| r + 1).unwrap_or(1);
        self.conn
            .execute(
                "INSERT INTO policies (sandbox, revision, name, text, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, next, name, text, now() as i64],
            )
            .map_err(self.err())?;
        Ok(next)
    }

    fn lease(&mut self, id: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = now_ms();
        let n = self
            .conn
            .execute(
                "INSERT INTO leases (sandbox, holder, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT(sandbox) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
                 WHERE leases.holder = excluded.holder OR leases.expires < ?4",
                params![id, holder, now + ttl.as_millis() as i64, now],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn renew(&mut self, holder: &str, ttl: Duration) -> Result<(), StateError> {
        let expires = now_ms() + ttl.as_millis() as i64;
        self.conn
            .execute("UPDATE leases SET expires = ?2 WHERE holder = ?1", params![holder, expires])
            .map(drop)
            .map_err(self.err())
    }

    fn release(&mut self, id: &str, holder: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM leases WHERE sandbox = ?1 AND holder = ?2", params![id, holder])
            .map(drop)
            .map_err(self.err())
    }

    fn release_all(&mut self, holder: &str) -> Result<(), StateError> {
        self.conn.execute("DELETE FROM leases WHERE holder = ?1", [holder]).map(drop).map_err(self.err())
    }

    fn held(&mut self, holder: &str) -> Result<Vec<String>, StateError> {
        let mut stmt = self.conn.prepare("SELECT sandbox FROM leases WHERE holder = ?1").map_err(self.err())?;
        let rows = stmt.query_map([holder], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn unleased(&mut self) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id FROM sandboxes s WHERE s.status IN (?1, ?2) AND NOT EXISTS
                 (SELECT 1 FROM leases l WHERE l.sandbox = s.id AND l.expires >= ?3) ORDER BY s.created",
            )
            .map_err(self.err())?;
        let live = params![Phase::Created.as_str(), Phase::Running.as_str(), now_ms()];
        let rows = stmt.query_map(live, |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn known(&mut self) -> Result<HashSet<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM sandboxes UNION SELECT sandbox FROM leases WHERE expires >= ?1")
            .map_err(self.err())?;
        let rows = stmt.query_map([now_ms()], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn drop_orphan_leases(&mut self) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM leases WHERE expires < ?1 AND sandbox NOT IN (SELECT id FROM sandboxes)", [now_ms()])
            .map(drop)
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, auto_remove: bool) -> Record {
        let info = SandboxInfo {
            id: id.to_owned(),
            name: format!("sandbox-{id}"),
            image: "openshell/test".into(),
            image_digest: "sha256:00".into(),
            policy_name: "default".into(),
            policy_revision: 1,
            command: Vec::new(),
            phase: Phase::Created,
            owner: "local".into(),
            exit_code: None,
            pid: None,
            created: 1,
            started: None,
            finished: None,
        };
        Record { info, auto_remove }
    }

    /// The end of a run, in one transaction: a `--rm` sandbox leaves the state
    /// with its lease; another is `stopped` (or `dead` without a code) and only
    /// the finishing holder's lease goes.
    #[test]
    fn finish_removes_a_rm_sandbox_and_records_the_end_of_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = SqliteState::open(&dir.path().join("state.db")).expect("open");
        let ttl = Duration::from_secs(60);
        for (id, rm) in [("gone", true), ("kept", false), ("lost", false)] {
            db.insert(&record(id, rm), "version: 1\n").expect("insert");
            db.set_running(id, Some(7)).expect("running");
            assert!(db.lease(id, "replica-a", ttl).expect("lease"));
        }
        assert!(db.finish("gone", Some(0), Some(5), "replica-a").expect("finish"), "removed");
        assert!(db.find("gone").expect("find").is_none());
        assert!(!db.finish("kept", Some(3), Some(5), "replica-a").expect("finish"), "kept");
        let kept = db.find("kept").expect("find").expect("recorded");
        assert_eq!(
            (kept.info.phase, kept.info.exit_code, kept.info.pid, kept.info.finished),
            (Phase::Stopped, Some(3), None, Some(5))
        );
        assert!(!db.finish("lost", None, None, "replica-b").expect("finish"));
        assert_eq!(db.find("lost").expect("find").expect("recorded").info.phase, Phase::Dead);
        let held = db.held("replica-a").expect("held");
        assert_eq!(held, vec!["lost".to_owned()], "another holder's finish leaves replica-a's lease");
        assert!(!db.finish("never", Some(0), None, "replica-a").expect("an unknown id"), "nothing to remove");
    }
}
