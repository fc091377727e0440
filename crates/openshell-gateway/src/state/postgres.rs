//! The shared store: PostgreSQL, through `postgres` (tokio-postgres's blocking
//! client: the gateway answers each request on a plain thread). Several gateway
//! replicas use one database; leases say which replica reconciles a sandbox.
//!
//! Migrations are the files of `migrations/postgres/`, applied in order at
//! open under an advisory lock (replicas starting together apply each once) and
//! recorded in `openshell_migrations`. Hand-written rather than a migration
//! crate's: the runner is the one transaction below, and the SQLite store keeps
//! its own schema.

use std::collections::HashSet;
use std::time::Duration;

use std::path::Path;

use postgres::{Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use openshell_gateway_api::proto::{Phase, PolicyRevision, ProviderInfo, SandboxInfo};

use super::{InferenceRow, ProviderRow, Record, State, StateError, now, parse_phase};

/// Every migration, in the order applied; a file once released never changes.
const MIGRATIONS: &[(&str, &str)] = &[("0001_state", include_str!("../../migrations/postgres/0001_state.sql"))];

/// Any number: the key of the advisory lock migrations are applied under.
const MIGRATION_LOCK: i64 = 0x6f70_656e_7368;

/// Milliseconds since the epoch on the database's clock: leases of replicas on
/// machines whose clocks differ are compared on one clock.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

const SANDBOX_COLUMNS: &str = "s.id, s.name, s.image, s.image_digest, s.policy_name, s.command, s.status,
    s.exit_code, s.pid, s.auto_remove, s.created, s.started, s.finished,
    (SELECT MAX(revision) FROM policies p WHERE p.sandbox = s.id), s.owner";

/// The system's roots (Debian's ca-certificates), when no CA is given.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

pub struct PostgresState {
    client: Client,
    url: String,
    /// TLS as the URL's `sslmode` asks, the server verified.
    tls: MakeRustlsConnect,
    /// The URL without its password, for errors and logs.
    at: String,
}

/// `user@host:port/dbname` of a connection string (never its password).
pub(super) fn redacted(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return "(an unparsable URL)".to_owned();
    };
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("{user}{host}{port}/{}", config.get_dbname().unwrap_or(""))
}

fn record(row: &Row, at: &str) -> Result<Record, StateError> {
    let get = || -> Result<(Record, String), postgres::Error> {
        let command: String = row.try_get(5)?;
        let status: String = row.try_get(6)?;
        let info = SandboxInfo {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            image: row.try_get(2)?,
            image_digest: row.try_get(3)?,
            policy_name: row.try_get(4)?,
            command: serde_json::from_str(&command).unwrap_or_default(),
            phase: Phase::Created,
            exit_code: row.try_get(7)?,
            pid: row.try_get(8)?,
            created: row.try_get::<_, i64>(10)? as u64,
            started: row.try_get::<_, Option<i64>>(11)?.map(|v| v as u64),
            finished: row.try_get::<_, Option<i64>>(12)?.map(|v| v as u64),
            policy_revision: row.try_get::<_, Option<i64>>(13)?.unwrap_or(0),
            owner: row.try_get(14)?,
        };
        Ok((Record { info, auto_remove: row.try_get(9)? }, status))
    };
    let (mut rec, status) = get().map_err(|source| StateError::Postgres { at: at.to_owned(), source })?;
    rec.info.phase = parse_phase(&status)?;
    Ok(rec)
}

