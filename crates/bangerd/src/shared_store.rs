//! The state store as the daemon shares it: opened (and created) on first use, one
//! connection behind a mutex that is held for one short query at a time. The handlers'
//! queries ([`SharedStore::run`]) run on a blocking thread; the VM service's
//! ([`SharedStore::access_raw`], through its `StoreAccess` trait) run on the async worker
//! that asks, holding the mutex for that one query. A failed open is not remembered, so the
//! next request retries: a user who fixes the permissions of their state directory does
//! not have to restart bangerd.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use banger_api::ApiError;
use banger_store::{OperationRecord, Store};

use crate::errors;
use crate::layout;
use crate::ops::OpJournal;

/// The lazily opened database.
#[derive(Debug)]
pub struct SharedStore {
    state_dir: PathBuf,
    path: PathBuf,
    // rusqlite connections are `Send` but not `Sync`.
    slot: Mutex<Option<Store>>,
}

impl SharedStore {
    /// A store at `path`, created inside `state_dir` (0700) when first used.
    pub fn new(state_dir: PathBuf, path: PathBuf) -> SharedStore {
        SharedStore {
            state_dir,
            path,
            slot: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `query` on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || store.run_blocking(query))
            .await
            .map_err(|e| ApiError::operation_failed(format!("the store query stopped: {e}")))?
    }

    /// [`SharedStore::run`] for code already on a blocking thread.
    pub fn run_blocking<T>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let store = match slot.take() {
            Some(store) => store,
            None => self.open()?,
        };
        let result = query(&store);
        *slot = Some(store);
        result
    }

    /// Runs `query` with the store, as the VM service needs it: store errors stay typed.
    pub fn access_raw(
        &self,
        query: &mut dyn FnMut(&Store) -> Result<(), banger_store::StoreError>,
    ) -> Result<(), banger_store::StoreError> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let store = match slot.take() {
            Some(store) => store,
            None => {
                let _ = layout::create_private_dir(&self.state_dir);
                Store::open(&self.path)?
            }
        };
        let result = query(&store);
        *slot = Some(store);
        result
    }

    fn open(&self) -> Result<Store, ApiError> {
        layout::create_private_dir(&self.state_dir)
            .map_err(|e| errors::internal("cannot create the state directory", &e))?;
        let store = Store::open(&self.path).map_err(|e| {
            errors::internal(
                &format!("cannot open the state database {}", self.path.display()),
                &e,
            )
        })?;
        tracing::info!(database = %self.path.display(), "state database open");
        Ok(store)
    }
}

impl OpJournal for SharedStore {
    fn started(&self, operation: &OperationRecord) -> Result<(), String> {
        self.run_blocking(|store| {
            store
                .insert_operation(operation)
                .map_err(|e| errors::internal("cannot record the operation", &e))
        })
        .map_err(|e| e.message)
    }

    fn finished(&self, operation: &OperationRecord) -> Result<(), String> {
        self.run_blocking(|store| {
            store
                .update_operation(operation)
                .map_err(|e| errors::internal("cannot record the operation's outcome", &e))
        })
        .map_err(|e| e.message)
    }
}
