//! The LLM analyst's side effect — one chat completion per cycle — behind a trait, with the
//! real client ([`openai::OpenAiClient`], async-openai against any OpenAI-compatible server)
//! and an in-memory twin ([`ScriptedLlm`]) that answers from a script. `tests/conformance.rs`
//! runs the same script against both.
//!
//! - [`prompt`]: the system prompt, the compact per-persona feature table, the answer schema
//! - [`answer`]: strict parsing and validation of the answer

pub mod answer;
pub mod openai;
pub mod prompt;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use mindmesh_core::config::LlmResponseFormat;

use crate::error::BrainError;

/// One chat completion request: a system and a user message, and the answer's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub system: String,
    pub user: String,
    /// JSON schema of the answer as JSON text (key order kept); sent when `format` is
    /// `JsonSchema`.
    pub schema: String,
    pub format: LlmResponseFormat,
    pub max_completion_tokens: u32,
    pub temperature: f32,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    /// As reported by the server, if it did.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

pub type ChatFuture<'a> = Pin<Box<dyn Future<Output = Result<ChatResponse, BrainError>> + Send + 'a>>;

/// An OpenAI-compatible chat endpoint. Implementations do not time out by themselves: the
/// brain bounds every call with the configured timeout.
pub trait LlmClient: Send + Sync {
    fn chat<'a>(&'a self, req: &'a ChatRequest) -> ChatFuture<'a>;
}

/// One scripted turn of [`ScriptedLlm`] (and of the test servers that mirror it).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer with this content and usage.
    Content { content: String, prompt_tokens: u32, completion_tokens: u32 },
    /// Fail like an HTTP error with this status and message.
    Http { status: u16, message: String },
    /// Wait, then reply.
    Delay { ms: u64, then: Box<Reply> },
}

impl Reply {
    pub fn content(s: impl Into<String>) -> Self {
        Reply::Content { content: s.into(), prompt_tokens: 100, completion_tokens: 20 }
    }
}

/// The in-memory twin: replies from a script, records the requests it saw. An exhausted
/// script answers like a server error.
#[derive(Debug, Default)]
pub struct ScriptedLlm {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    pub fn new(script: impl IntoIterator<Item = Reply>) -> Self {
        ScriptedLlm { script: Mutex::new(script.into_iter().collect()), seen: Mutex::new(Vec::new()) }
    }

    pub fn push(&self, r: Reply) {
        self.script.lock().unwrap_or_else(|e| e.into_inner()).push_back(r);
    }

    pub fn requests(&self) -> Vec<ChatRequest> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl LlmClient for ScriptedLlm {
    fn chat<'a>(&'a self, req: &'a ChatRequest) -> ChatFuture<'a> {
        Box::pin(async move {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(req.clone());
            let next = self.script.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let mut reply = next.unwrap_or(Reply::Http { status: 500, message: "script exhausted".into() });
            loop {
                match reply {
                    Reply::Delay { ms, then } => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        reply = *then;
                    }
                    Reply::Http { status, message } => {
                        return Err(BrainError::LlmTransport(format!("HTTP {status}: {message}")));
                    }
                    Reply::Content { content, prompt_tokens, completion_tokens } => {
                        return Ok(ChatResponse {
                            content,
                            prompt_tokens: Some(prompt_tokens),
                            completion_tokens: Some(completion_tokens),
                        });
                    }
                }
            }
        })
    }
}
