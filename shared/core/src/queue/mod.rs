//! The Postgres task queue (schema `queue`). Every transition is one conditional UPDATE, so a
//! duplicate delivery, a retried invocation or a crashed worker loses the race and does
//! nothing.

pub mod completions;
mod payload;
pub mod runs;
pub mod schedules;
pub mod tasks;

pub use payload::{FunctionPayload, ModelResult, Payload};
pub use tasks::{NewTask, Task, TaskKind, TaskMessage, TaskState};
