//! The `lasso` command line: migrations, environments, and `lasso dev` (the whole system in one
//! process on local defaults).

pub mod dev;
pub mod event_source;
pub mod workers;
