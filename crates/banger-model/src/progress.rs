//! How long operations report their stages. Services take a `&dyn ProgressSink`; the
//! daemon's implementation turns calls into protocol events, tests record them.

/// `vm create`'s first stage. Its `stage_done` detail is the VM's name: from then on the
/// VM exists, and clients (an interrupted `vm run --rm`) may act on that name.
pub const RESERVE_NAME_STAGE: &str = "reserve name";

/// Receives the stages of a long operation as they start and finish.
pub trait ProgressSink: Send + Sync {
    /// A stage (e.g. `resolve image`, `boot`) started.
    fn stage_started(&self, stage: &str);
    /// The stage finished; `detail` is a short note such as a size or a version.
    fn stage_done(&self, stage: &str, detail: Option<&str>);
    /// Bytes moved so far by a running stage (a download), with the total when known.
    /// Sinks that show no byte counts ignore it; callers throttle it themselves.
    fn stage_bytes(&self, _stage: &str, _done: u64, _total: Option<u64>) {}
}

/// A sink that drops everything, for callers that do not report progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn stage_started(&self, _stage: &str) {}
    fn stage_done(&self, _stage: &str, _detail: Option<&str>) {}
}

/// Runs `work` as a stage named `stage`, reporting start and end.
pub async fn stage<T, E, F>(sink: &dyn ProgressSink, stage: &str, work: F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    sink.stage_started(stage);
    let result = work.await;
    if result.is_ok() {
        sink.stage_done(stage, None);
    }
    result
}
