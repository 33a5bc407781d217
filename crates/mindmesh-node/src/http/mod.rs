//! What the API and the gateway share over HTTP, below both: the error type in OpenAI's shape,
//! who a request acts for (its [`auth::Caller`]), and the forwarder that passes a request to
//! the node running its persona on that caller's behalf.

pub mod auth;
mod error;
pub mod forward;
pub mod session;

pub use error::{ApiError, ErrorBody, ErrorDetail};