fn next_generation(tx: &mut postgres::Transaction<'_>) -> Result<u64, postgres::Error> {
    let row = tx.query_one(
        "INSERT INTO counters (name, value) VALUES ('route', 1)
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        &[],
    )?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

fn ms(ttl: Duration) -> i64 {
    ttl.as_millis() as i64
}

impl PostgresState {
    pub fn open(url: &str, ca: Option<&Path>) -> Result<PostgresState, StateError> {
        let at = redacted(url);
        let tls = MakeRustlsConnect::new(crate::tls::client_config(ca.unwrap_or(Path::new(SYSTEM_ROOTS)))?);
        let mut client =
            Client::connect(url, tls.clone()).map_err(|source| StateError::Postgres { at: at.clone(), source })?;
        migrate(&mut client, &at)?;
        Ok(PostgresState { client, url: url.to_owned(), tls, at })
    }

    /// Runs `f` on the connection, made again first when the last one closed
    /// (a restarted database, a dropped link).
    fn run<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, StateError> {
        let at = &self.at;
        if self.client.is_closed() {
            tracing::warn!(database = %at, "the connection to the state closed; connecting again");
            self.client = Client::connect(&self.url, self.tls.clone())
                .map_err(|source| StateError::Postgres { at: at.clone(), source })?;
        }
        f(&mut self.client).map_err(|source| StateError::Postgres { at: at.clone(), source })
    }

    fn select(&mut self, filter: &str, arg: Option<&str>) -> Result<Vec<Record>, StateError> {
        let sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes s {filter} ORDER BY s.created, s.name");
        let rows = self.run(|c| match arg {
            Some(a) => c.query(&sql, &[&a]),
            None => c.query(&sql, &[]),
        })?;
        rows.iter().map(|row| record(row, &self.at)).collect()
    }

    fn ids(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<Vec<String>, StateError> {
        let rows = self.run(|c| c.query(sql, params))?;
        let at = self.at.clone();
        rows.iter().map(|r| r.try_get(0).map_err(|source| StateError::Postgres { at: at.clone(), source })).collect()
    }
}

/// Applies the migrations this database lacks, in one transaction under an
/// advisory lock.
fn migrate(client: &mut Client, at: &str) -> Result<(), StateError> {
    let failed = |migration: &'static str| move |source| StateError::Migration { at: at.to_owned(), migration, source };
    let mut tx = client.transaction().map_err(failed("(start)"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(failed("(lock)"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS openshell_migrations (name TEXT PRIMARY KEY, applied BIGINT NOT NULL)",
    )
    .map_err(failed("(bookkeeping)"))?;
    for (name, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM openshell_migrations WHERE name = $1", &[name])
            .map_err(failed(name))?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql).map_err(failed(name))?;
        tx.execute("INSERT INTO openshell_migrations (name, applied) VALUES ($1, $2)", &[name, &(now() as i64)])
            .map_err(failed(name))?;
        tracing::info!(database = %at, migration = name, "applied");
    }
    tx.commit().map_err(failed("(commit)"))
}

impl State for PostgresState {
    fn add_provider(&mut self, row: &ProviderRow) -> Result<bool, StateError> {
        let i = &row.info;
        let n = self.run(|c| {
            c.execute(
                "INSERT INTO providers (name, kind, base_url, credential_name, credential, created)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                &[&i.name, &i.kind, &i.base_url, &i.credential_name, &row.credential, &(i.created as i64)],
            )
        })?;
        Ok(n == 1)
    }

    fn providers(&mut self) -> Result<Vec<ProviderRow>, StateError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT name, kind, base_url, credential_name, credential, created FROM providers ORDER BY name",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(ProviderRow {
                        info: ProviderInfo {
                            name: r.try_get(0)?,
                            kind: r.try_get(1)?,
                            base_url: r.try_get(2)?,
                            credential_name: r.try_get(3)?,
                            created: r.try_get::<_, i64>(5)? as u64,
                        },
                        credential: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn delete_provider(&mut self, name: &str) -> Result<bool, StateError> {
        Ok(self.run(|c| c.execute("DELETE FROM providers WHERE name = $1", &[&name]))? == 1)
    }

    fn set_inference(&mut self, provider: &str, model: &str, timeout_secs: u64) -> Result<u64, StateError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let generation = next_generation(&mut tx)?;
            tx.execute(
                "INSERT INTO inference (id, provider, model, timeout_secs, generation) VALUES (1, $1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, model = excluded.model,
                 timeout_secs = excluded.timeout_secs, generation = excluded.generation",
                &[&provider, &model, &(timeout_secs as i64), &(generation as i64)],
            )?;
            tx.commit()?;
            Ok(generation)
        })
    }

    fn inference(&mut self) -> Result<Option<InferenceRow>, StateError> {
        self.run(|c| {
            let row =
                c.query_opt("SELECT provider, model, timeout_secs, generation FROM inference WHERE id = 1", &[])?;
            row.map(|r| {
                Ok(InferenceRow {
                    provider: r.try_get(0)?,
                    model: r.try_get(1)?,
                    timeout_secs: r.try_get::<_, i64>(2)? as u64,
                    generation: r.try_get::<_, i64>(3)? as u64,
                })
            })
            .transpose()
        })
    }

    fn delete_inference(&mut self) -> Result<u64, StateError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let generation = next_generation(&mut tx)?;
            tx.execute("DELETE FROM inference", &[])?;
            tx.commit()?;
            Ok(generation)
        })
    }

    fn route_generation(&mut self) -> Result<u64, StateError> {
        self.run(|c| {
            let row = c.query_opt("SELECT value FROM counters WHERE name = 'route'", &[])?;
            Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(0) as u64)
        })
    }

    fn insert(&mut self, rec: &Record, policy_text: &str) -> Result<(), StateError> {
        let i = &rec.info;
        let command = serde_json::to_string(&i.command).unwrap_or_else(|_| "[]".into());
        let inserted = self.run(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO sandboxes (id, name, image, image_digest, policy_name, command, status, auto_remove, created, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING",
                &[
                    &i.id,
                    &i.name,
                    &i.image,
                    &i.image_digest,
                    &i.policy_name,
                    &command,
                    &i.phase.as_str(),
                    &rec.auto_remove,
                    &(i.created as i64),
                    &i.owner,
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO policies (sandbox, revision, name, text, created) VALUES ($1, 1, $2, $3, $4)",
                &[&i.id, &i.policy_name, &policy_text, &(now() as i64)],
            )?;
            tx.commit()?;
            Ok(true)
        })?;
        if inserted { Ok(()) } else { Err(StateError::NameTaken(i.name.clone())) }
    }

    fn name_taken(&mut self, name: &str) -> Result<bool, StateError> {
        Ok(self.run(|c| c.query_opt("SELECT 1 FROM sandboxes WHERE name = $1", &[&name]))?.is_some())
    }

    fn all(&mut self) -> Result<Vec<Record>, StateError> {
        self.select("", None)
    }

    fn find(&mut self, name_or_id: &str) -> Result<Option<Record>, StateError> {
        if let Some(r) = self.select("WHERE s.name = $1", Some(name_or_id))?.into_iter().next() {
            return Ok(Some(r));
        }
        Ok(self.select("WHERE s.id = $1", Some(name_or_id))?.into_iter().next())
    }

    fn set_running(&mut self, id: &str, pid: Option<i32>) -> Result<(), StateError> {
        self.run(|c| {
            c.execute(
                "UPDATE sandboxes SET status = $2, pid = $3, exit_code = NULL, started = $4, finished = NULL
                 WHERE id = $1",
                &[&id, &Phase::Running.as_str(), &pid, &(now() as i64)],
            )
        })
        .map(drop)
    }

    fn finish(&mut self, id: &str, code: Option<i32>, at: Option<u64>, holder: &str) -> Result<bool, StateError> {
        let status = if code.is_some() { Phase::Stopped } else { Phase::Dead }.as_str();
        let at = at.unwrap_or_else(now) as i64;
        self.run(|c| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt("SELECT auto_remove FROM sandboxes WHERE id = $1", &[&id])?;
            let removed = match row {
                Some(row) => row.try_get::<_, bool>(0)?,
                None => false,
            };
            if removed {
                tx.execute("DELETE FROM sandboxes WHERE id = $1", &[&id])?;
                tx.execute("DELETE FROM leases WHERE sandbox = $1", &[&id])?;
            } else {
                tx.execute(
                    "UPDATE sandboxes SET status = $2, exit_code = $3, pid = NULL, finished = $4 WHERE id = $1",
                    &[&id, &status, &code, &at],
                )?;
                tx.execute("DELETE FROM leases WHERE sandbox = $1 AND holder = $2", &[&id, &holder])?;
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    fn remove(&mut self, id: &str) -> Result<(), StateError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM sandboxes WHERE id = $1", &[&id])?;
            tx.execute("DELETE FROM leases WHERE sandbox = $1", &[&id])?;
            tx.commit()
        })
    }

    fn policy(&mut self, id: &str) -> Result<Option<(i64, String, String)>, StateError> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT revision, name, text FROM policies WHERE sandbox = $1 ORDER BY revision DESC LIMIT 1",
                &[&id],
            )?;
            row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
        })
    }

    fn policies(&mut self, id: &str) -> Result<Vec<PolicyRevision>, StateError> {
        self.run(|c| {
            let rows = c.query(
                "SELECT revision, name, created, text FROM policies WHERE sandbox = $1 ORDER BY revision",
                &[&id],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(PolicyRevision {
                        revision: r.try_get(0)?,
                        name: r.try_get(1)?,
                        created: r.try_get::<_, i64>(2)? as u64,
                        text: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn add_policy(&mut self, id: &str, name: &str, text: &str) -> Result<i64, StateError> {
        // One statement: two replicas adding at once get distinct revisions
        // (or one fails on the key), never the same one twice.
        self.run(|c| {
            let row = c.query_one(
                "INSERT INTO policies (sandbox, revision, name, text, created)
                 SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4 FROM policies WHERE sandbox = $1
                 RETURNING revision",
                &[&id, &name, &text, &(now() as i64)],
            )?;
            row.try_get(0)
        })
    }

    fn lease(&mut self, id: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let sql = format!(
            "INSERT INTO leases (sandbox, holder, expires) VALUES ($1, $2, {NOW_MS} + $3)
             ON CONFLICT (sandbox) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
             WHERE leases.holder = excluded.holder OR leases.expires < {NOW_MS}"
        );
        Ok(self.run(|c| c.execute(&sql, &[&id, &holder, &ms(ttl)]))? == 1)
    }

    fn renew(&mut self, holder: &str, ttl: Duration) -> Result<(), StateError> {
        let sql = format!("UPDATE leases SET expires = {NOW_MS} + $2 WHERE holder = $1");
        self.run(|c| c.execute(&sql, &[&holder, &ms(ttl)])).map(drop)
    }

    fn release(&mut self, id: &str, holder: &str) -> Result<(), StateError> {
        self.run(|c| c.execute("DELETE FROM leases WHERE sandbox = $1 AND holder = $2", &[&id, &holder])).map(drop)
    }

    fn release_all(&mut self, holder: &str) -> Result<(), StateError> {
        self.run(|c| c.execute("DELETE FROM leases WHERE holder = $1", &[&holder])).map(drop)
    }

    fn held(&mut self, holder: &str) -> Result<Vec<String>, StateError> {
        self.ids("SELECT sandbox FROM leases WHERE holder = $1", &[&holder])
    }

    fn unleased(&mut self) -> Result<Vec<String>, StateError> {
        let sql = format!(
            "SELECT s.id FROM sandboxes s WHERE s.status IN ($1, $2) AND NOT EXISTS
             (SELECT 1 FROM leases l WHERE l.sandbox = s.id AND l.expires >= {NOW_MS}) ORDER BY s.created"
        );
        self.ids(&sql, &[&Phase::Created.as_str(), &Phase::Running.as_str()])
    }

    fn known(&mut self) -> Result<HashSet<String>, StateError> {
        let sql = format!("SELECT id FROM sandboxes UNION SELECT sandbox FROM leases WHERE expires >= {NOW_MS}");
        Ok(self.ids(&sql, &[])?.into_iter().collect())
    }

    fn drop_orphan_leases(&mut self) -> Result<(), StateError> {
        let sql = format!("DELETE FROM leases WHERE expires < {NOW_MS} AND sandbox NOT IN (SELECT id FROM sandboxes)");
        self.run(|c| c.execute(&sql, &[])).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let shown = redacted("postgres://gw:s3cret@db.example.com:5433/openshell");
        assert_eq!(shown, "gw@db.example.com:5433/openshell");
        assert!(!redacted("postgresql://gw:s3cret@h/x?sslmode=disable").contains("s3cret"));
    }
}
