//! One module per subcommand.

pub mod agents;
pub mod check;
pub mod init;
pub mod memory;
pub mod responses;
pub mod sql;
pub mod tools;
