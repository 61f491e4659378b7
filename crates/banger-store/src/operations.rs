//! The `operations` table: long operations (create, pull, build) with their stages, so a
//! client can follow one by id and a restarted daemon can mark the ones it lost.

use rusqlite::{OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::{StoreError, sqlite, unique_violation};

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Running,
    Succeeded,
    Failed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }

    /// The state spelled exactly as [`OperationState::as_str`] does.
    pub fn parse(name: &str) -> Option<OperationState> {
        [
            OperationState::Running,
            OperationState::Succeeded,
            OperationState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// One stage of an operation; times are milliseconds since the operation started, as
/// in the API's stage events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub started_ms: u64,
    /// `None` while running, or forever when the operation failed in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A long operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    /// What it does, e.g. `vm.create`, `image.pull`.
    pub kind: String,
    /// What it acts on, e.g. a VM or image name.
    pub target: String,
    pub state: OperationState,
    pub stages: Vec<StageRecord>,
    /// Why it failed.
    pub error: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once succeeded or failed.
    pub finished_at: Option<String>,
}

const COLUMNS: &str = "id, kind, target, state, stages, error, started_at, finished_at";

/// A row before its state and stages are decoded.
struct RawOperation {
    id: String,
    kind: String,
    target: String,
    state: String,
    stages: String,
    error: Option<String>,
    started_at: String,
    finished_at: Option<String>,
}

impl RawOperation {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawOperation> {
        Ok(RawOperation {
            id: row.get(0)?,
            kind: row.get(1)?,
            target: row.get(2)?,
            state: row.get(3)?,
            stages: row.get(4)?,
            error: row.get(5)?,
            started_at: row.get(6)?,
            finished_at: row.get(7)?,
        })
    }

    fn decode(self) -> Result<OperationRecord, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: format!("operation {}", self.id),
            detail,
        };
        let state = OperationState::parse(&self.state)
            .ok_or_else(|| corrupt(format!("unknown state {:?}", self.state)))?;
        let stages =
            serde_json::from_str(&self.stages).map_err(|e| corrupt(format!("stages JSON: {e}")))?;
        Ok(OperationRecord {
            id: self.id,
            kind: self.kind,
            target: self.target,
            state,
            stages,
            error: self.error,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

fn encode_stages(operation: &OperationRecord) -> Result<String, StoreError> {
    serde_json::to_string(&operation.stages).map_err(|e| StoreError::Corrupt {
        what: format!("operation {}", operation.id),
        detail: format!("stages JSON: {e}"),
    })
}

impl Store {
    /// Records a new operation; a taken id is `AlreadyExists`.
    pub fn insert_operation(&self, operation: &OperationRecord) -> Result<(), StoreError> {
        let stages = encode_stages(operation)?;
        self.conn
            .execute(
                &format!(
                    "INSERT INTO operations ({COLUMNS}) VALUES (:id, :kind, :target, :state, \
                     :stages, :error, :started_at, :finished_at)"
                ),
                named_params! {
                    ":id": operation.id,
                    ":kind": operation.kind,
                    ":target": operation.target,
                    ":state": operation.state.as_str(),
                    ":stages": stages,
                    ":error": operation.error,
                    ":started_at": operation.started_at,
                    ":finished_at": operation.finished_at,
                },
            )
            .map_err(|e| match unique_violation(&e) {
                Some(_) => StoreError::AlreadyExists {
                    what: "operation",
                    name: operation.id.clone(),
                },
                None => StoreError::Sqlite {
                    doing: format!("inserting operation {}", operation.id),
                    source: e,
                },
            })?;
        Ok(())
    }

    /// Replaces the state, stages, error and finish time of an existing operation.
    pub fn update_operation(&self, operation: &OperationRecord) -> Result<(), StoreError> {
        let stages = encode_stages(operation)?;
        let changed = self
            .conn
            .execute(
                "UPDATE operations SET kind = :kind, target = :target, state = :state, \
                 stages = :stages, error = :error, started_at = :started_at, \
                 finished_at = :finished_at WHERE id = :id",
                named_params! {
                    ":id": operation.id,
                    ":kind": operation.kind,
                    ":target": operation.target,
                    ":state": operation.state.as_str(),
                    ":stages": stages,
                    ":error": operation.error,
                    ":started_at": operation.started_at,
                    ":finished_at": operation.finished_at,
                },
            )
            .map_err(sqlite(|| format!("updating operation {}", operation.id)))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "operation",
                name: operation.id.clone(),
            });
        }
        Ok(())
    }

    /// The operation with this id, if any.
    pub fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE id = ?1"),
                [id],
                RawOperation::read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading operation {id}")))?
            .map(RawOperation::decode)
            .transpose()
    }

    /// The `limit` most recently started operations, newest first.
    pub fn list_operations(&self, limit: u32) -> Result<Vec<OperationRecord>, StoreError> {
        self.select_all(
            "listing operations",
            &format!(
                "SELECT {COLUMNS} FROM operations \
                 ORDER BY started_at DESC, rowid DESC LIMIT ?1"
            ),
            [limit],
            RawOperation::read,
        )?
        .into_iter()
        .map(RawOperation::decode)
        .collect()
    }

    /// Marks every `running` operation failed with `error`: called at daemon start, when
    /// no operation from a previous process can still be running. Returns how many.
    pub fn fail_running_operations(
        &self,
        finished_at: &str,
        error: &str,
    ) -> Result<u64, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE operations SET state = 'failed', error = ?1, finished_at = ?2 \
                 WHERE state = 'running'",
                [error, finished_at],
            )
            .map_err(sqlite(|| "failing interrupted operations"))?;
        Ok(changed as u64)
    }

    /// Deletes all but the `keep` most recently started operations. Returns how many.
    pub fn prune_operations(&self, keep: u32) -> Result<u64, StoreError> {
        let deleted = self
            .conn
            .execute(
                "DELETE FROM operations WHERE id NOT IN \
                 (SELECT id FROM operations ORDER BY started_at DESC, rowid DESC LIMIT ?1)",
                [keep],
            )
            .map_err(sqlite(|| "pruning old operations"))?;
        Ok(deleted as u64)
    }
}
