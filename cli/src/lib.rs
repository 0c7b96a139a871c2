//! The `lasso` command line: migrations, environments, `lasso dev` (the whole system in one
//! process on local defaults), and `lasso compile` / `lasso deploy` for script projects.

pub mod deploy;
pub mod dev;
pub mod dryrun;
pub mod emulate;
pub mod event_source;
pub mod workers;
