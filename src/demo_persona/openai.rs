//! OpenAI's wire shapes, as far as the persona reads and writes them. Requests ignore fields
//! they do not use (temperature, tools, …) as a lenient server should; responses borrow their
//! strings so that serialising an answer allocates only the output buffer.

use serde::{Deserialize, Serialize};

use crate::demo_persona::tokens::count_words;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A part of a multi-part message; only text parts count.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

impl MessageContent {
    fn words(&self) -> u64 {
        match self {
            MessageContent::Text(t) => count_words(t),
            MessageContent::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).map(count_words).sum(),
        }
    }

    /// The text, when it is a plain string or a single text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            MessageContent::Text(t) => Some(t),
            MessageContent::Parts(parts) => parts.iter().find_map(|p| p.text.as_deref()),
        }
    }
}

impl ChatRequest {
    pub fn prompt_tokens(&self) -> u64 {
        self.messages.iter().filter_map(|m| m.content.as_ref()).map(MessageContent::words).sum()
    }

    pub fn last_user_message(&self) -> Option<&str> {
        self.messages.iter().rev().find(|m| m.role == "user").and_then(|m| m.content.as_ref()?.as_text())
    }

    /// `max_completion_tokens` replaces `max_tokens` in OpenAI's API; honour either.
    pub fn requested_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// The legacy `POST /v1/completions` request.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<Prompt>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u64>),
    TokenLists(Vec<Vec<u64>>),
}

impl Prompt {
    pub fn tokens(&self) -> u64 {
        match self {
            Prompt::Text(t) => count_words(t),
            Prompt::Texts(ts) => ts.iter().map(|t| count_words(t)).sum(),
            Prompt::Tokens(ts) => ts.len() as u64,
            Prompt::TokenLists(ls) => ls.iter().map(|l| l.len() as u64).sum(),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Prompt::Text(t) => Some(t),
            Prompt::Texts(ts) => ts.last().map(String::as_str),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// Fields every answer and every chunk carries.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

pub const FINGERPRINT: &str = "fp_mindmesh_demo";

#[derive(Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: &'static str,
    pub choices: [ChatChoice<'a>; 1],
    pub usage: Usage,
}

#[derive(Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

#[derive(Serialize)]
pub struct AssistantMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
    pub refusal: Option<()>,
}

impl<'a> ChatCompletion<'a> {
    pub fn new(env: Envelope<'a>, content: &'a str, finish_reason: &'static str, usage: Usage) -> Self {
        ChatCompletion {
            id: env.id,
            object: "chat.completion",
            created: env.created,
            model: env.model,
            system_fingerprint: FINGERPRINT,
            choices: [ChatChoice {
                index: 0,
                message: AssistantMessage { role: "assistant", content, refusal: None },
                logprobs: None,
                finish_reason,
            }],
            usage,
        }
    }
}

#[derive(Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// A body whose choices are a slice: a streamed chat chunk, or a legacy text completion (whole
/// or as one streamed chunk, the same shape in OpenAI's API). Only `object` tells them apart.
#[derive(Serialize)]
pub struct ChoiceList<'a, C> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: &'static str,
    pub choices: &'a [C],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

pub type ChatChunk<'a> = ChoiceList<'a, ChunkChoice<'a>>;
pub type TextCompletion<'a> = ChoiceList<'a, TextChoice<'a>>;

impl<'a, C> ChoiceList<'a, C> {
    fn with_object(object: &'static str, env: Envelope<'a>, choices: &'a [C], usage: Option<Usage>) -> Self {
        ChoiceList {
            id: env.id,
            object,
            created: env.created,
            model: env.model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        }
    }
}

impl<'a> ChatChunk<'a> {
    pub fn new(env: Envelope<'a>, choices: &'a [ChunkChoice<'a>], usage: Option<Usage>) -> Self {
        Self::with_object("chat.completion.chunk", env, choices, usage)
    }
}

impl<'a> TextCompletion<'a> {
    pub fn new(env: Envelope<'a>, choices: &'a [TextChoice<'a>], usage: Option<Usage>) -> Self {
        Self::with_object("text_completion", env, choices, usage)
    }
}

#[derive(Serialize)]
pub struct TextChoice<'a> {
    pub text: &'a str,
    pub index: u32,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: [Model<'a>; 1],
}

#[derive(Serialize)]
pub struct Model<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_multipart_messages() {
        let r: ChatRequest = serde_json::from_str(
            r#"{"model":"m","temperature":0.2,"messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"one two three"},{"type":"image_url","image_url":{"url":"x"}}]},
                {"role":"assistant","content":null,"tool_calls":[]}],
                "max_tokens":9,"max_completion_tokens":4,"stream":null}"#,
        )
        .unwrap();
        assert_eq!(r.prompt_tokens(), 5);
        assert_eq!(r.requested_tokens(), Some(4));
        assert_eq!(r.last_user_message(), Some("one two three"));
        assert_eq!(r.stream, None);
    }

    #[test]
    fn legacy_prompts_in_every_form() {
        for (src, n) in [(r#""a b c""#, 3), (r#"["a b","c"]"#, 3), ("[1,2,3,4]", 4), ("[[1,2],[3]]", 3)] {
            let r: CompletionRequest = serde_json::from_str(&format!(r#"{{"prompt":{src}}}"#)).unwrap();
            assert_eq!(r.prompt.unwrap().tokens(), n, "{src}");
        }
    }
}
