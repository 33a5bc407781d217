//! What the API and the gateway share over HTTP, below both: the error type in OpenAI's shape
//! and the forwarder that passes a request to the node running its persona.

mod error;
pub mod forward;

pub use error::{ApiError, ErrorBody, ErrorDetail};
