//! Long operations (create, start, pull...): each gets an id, reports its stages as
//! events, and runs in its own task so that it is not tied to the RPC request that started
//! it. If the client disconnects, the work carries on and its outcome is still recorded in
//! the in-memory registry of recent operations.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use banger_api::{ApiError, Event, StageState};
use banger_model::progress::ProgressSink;
use banger_store::{OperationRecord, OperationState, StageRecord};

use crate::events::EventSink;

/// How many finished operations the registry remembers; running ones are always kept.
const KEEP_FINISHED: usize = 100;

/// Where operations are made durable. Called from a blocking thread; a failure is logged
/// and does not fail the operation, whose real outcome is the work's.
pub trait OpJournal: Send + Sync + std::fmt::Debug {
    fn started(&self, operation: &OperationRecord) -> Result<(), String>;
    fn finished(&self, operation: &OperationRecord) -> Result<(), String>;
}

/// An operation id, `op-` followed by short random hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpId(String);

impl OpId {
    fn generate() -> OpId {
        OpId(format!("op-{:08x}", fastrand::u32(..)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Recent operations, oldest first, in the same shape the store keeps them.
#[derive(Debug)]
pub struct OpRegistry {
    ops: Mutex<VecDeque<OperationRecord>>,
    journal: Option<Arc<dyn OpJournal>>,
}

impl OpRegistry {
    /// A registry that also writes every operation to `journal`.
    pub fn new(journal: Arc<dyn OpJournal>) -> OpRegistry {
        OpRegistry {
            ops: Mutex::new(VecDeque::new()),
            journal: Some(journal),
        }
    }

    /// A registry that keeps operations in memory only.
    pub fn in_memory() -> OpRegistry {
        OpRegistry {
            ops: Mutex::new(VecDeque::new()),
            journal: None,
        }
    }

    /// The record of operation `id`, if it is recent enough to be remembered.
    pub fn get(&self, id: &str) -> Option<OperationRecord> {
        self.lock().iter().find(|op| op.id == id).cloned()
    }

    /// Every remembered operation, oldest first.
    pub fn recent(&self) -> Vec<OperationRecord> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<OperationRecord>> {
        // A panic while holding this lock leaves at worst one stale record, which is
        // better than refusing to serve.
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self, kind: &str, target: &str) -> OperationRecord {
        let mut ops = self.lock();
        let id = loop {
            let id = OpId::generate();
            if !ops.iter().any(|op| op.id == id.as_str()) {
                break id;
            }
        };
        let record = OperationRecord {
            id: id.to_string(),
            kind: kind.to_string(),
            target: target.to_string(),
            state: OperationState::Running,
            stages: Vec::new(),
            error: None,
            started_at: jiff::Timestamp::now().to_string(),
            finished_at: None,
        };
        ops.push_back(record.clone());
        record
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut OperationRecord)) {
        if let Some(op) = self.lock().iter_mut().find(|op| op.id == id) {
            change(op);
        }
    }

    /// Records the outcome and returns the final record.
    fn finish(&self, id: &str, error: Option<&ApiError>) -> Option<OperationRecord> {
        let mut ops = self.lock();
        let finished = ops.iter_mut().find(|op| op.id == id).map(|op| {
            op.state = match error {
                None => OperationState::Succeeded,
                Some(_) => OperationState::Failed,
            };
            op.error = error.map(|e| e.message.clone());
            op.finished_at = Some(jiff::Timestamp::now().to_string());
            op.clone()
        });
        let done = ops
            .iter()
            .filter(|op| op.state != OperationState::Running)
            .count();
        let mut excess = done.saturating_sub(KEEP_FINISHED);
        ops.retain(|op| {
            if excess > 0 && op.state != OperationState::Running {
                excess -= 1;
                false
            } else {
                true
            }
        });
        finished
    }

    /// Hands `record` to the journal on a blocking thread, logging a failure.
    async fn journal(&self, record: OperationRecord, first: bool) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let id = record.id.clone();
        let written = tokio::task::spawn_blocking(move || {
            if first {
                journal.started(&record)
            } else {
                journal.finished(&record)
            }
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(message)) => tracing::warn!(op = %id, %message, "operation not persisted"),
            Err(error) => tracing::warn!(op = %id, %error, "operation not persisted"),
        }
    }
}

/// The [`ProgressSink`] handed to an operation's work: records stages in the registry and
/// streams them to the requester.
#[derive(Debug)]
pub struct OpProgress {
    id: OpId,
    started: Instant,
    registry: Arc<OpRegistry>,
    events: EventSink,
}

impl OpProgress {
    pub fn op_id(&self) -> &OpId {
        &self.id
    }

    /// The requester's event sink, for work that streams output as well as stages.
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn emit(&self, stage: &str, state: StageState, elapsed_ms: u64, detail: Option<&str>) {
        tracing::info!(op = %self.id, stage, state = ?state, elapsed_ms, detail, "stage");
        self.events.emit(Event::Stage {
            op: self.id.to_string(),
            stage: stage.to_string(),
            state,
            elapsed_ms,
            detail: detail.map(str::to_string),
        });
    }
}

impl ProgressSink for OpProgress {
    fn stage_started(&self, stage: &str) {
        let elapsed_ms = self.elapsed_ms();
        self.registry.update(self.id.as_str(), |op| {
            op.stages.push(StageRecord {
                name: stage.to_string(),
                started_ms: elapsed_ms,
                finished_ms: None,
                detail: None,
            });
        });
        self.emit(stage, StageState::Started, elapsed_ms, None);
    }

    fn stage_done(&self, stage: &str, detail: Option<&str>) {
        let elapsed_ms = self.elapsed_ms();
        self.registry.update(self.id.as_str(), |op| {
            let open = op
                .stages
                .iter_mut()
                .rev()
                .find(|s| s.name == stage && s.finished_ms.is_none());
            match open {
                Some(record) => {
                    record.finished_ms = Some(elapsed_ms);
                    record.detail = detail.map(str::to_string);
                }
                // Done without a start: record it as an instant stage.
                None => op.stages.push(StageRecord {
                    name: stage.to_string(),
                    started_ms: elapsed_ms,
                    finished_ms: Some(elapsed_ms),
                    detail: detail.map(str::to_string),
                }),
            }
        });
        self.emit(stage, StageState::Done, elapsed_ms, detail);
    }

    fn stage_bytes(&self, stage: &str, done: u64, total: Option<u64>) {
        // Not recorded: the stage's `done` detail says how much moved in the end.
        self.events.emit(Event::Bytes {
            op: self.id.to_string(),
            stage: stage.to_string(),
            done,
            total,
            elapsed_ms: self.elapsed_ms(),
        });
    }
}

/// Runs `work` as operation `kind` on `target` (e.g. `vm.create` on `web`): announces its
/// id, runs it in its own task, records and persists the outcome, and returns it.
/// Dropping the returned future (the client went away) does not stop the work. A failure
/// carries the operation id.
pub async fn run_op<T, F, Fut>(
    registry: &Arc<OpRegistry>,
    kind: &str,
    target: &str,
    events: &EventSink,
    work: F,
) -> Result<T, ApiError>
where
    F: FnOnce(Arc<OpProgress>) -> Fut,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let record = registry.begin(kind, target);
    let id = OpId(record.id.clone());
    tracing::info!(op = %id, kind, target, "operation started");
    events.emit(Event::OpStarted { op: id.to_string() });
    let progress = Arc::new(OpProgress {
        id: id.clone(),
        started: Instant::now(),
        registry: Arc::clone(registry),
        events: events.clone(),
    });
    // Everything logged while the work runs carries the op id (`op{op=...}`), so
    // `banger logs --op ID` finds the operation's lines in the daemon log.
    let work = tracing::Instrument::instrument(work(progress), tracing::info_span!("op", op = %id));
    let registry = Arc::clone(registry);
    let task_id = id.clone();
    let task = tokio::spawn(async move {
        registry.journal(record, true).await;
        // The work runs in a task of its own so that a panic in it is still recorded
        // as this operation's failure.
        let result = match tokio::spawn(work).await {
            Ok(result) => result,
            Err(join_error) => Err(ApiError::operation_failed(format!(
                "the operation stopped unexpectedly: {join_error}"
            ))),
        };
        let result = result.map_err(|error| error.with_op(task_id.as_str()));
        match &result {
            Ok(_) => tracing::info!(op = %task_id, "operation succeeded"),
            Err(error) => {
                tracing::warn!(op = %task_id, code = %error.code, message = %error.message, "operation failed");
            }
        }
        if let Some(finished) = registry.finish(task_id.as_str(), result.as_ref().err()) {
            registry.journal(finished, false).await;
        }
        result
    });
    match task.await {
        Ok(result) => result,
        Err(join_error) => Err(ApiError::operation_failed(format!(
            "the operation stopped unexpectedly: {join_error}"
        ))
        .with_op(id.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::ErrorCode;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// Remembers what it was asked to persist.
    #[derive(Debug, Default)]
    struct RecordingJournal {
        calls: Mutex<Vec<(&'static str, OperationRecord)>>,
    }

    impl OpJournal for RecordingJournal {
        fn started(&self, operation: &OperationRecord) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(("started", operation.clone()));
            Ok(())
        }

        fn finished(&self, operation: &OperationRecord) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(("finished", operation.clone()));
            Ok(())
        }
    }

    async fn wait_until_finished(registry: &OpRegistry, id: &str) -> OperationRecord {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let record = registry.get(id).expect("operation is recorded");
            if record.state != OperationState::Running {
                return record;
            }
            assert!(Instant::now() < deadline, "operation {id} never finished");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn stages_become_events_records_and_journal_entries() {
        let journal = Arc::new(RecordingJournal::default());
        let registry = Arc::new(OpRegistry::new(journal.clone()));
        let (sink, mut rx) = EventSink::channel();
        let out = run_op(&registry, "test.op", "web", &sink, |progress| async move {
            progress.stage_started("fetch");
            progress.stage_done("fetch", Some("3 MiB"));
            Ok::<_, ApiError>(7)
        })
        .await
        .unwrap();
        assert_eq!(out, 7);
        let Some(Event::OpStarted { op }) = rx.recv().await else {
            panic!("first event is OpStarted");
        };
        assert!(op.starts_with("op-") && op.len() == 11, "{op}");
        let mut stages = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Stage {
                op: stage_op,
                stage,
                state,
                detail,
                ..
            } = event
            {
                assert_eq!(stage_op, op);
                stages.push((stage, state, detail));
            }
        }
        assert_eq!(
            stages,
            vec![
                ("fetch".to_string(), StageState::Started, None),
                (
                    "fetch".to_string(),
                    StageState::Done,
                    Some("3 MiB".to_string())
                ),
            ]
        );
        let record = registry.get(&op).unwrap();
        assert_eq!(
            (record.kind.as_str(), record.target.as_str()),
            ("test.op", "web")
        );
        assert_eq!(record.state, OperationState::Succeeded);
        assert_eq!(record.stages.len(), 1);
        assert_eq!(record.stages[0].name, "fetch");
        assert!(record.stages[0].finished_ms.is_some());
        assert_eq!(record.stages[0].detail.as_deref(), Some("3 MiB"));
        assert!(record.finished_at.is_some());
        let calls = journal.calls.lock().unwrap();
        let kinds: Vec<(&str, OperationState)> =
            calls.iter().map(|(call, op)| (*call, op.state)).collect();
        assert_eq!(
            kinds,
            [
                ("started", OperationState::Running),
                ("finished", OperationState::Succeeded)
            ]
        );
        assert_eq!(calls[1].1, record);
    }

    #[tokio::test]
    async fn failure_carries_the_op_id() {
        let registry = Arc::new(OpRegistry::in_memory());
        let err = run_op(
            &registry,
            "test.fail",
            "",
            &EventSink::discard(),
            |_| async { Err::<(), _>(ApiError::operation_failed("disk full")) },
        )
        .await
        .unwrap_err();
        let op = err.op.clone().expect("error names its operation");
        assert_eq!(err.code, ErrorCode::OperationFailed);
        let record = registry.get(&op).unwrap();
        assert_eq!(record.state, OperationState::Failed);
        assert_eq!(record.error.as_deref(), Some("disk full"));
    }

    #[tokio::test]
    async fn a_panic_is_recorded_as_a_failure() {
        let registry = Arc::new(OpRegistry::in_memory());
        let explode = true;
        let err = run_op(
            &registry,
            "test.panic",
            "",
            &EventSink::discard(),
            |_| async move {
                if explode {
                    panic!("boom");
                }
                Ok::<(), ApiError>(())
            },
        )
        .await
        .unwrap_err();
        let op = err.op.clone().unwrap();
        assert_eq!(registry.get(&op).unwrap().state, OperationState::Failed);
    }

    #[tokio::test]
    async fn work_survives_the_requester_going_away() {
        let registry = Arc::new(OpRegistry::in_memory());
        let (sink, mut rx) = EventSink::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let request = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move {
                run_op(&registry, "test.long", "vm", &sink, |progress| async move {
                    progress.stage_started("wait");
                    release_rx
                        .await
                        .map_err(|_| ApiError::operation_failed("dropped"))?;
                    progress.stage_done("wait", None);
                    Ok(())
                })
                .await
            }
        });
        let Some(Event::OpStarted { op }) = rx.recv().await else {
            panic!("first event is OpStarted");
        };
        // The requester disconnects: its future (and its event receiver) is dropped.
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        drop(rx);
        assert_eq!(registry.get(&op).unwrap().state, OperationState::Running);
        release_tx.send(()).unwrap();
        let record = wait_until_finished(&registry, &op).await;
        assert_eq!(record.state, OperationState::Succeeded);
        assert_eq!(record.stages.len(), 1);
        assert!(record.stages[0].finished_ms.is_some());
    }

    #[test]
    fn finished_ops_are_evicted_oldest_first_but_running_ones_stay() {
        let registry = OpRegistry::in_memory();
        let running = registry.begin("long", "");
        let first = registry.begin("short", "");
        registry.finish(&first.id, None);
        for _ in 0..KEEP_FINISHED {
            let op = registry.begin("short", "");
            registry.finish(&op.id, None);
        }
        assert!(registry.get(&first.id).is_none());
        assert!(registry.get(&running.id).is_some());
        assert_eq!(registry.recent().len(), KEEP_FINISHED + 1);
    }
}
