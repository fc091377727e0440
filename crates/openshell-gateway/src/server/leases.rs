//! Which replica reconciles which sandbox. A replica leases every sandbox it
//! makes (before its driver holds anything of it), every standby sandbox, and
//! every sandbox it starts; it renews its leases while it lives and gives one up
//! when the sandbox ends. A replica that dies stops renewing: once its leases
//! expire, another takes each over and finds, through the driver, whether the
//! sandbox still runs (watched again), ended (its end recorded), or was never
//! started (a create cut short: removed, as its client saw the create fail).
//!
//! With SQLite there is one replica, and its name outlives restarts (it is kept
//! in the gateway directory), so a restarted gateway takes its sandboxes back at
//! once instead of waiting for its old leases to expire.

use std::sync::Arc;

use openshell_driver::{Found, Pending, Run};
use openshell_gateway_api::proto::Phase;
use openshell_gateway_api::{ApiError, GatewayDir};

use super::{Gateway, ServerError};

/// This gateway's replica name: the one in its directory, else a new one.
pub(super) fn replica_name(dir: &GatewayDir) -> Result<String, ServerError> {
    let path = dir.0.join("replica");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::Io { path, source }),
    }
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let name = format!("{host}-{}", super::random_id());
    std::fs::write(&path, &name).map_err(|source| ServerError::Io { path, source })?;
    Ok(name)
}

impl Gateway {
    /// Takes (or renews) the lease of `id`; refused while another live replica
    /// holds it.
    pub(super) fn take_lease(&self, id: &str) -> Result<(), ApiError> {
        if self.db().lease(id, &self.replica, self.lease)? {
            return Ok(());
        }
        Err(ApiError::precondition(format!(
            "sandbox {id} is being handled by another gateway replica; try again once it is done"
        )))
    }

    pub(super) fn release_lease(&self, id: &str) {
        if let Err(e) = self.db().release(id, &self.replica) {
            tracing::warn!(%e, sandbox = id, "releasing a lease");
        }
    }

    /// Ends an unassigned standby sandbox (its driver removes its files) and
    /// gives up its lease, in the background.
    pub(super) fn discard(self: &Arc<Self>, id: String, pending: Box<dyn Pending>) {
        let gateway = Arc::clone(self);
        std::thread::spawn(move || {
            pending.discard();
            gateway.release_lease(&id);
        });
    }

    /// Waits for the end of a run in the background and records it.
    pub(super) fn watch(self: &Arc<Self>, id: &str, run: Run) {
        self.watching.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
        let gateway = Arc::clone(self);
        let id = id.to_owned();
        let watch = run.watch;
        std::thread::spawn(move || {
            let outcome = watch.wait();
            gateway.finish_and_remove(&id, outcome.ok());
        });
    }

    /// Reconciles what this replica held before it (re)started and what no one
    /// holds, then keeps doing so, renewing its leases, every third of a lease.
    pub(super) fn start_reconciling(self: &Arc<Self>) {
        let mine = self.db().held(&self.replica).unwrap_or_else(|e| {
            tracing::error!(%e, "reading this replica's leases");
            Vec::new()
        });
        self.round(mine);
        let gateway = Arc::clone(self);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(gateway.lease / 3);
                if let Err(e) = gateway.db().renew(&gateway.replica, gateway.lease) {
                    tracing::error!(%e, "renewing this replica's leases");
                    continue;
                }
                gateway.round(Vec::new());
            }
        });
    }

    /// One round: takes over `also` and every unleased live sandbox, then
    /// removes what the driver keeps of sandboxes no one knows.
    fn round(self: &Arc<Self>, also: Vec<String>) {
        let unleased = self.db().unleased().unwrap_or_else(|e| {
            tracing::error!(%e, "reading the sandboxes no replica holds");
            Vec::new()
        });
        for id in also.into_iter().chain(unleased) {
            if self.watching.lock().unwrap_or_else(|p| p.into_inner()).contains(&id) {
                continue;
            }
            let taken = self.db().lease(&id, &self.replica, self.lease);
            match taken {
                Ok(true) => self.take_over(&id),
                Ok(false) => {}
                Err(e) => tracing::error!(%e, sandbox = %id, "taking a lease"),
            }
        }
        // The driver lists what it keeps first, then asks what is known: an id
        // leased while it lists is known by then.
        let gateway = Arc::clone(self);
        self.driver
            .sweep(&move || gateway.db().known().map_err(|e| tracing::error!(%e, "reading the known sandboxes")).ok());
        if let Err(e) = self.db().drop_orphan_leases() {
            tracing::warn!(%e, "dropping expired leases");
        }
    }

    /// A sandbox this replica now holds, whose last holder is gone: watched
    /// again when it runs, its end recorded when it ended, removed when its
    /// create was cut short.
    fn take_over(self: &Arc<Self>, id: &str) {
        let found = self.db().find(id);
        let rec = match found {
            Ok(Some(rec)) => rec,
            Ok(None) => return self.release_lease(id),
            Err(e) => return tracing::error!(%e, sandbox = id, "reading a sandbox taken over"),
        };
        let name = rec.info.name.as_str();
        match (self.driver.find(id), rec.info.phase) {
            (Found::Running(run), _) => {
                tracing::info!(sandbox = name, "found running; watching it");
                if let Err(e) = self.db().set_running(id, run.pid) {
                    tracing::error!(%e, "recording a sandbox found running");
                }
                self.watch(id, run);
            }
            (Found::Ended(_), Phase::Running) => {
                tracing::info!(sandbox = name, "ended while no gateway watched it");
                self.finish_and_remove(id, None);
            }
            (Found::Ended(_), Phase::Created) => {
                tracing::info!(sandbox = name, "its create was cut short; removing it");
                if let Err(e) = self.driver.remove(id) {
                    tracing::error!(%e, sandbox = name, "removing a sandbox whose create was cut short");
                    return;
                }
                if let Err(e) = self.db().remove(id) {
                    tracing::error!(%e, sandbox = name, "removing a sandbox whose create was cut short");
                }
            }
            (Found::Ended(_), _) => self.release_lease(id),
        }
    }
}
