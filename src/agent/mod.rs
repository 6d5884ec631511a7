//! The async layer: what an agent does with the store. Store calls that may wait run
//! on tokio's blocking pool; the store itself stays synchronous.

mod batch;
mod responses;
mod tools;

pub use responses::{
    FALLBACK_LONG, FALLBACK_OTHER, FALLBACK_QUESTION, FnGenerator, GenerationError, Optimization,
    Reply, Responder, ResponseConfig, ResponseGenerator, fallback_reply, generator_fn, optimize,
};
pub use tools::{
    NEVER_CACHED, ParallelOptions, Tool, ToolConfig, ToolError, ToolOutcome, ToolRegistry,
    ToolRequest, Tools,
};
