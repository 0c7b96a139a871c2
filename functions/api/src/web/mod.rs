//! The web module shared by Lasso's browser-facing pages: the page layout, the embedded styles
//! and script, session cookies with CSRF protection, HTML errors and server-rendered charts.
//! The dashboard ([`ui`], under `/ui/`) and the hosted Connect UI ([`connect_ui`], under
//! `/connect-ui/`) are built on it.

pub mod assets;
pub mod chart;
pub mod connect_ui;
pub mod error;
pub mod form;
pub mod layout;
pub mod session;
pub mod ui;

pub use error::{WebError, WebResult};
pub use session::Session;
