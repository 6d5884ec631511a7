//! One module per subcommand.

pub mod agents;
pub mod chat;
pub mod check;
pub mod compact;
pub mod demo;
pub mod demo_tools;
pub mod forget;
pub mod init;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod report;
pub mod responses;
pub mod sql;
pub mod stats;
pub mod tools;
pub mod transfer;
