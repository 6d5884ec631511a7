//! The async layer: what an agent does with the store. Store calls that may wait run
//! on tokio's blocking pool; the store itself stays synchronous.

mod batch;
mod tools;

pub use tools::{
    NEVER_CACHED, ParallelOptions, Tool, ToolConfig, ToolError, ToolOutcome, ToolRegistry,
    ToolRequest, Tools,
};
