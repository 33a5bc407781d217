//! Analysts: from features to one proposed decision per persona. Guardrails run after any of
//! them.
//! - [`builtin`]: the embedded statistical analyst (the default)
//! - [`naive`]: the fixed-threshold baseline
//! - [`allocate`]: the built-in allocation policy (budgets), after the built-in analyst
//! - [`maintenance`]: scheduled maintenance (restart after N inferences or N hours), before it
//!
//! The LLM analyst lives in [`crate::llm`].

pub mod allocate;
pub mod builtin;
pub mod maintenance;
pub mod naive;
