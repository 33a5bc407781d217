//! The real client: async-openai 0.43 against any OpenAI-compatible endpoint (OpenAI,
//! llama.cpp's server, vLLM, Ollama). The reqwest client is built fallibly and handed to
//! `Client::build`, because `Client::with_config` panics on hosts without CA certificates.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    ResponseFormat, ResponseFormatJsonSchema,
};
use mindmesh_core::config::{LlmConfig, LlmResponseFormat};

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
        let mut config = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/'));
        // local servers need no key, but an empty bearer header upsets some proxies
        config = config.with_api_key(cfg.api_key.clone().unwrap_or_else(|| "none".into()));
        Ok(OpenAiClient { client: Client::build(http, config) })
    }
}

fn short(s: &str) -> String {
    let mut s = s.replace(['\n', '\r'], " ");
    mindmesh_core::event::truncate_utf8(&mut s, MAX_ERROR_TEXT);
    s
}

fn map_error(e: OpenAIError) -> BrainError {
    match e {
        OpenAIError::ApiError(api) => BrainError::LlmTransport(short(&format!("HTTP {}", api))),
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
            let invalid = |e: OpenAIError| BrainError::LlmClient(e.to_string());
            let mut args = CreateChatCompletionRequestArgs::default();
            args.model(req.model.clone())
                .messages([
                    ChatCompletionRequestSystemMessageArgs::default()
                        .content(req.system.clone())
                        .build()
                        .map_err(invalid)?
                        .into(),
                    ChatCompletionRequestUserMessageArgs::default().content(req.user.clone()).build().map_err(invalid)?.into(),
                ])
                .max_completion_tokens(req.max_completion_tokens)
                .temperature(req.temperature);
            if let Some(seed) = req.seed {
                args.seed(seed);
            }
            match req.format {
                LlmResponseFormat::JsonSchema => {
                    args.response_format(ResponseFormat::JsonSchema {
                        json_schema: ResponseFormatJsonSchema {
                            description: Some("one decision per persona".into()),
                            name: "mindmesh_plan".into(),
                            schema: req.schema.clone(),
                            strict: Some(true),
                        },
                    });
                }
                LlmResponseFormat::JsonObject => {
                    args.response_format(ResponseFormat::JsonObject);
                }
                LlmResponseFormat::None => {}
            }
            let request = args.build().map_err(invalid)?;
            let resp = self.client.chat().create(request).await.map_err(map_error)?;
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
