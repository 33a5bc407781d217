//! Analysts: from features to one proposed decision per persona. Guardrails run after any of
//! them.
//! - [`builtin`]: the embedded statistical analyst (the default)
//! - [`naive`]: the fixed-threshold baseline
//!
//! The LLM analyst lives in [`crate::llm`].

pub mod builtin;
pub mod naive;
