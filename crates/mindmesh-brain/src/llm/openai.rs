//! The real client: async-openai 0.43 against any OpenAI-compatible endpoint (OpenAI,
//! llama.cpp's server, vLLM, Ollama).
//!
//! - The reqwest client is built fallibly and handed to `Client::build`, because
//!   `Client::with_config` panics on hosts without CA certificates.
//! - The transport is async-openai's plain `ReqwestService`, without its default retry layer
//!   (three retries of 429/5xx with backoff): one request per cycle, and a failure falls back
//!   at once instead of stalling the cycle.
//! - The request body is our own type (async-openai's `byot`), so the answer schema travels as
//!   the JSON text we wrote, with `reason` before `action`; a `serde_json::Value` would have
//!   sorted its keys. The answer is async-openai's `CreateChatCompletionResponse`.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::CreateChatCompletionResponse;
use mindmesh_core::config::{LlmConfig, LlmResponseFormat};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{ChatFuture, ChatRequest, ChatResponse, LlmClient};
use crate::error::BrainError;

/// Longest server error message kept in a fallback record.
const MAX_ERROR_TEXT: usize = 300;

pub struct OpenAiClient {
    client: Client<OpenAIConfig>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient").finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client for `cfg.base_url`. Fails (instead of panicking) when no HTTP client can be
    /// built, e.g. without TLS roots; the brain then stays with the built-in analyst.
    pub fn new(cfg: &LlmConfig) -> Result<Self, BrainError> {
        let http = reqwest::Client::builder()
            // the brain bounds each call with its own timeout; this one only catches leaks
            .timeout(Duration::from_millis(cfg.timeout_ms.saturating_mul(2).max(1000)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(100, 10_000)))
            .build()
            .map_err(|e| BrainError::LlmClient(e.to_string()))?;
        // local servers need no key, but an empty bearer header upsets some proxies
        let config = OpenAIConfig::new()
            .with_api_base(cfg.base_url.trim_end_matches('/'))
            .with_api_key(cfg.api_key.clone().unwrap_or_else(|| "none".into()));
        let client = Client::build(http.clone(), config).with_http_service(ReqwestService::new(http));
        Ok(OpenAiClient { client })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: [Message<'a>; 2],
    max_completion_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Format<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Format<'a> {
    JsonSchema { json_schema: JsonSchema<'a> },
    JsonObject,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    description: &'static str,
    strict: bool,
    schema: &'a RawValue,
}

fn short(s: &str) -> String {
    let mut s = s.replace(['\n', '\r'], " ");
    mindmesh_core::event::truncate_utf8(&mut s, MAX_ERROR_TEXT);
    s
}

fn map_error(e: OpenAIError) -> BrainError {
    match e {
        OpenAIError::ApiError(api) => BrainError::LlmTransport(short(&format!("HTTP {api}"))),
        OpenAIError::Reqwest(e) => BrainError::LlmTransport(short(&e.to_string())),
        OpenAIError::JSONDeserialize(e, body) => {
            BrainError::LlmInvalid(short(&format!("not a chat completion ({e}): {body}")))
        }
        other => BrainError::LlmTransport(short(&other.to_string())),
    }
}

impl LlmClient for OpenAiClient {
    fn chat<'a>(&'a self, req: &'a ChatRequest) -> ChatFuture<'a> {
        Box::pin(async move {
            let schema: Box<RawValue> = RawValue::from_string(req.schema.clone())
                .map_err(|e| BrainError::LlmClient(format!("answer schema is not JSON: {e}")))?;
            let response_format = match req.format {
                LlmResponseFormat::JsonSchema => Some(Format::JsonSchema {
                    json_schema: JsonSchema {
                        name: "mindmesh_plan",
                        description: "one decision per persona",
                        strict: true,
                        schema: &schema,
                    },
                }),
                LlmResponseFormat::JsonObject => Some(Format::JsonObject),
                LlmResponseFormat::None => None,
            };
            let body = Body {
                model: &req.model,
                messages: [
                    Message { role: "system", content: &req.system },
                    Message { role: "user", content: &req.user },
                ],
                max_completion_tokens: req.max_completion_tokens,
                temperature: req.temperature,
                seed: req.seed,
                response_format,
                stream: false,
            };
            let resp: CreateChatCompletionResponse = self.client.chat().create_byot(body).await.map_err(map_error)?;
            let choice = resp.choices.into_iter().next().ok_or_else(|| BrainError::LlmInvalid("no choices".into()))?;
            let content = match (choice.message.content, choice.message.refusal) {
                (Some(c), _) if !c.trim().is_empty() => c,
                (_, Some(r)) => return Err(BrainError::LlmInvalid(short(&format!("refused: {r}")))),
                _ => return Err(BrainError::LlmInvalid("empty answer".into())),
            };
            Ok(ChatResponse {
                content,
                prompt_tokens: resp.usage.as_ref().map(|u| u.prompt_tokens),
                completion_tokens: resp.usage.as_ref().map(|u| u.completion_tokens),
            })
        })
    }
}
