//! The channel through which a handler streams [`Event`]s to the connection that asked.
//!
//! A sink is cheap to clone and never blocks, so a synchronous `ProgressSink` can use it.
//! When the client is gone the events are dropped silently: the work does not depend on
//! anyone listening.

use std::sync::{Arc, Mutex, PoisonError};

use banger_api::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::input::RequestInput;

/// Sends events to one request's connection.
#[derive(Debug, Clone)]
pub struct EventSink {
    // Unbounded because emitting must not block a synchronous caller; events are small
    // and a request's receiver is drained as the connection writes them.
    tx: Option<mpsc::UnboundedSender<Event>>,
    /// Fired when the requesting client goes away; streaming handlers (exec, logs
    /// --follow) stop on it. Long operations ignore it: they outlive their requester.
    gone: CancellationToken,
    /// The request's input stream (`vm exec` stdin, `vm cp` tar), for the one handler
    /// that takes it.
    input: Arc<Mutex<Option<RequestInput>>>,
}

impl EventSink {
    /// A sink and the receiver the connection drains.
    pub fn channel() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EventSink {
                tx: Some(tx),
                gone: CancellationToken::new(),
                input: Arc::default(),
            },
            rx,
        )
    }

    /// A sink nobody reads, for work started without a requester.
    pub fn discard() -> EventSink {
        EventSink {
            tx: None,
            gone: CancellationToken::new(),
            input: Arc::default(),
        }
    }

    /// Sends `event` if the requester is still there.
    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            // An error only means the connection has gone away.
            let _ = tx.send(event);
        }
    }

    /// Gives the request an input stream (the connection does, before dispatching).
    pub fn set_input(&self, input: RequestInput) {
        *self.input.lock().unwrap_or_else(PoisonError::into_inner) = Some(input);
    }

    /// The request's input: what the client sends as input frames, ending at its
    /// end-of-input frame (or when it leaves). Empty for a request without a client.
    pub fn take_input(&self) -> RequestInput {
        self.input
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(RequestInput::empty)
    }

    /// Marks the requesting client as gone.
    pub fn client_gone(&self) {
        self.gone.cancel();
    }

    /// Completes when the requesting client has gone away.
    pub async fn until_client_gone(&self) {
        self.gone.cancelled().await;
    }
}
