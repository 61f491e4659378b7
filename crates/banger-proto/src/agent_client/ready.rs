//! ready: waiting for a booting guest's agent. Connects (again whenever the connection
//! fails) and sends `hello` until one is answered or the deadline passes. Several hellos
//! may go out on one connection: the first can sit in a buffer until the agent opens its
//! end of the channel, and its late answer is then dropped as a stale frame.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{AgentClient, AgentError};
use crate::agent::Hello;

/// How long one `hello` may go unanswered before another is sent on the same connection.
pub const HELLO_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between failed connection attempts (the VMM may not have created its socket).
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(50);

/// Connects with `connect` and retries `hello` until the agent answers, for at most
/// `deadline`. Returns the connected client and the agent's hello. A protocol mismatch
/// ends the wait at once; other failures are retried and the last one is reported in
/// [`AgentError::NotReady`].
pub async fn wait_ready<F, Fut>(
    connect: F,
    deadline: Duration,
) -> Result<(AgentClient, Hello), AgentError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<AgentClient, AgentError>>,
{
    wait_ready_with(connect, deadline, HELLO_ATTEMPT_TIMEOUT).await
}

pub(super) async fn wait_ready_with<F, Fut>(
    mut connect: F,
    deadline: Duration,
    attempt_timeout: Duration,
) -> Result<(AgentClient, Hello), AgentError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<AgentClient, AgentError>>,
{
    let give_up_at = Instant::now() + deadline;
    let mut last_error = None;
    let not_ready = |last_error: Option<AgentError>| AgentError::NotReady {
        waited: deadline,
        last: last_error.map(Box::new),
    };
    loop {
        let Some(remaining) = time_left(give_up_at) else {
            return Err(not_ready(last_error));
        };
        match tokio::time::timeout(remaining, connect()).await {
            Ok(Ok(client)) => match say_hello_until(&client, give_up_at, attempt_timeout).await {
                Ok(hello) => return Ok((client, hello)),
                Err(error @ AgentError::ProtocolMismatch { .. }) => return Err(error),
                Err(error) => last_error = Some(error),
            },
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => return Err(not_ready(last_error)),
        }
        let Some(remaining) = time_left(give_up_at) else {
            return Err(not_ready(last_error));
        };
        tokio::time::sleep(RECONNECT_INTERVAL.min(remaining)).await;
    }
}

/// Sends `hello` on one connection until it is answered, the connection fails, or time
/// runs out (then the last timeout is returned).
async fn say_hello_until(
    client: &AgentClient,
    give_up_at: Instant,
    attempt_timeout: Duration,
) -> Result<Hello, AgentError> {
    loop {
        let Some(remaining) = time_left(give_up_at) else {
            return Err(AgentError::Timeout(attempt_timeout));
        };
        match client.hello(attempt_timeout.min(remaining)).await {
            Err(AgentError::Timeout(_)) => continue,
            other => return other,
        }
    }
}

fn time_left(give_up_at: Instant) -> Option<Duration> {
    Some(give_up_at.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::agent::{PROTOCOL_VERSION, ReplyBody, RequestOp};
    use crate::agent_client::tests::{FakeAgent, hello_ok};

    fn refused() -> AgentError {
        AgentError::Connect {
            path: "/run/agent.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
    }

    /// The socket is missing for two attempts, then the agent answers.
    #[tokio::test]
    async fn retries_connecting_until_the_endpoint_exists() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let (client, hello) = wait_ready(
            move || {
                let attempt = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        return Err(refused());
                    }
                    Ok(FakeAgent::spawn(|request| match request.op {
                        RequestOp::Hello { .. } => vec![hello_ok(request.id, PROTOCOL_VERSION)],
                        _ => vec![],
                    }))
                }
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(hello.boot_id, "boot-1");
        assert!(!client.is_closed());
    }

    /// The first hello is lost (the agent was not reading yet); a second one on the same
    /// connection is answered. The late answer to the first is dropped.
    #[tokio::test]
    async fn resends_hello_on_the_same_connection() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connects);
        let (client, _) = wait_ready_with(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut seen = 0;
                async move {
                    Ok(FakeAgent::spawn(move |request| {
                        seen += 1;
                        if seen == 1 {
                            return vec![];
                        }
                        vec![hello_ok(request.id, PROTOCOL_VERSION)]
                    }))
                }
            },
            Duration::from_secs(10),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert_eq!(connects.load(Ordering::SeqCst), 1);
        client.hello(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_with_the_last_error() {
        let started = Instant::now();
        let error = wait_ready(|| async { Err(refused()) }, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match error {
            AgentError::NotReady {
                last: Some(last), ..
            } => {
                assert!(matches!(*last, AgentError::Connect { .. }))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_protocol_mismatch_is_not_retried() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connects);
        let error = wait_ready(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok(FakeAgent::spawn(|request| {
                        vec![hello_ok(request.id, PROTOCOL_VERSION + 1)]
                    }))
                }
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, AgentError::ProtocolMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(connects.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_error_reply_to_hello_is_reported() {
        let (client, _agent) = FakeAgent::pair(|request| {
            vec![crate::agent_client::tests::frame(
                request.id,
                ReplyBody::Error {
                    message: "busy".into(),
                },
            )]
        });
        let error = client.hello(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, AgentError::Remote { message } if message == "busy"));
    }
}
