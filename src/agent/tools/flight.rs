//! What runs a tool call: contained (a tool's error or panic becomes a [`Failure`],
//! a cancelled batch aborts its tasks) and shared (identical calls in flight in this
//! process, on one store, run once: [`Flight`]).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::sync::OnceCell;

use super::Tool;
use crate::agent::batch::lock;
use crate::error::Error;

/// What identical calls in flight share: the result, or why there is none.
pub(super) type Shared = std::result::Result<Value, Failure>;

#[derive(Debug, Clone)]
pub(super) enum Failure {
    Failed(String),
    Panicked(String),
    /// The result could not be stored; the message of the store's error.
    Store(String),
}

/// Calls in flight in this process, by (store identity, cache key): two stores opened
/// on one database share their flights. An entry lives while its call runs; everyone
/// who joins it gets the one result.
pub(super) type FlightKey = (String, [u8; 32]);
static IN_FLIGHT: LazyLock<Mutex<HashMap<FlightKey, Arc<OnceCell<Shared>>>>> =
    LazyLock::new(Default::default);

impl Failure {
    pub(super) fn into_error(self, tool: &str) -> Error {
        let tool = tool.to_string();
        match self {
            Failure::Failed(message) => Error::ToolFailed { tool, message },
            Failure::Panicked(message) => Error::ToolPanicked { tool, message },
            Failure::Store(message) => Error::ToolFailed {
                tool,
                message: format!("its result could not be cached: {message}"),
            },
        }
    }
}

/// Runs a tool, turning its error or its panic into a [`Failure`].
pub(super) async fn run_contained(
    tool: &dyn Tool,
    params: Value,
) -> std::result::Result<Value, Failure> {
    match CatchUnwind(tool.execute(params)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Failed(e.to_string())),
        Err(message) => Err(Failure::Panicked(message)),
    }
}

/// A future that turns a panic while polling the inner future into an error.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload_message(payload.as_ref()))),
        }
    }
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// A place in a flight: joined on creation, left on drop (also when the call is
/// cancelled). The last one out of a flight, or anyone once it has its result,
/// removes the flight from the map, so the map holds only calls in progress.
pub(super) struct Flight {
    key: FlightKey,
    pub(super) cell: Arc<OnceCell<Shared>>,
}

impl Flight {
    pub(super) fn join(key: FlightKey) -> Flight {
        let cell = lock(&IN_FLIGHT).entry(key.clone()).or_default().clone();
        Flight { key, cell }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flights = lock(&IN_FLIGHT);
        let ours = flights
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Two references: the map's and ours, so nobody else is waiting.
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 2) {
            flights.remove(&self.key);
        }
    }
}

pub(super) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload_message(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}

/// A task handle that aborts its task when dropped (e.g. when the batch's caller is
/// cancelled), so no request outlives the batch.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
