//! What every handler can reach: who owns the daemon, where its files live, when it
//! started, the state store, the command runner, the registry of recent operations, and
//! the limits on what clients may hold.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use banger_api::ApiError;
use banger_exec::{CommandRunner, SystemRunner};
use banger_model::dirs::Dirs;
use banger_store::Store;

use crate::errors;
use crate::limits::{Budget, Limits};
use crate::ops::OpRegistry;
use crate::services::Services;
use crate::shared_store::SharedStore;

/// Shared state of one running daemon.
#[derive(Debug)]
pub struct DaemonContext {
    /// The only uid allowed to talk to the daemon.
    pub owner_uid: u32,
    pub dirs: Dirs,
    pub started_at: Instant,
    pub store: Arc<SharedStore>,
    /// Recent long operations; also written to the store.
    pub ops: Arc<OpRegistry>,
    /// Runs the handlers' external commands (driver probes); the services hold the
    /// runner they were built with.
    pub runner: Arc<dyn CommandRunner>,
    /// The VM and image services.
    pub services: Services,
    /// What clients may hold: connections, buffered bytes, partial-frame time.
    pub limits: Limits,
    /// Bytes of request lines buffered across connections (capped by `limits`).
    pub budget: Budget,
}

impl DaemonContext {
    pub fn new(owner_uid: u32, dirs: Dirs) -> DaemonContext {
        DaemonContext::with_authorized_keys(owner_uid, dirs, None)
    }

    /// A context whose new guests accept `authorized_keys` (banger's public key) for root.
    pub fn with_authorized_keys(
        owner_uid: u32,
        dirs: Dirs,
        authorized_keys: Option<String>,
    ) -> DaemonContext {
        let store = Arc::new(SharedStore::new(dirs.state.clone(), dirs.database()));
        let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
        let services =
            Services::build_with_keys(&dirs, store.clone(), runner.clone(), authorized_keys);
        DaemonContext {
            owner_uid,
            dirs,
            started_at: Instant::now(),
            ops: Arc::new(OpRegistry::new(store.clone())),
            store,
            runner,
            services,
            budget: Budget::new(Limits::default().max_buffered_bytes),
            limits: Limits::default(),
        }
    }

    /// Replaces the limits on clients (tests use small ones).
    pub fn with_limits(mut self, limits: Limits) -> DaemonContext {
        self.budget = Budget::new(limits.max_buffered_bytes);
        self.limits = limits;
        self
    }

    /// Replaces the command runner (tests use a fake one).
    pub fn with_runner(mut self, runner: Arc<dyn CommandRunner>) -> DaemonContext {
        self.runner = runner;
        self
    }

    /// The SQLite database path.
    pub fn database_path(&self) -> &Path {
        self.store.path()
    }

    /// Runs `query` against the store on a blocking thread, opening (and creating) the
    /// database first if needed.
    pub async fn with_store<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.store.run(query).await
    }

    /// Startup housekeeping: operations a previous daemon left `running` can no longer
    /// finish, so they are marked failed. Returns how many.
    pub async fn fail_interrupted_operations(&self) -> Result<u64, ApiError> {
        self.with_store(|store| {
            store
                .fail_running_operations(
                    &jiff::Timestamp::now().to_string(),
                    "bangerd stopped before the operation finished",
                )
                .map_err(|e| errors::internal("cannot mark interrupted operations", &e))
        })
        .await
    }
}
