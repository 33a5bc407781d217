//! Reading just enough of a completion request (model, stream, token limits) without building
//! the whole JSON tree, and clamping its token limit to the persona's budget.

use std::borrow::Cow;

use serde::Deserialize;

/// Which OpenAI endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completions,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
        }
    }
}

/// The fields the gateway acts on; every other field passes through untouched (and unparsed
/// beyond skipping it).
#[derive(Debug, Deserialize)]
pub struct Peek<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Absent: `None`; `null`: `Some(None)` (no limit asked, but the key is there).
    #[serde(default, deserialize_with = "present")]
    pub max_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_completion_tokens: Option<Option<u64>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[derive(Debug, PartialEq, Eq)]
pub enum PeekError {
    /// Not a JSON object with sensible field types.
    Invalid(String),
    MissingModel,
}

impl std::fmt::Display for PeekError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeekError::Invalid(e) => write!(f, "We could not parse the JSON body of your request: {e}"),
            PeekError::MissingModel => f.write_str("you must provide a model parameter"),
        }
    }
}

pub fn peek(body: &[u8]) -> Result<Peek<'_>, PeekError> {
    let p: Peek<'_> = serde_json::from_slice(body).map_err(|e| PeekError::Invalid(e.to_string()))?;
    match &p.model {
        Some(m) if !m.is_empty() => Ok(p),
        _ => Err(PeekError::MissingModel),
    }
}

impl Peek<'_> {
    pub fn streams(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// The body to send upstream with its token limit at most `limit`: unchanged when it asks for
/// no more; with `max_tokens` added when it names no limit; rewritten when it asks for more.
pub fn clamp_tokens(body: &[u8], p: &Peek<'_>, api: Api, limit: u32) -> Result<Option<Vec<u8>>, PeekError> {
    let limit = u64::from(limit);
    let fields: &[(&str, Option<Option<u64>>)] = match api {
        Api::Chat => &[("max_tokens", p.max_tokens), ("max_completion_tokens", p.max_completion_tokens)],
        Api::Completions => &[("max_tokens", p.max_tokens)],
    };
    // a key set to null asks for no limit: it is rewritten like one over the budget
    let too_much = |v: &Option<Option<u64>>| matches!(v, Some(None)) || matches!(v, Some(Some(n)) if *n > limit);
    let named = fields.iter().any(|(_, v)| v.is_some());
    let over = fields.iter().any(|(_, v)| too_much(v));
    if named && !over {
        return Ok(None);
    }
    if !named {
        // the common case, kept cheap: splice the field in after the opening brace
        let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
        let rest = &body[start + 1..];
        let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
        let mut out = Vec::with_capacity(body.len() + 32);
        out.extend_from_slice(b"{\"max_tokens\":");
        out.extend_from_slice(limit.to_string().as_bytes());
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        return Ok(Some(out));
    }
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| PeekError::Invalid(e.to_string()))?;
    for (name, v) in fields {
        if too_much(v) {
            map.insert((*name).to_owned(), limit.into());
        }
    }
    serde_json::to_vec(&map).map(Some).map_err(|e| PeekError::Invalid(e.to_string()))
}

/// The body of a request for an adapter persona, as its base's server takes it: llama.cpp's
/// per-request adapter list, naming this adapter alone (the client's own `lora`, if any, is
/// replaced: an adapter persona's caller selects nothing else on the shared server).
pub fn select_adapter(body: &[u8], id: u32, scale: f64) -> Result<Vec<u8>, PeekError> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| PeekError::Invalid(e.to_string()))?;
    map.insert("lora".to_owned(), serde_json::json!([{ "id": id, "scale": scale }]));
    serde_json::to_vec(&map).map_err(|e| PeekError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn clamp(v: &Value, api: Api, limit: u32) -> Value {
        let bytes = serde_json::to_vec(v).unwrap();
        let p = peek(&bytes).unwrap();
        match clamp_tokens(&bytes, &p, api, limit).unwrap() {
            Some(out) => serde_json::from_slice(&out).unwrap(),
            None => v.clone(),
        }
    }

    #[test]
    fn peeks_model_and_stream_and_refuses_garbage() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"there\""}],"model":"chat-1","stream":true}"#;
        let p = peek(body).unwrap();
        assert_eq!((p.model.as_deref(), p.streams()), (Some("chat-1"), true));
        assert_eq!(peek(br#"{"messages":[]}"#).unwrap_err(), PeekError::MissingModel);
        assert_eq!(peek(br#"{"model":""}"#).unwrap_err(), PeekError::MissingModel);
        assert!(matches!(peek(b"[1,2]"), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"{"model":"a","max_tokens":-1}"#), Err(PeekError::Invalid(_))));
        assert!(!peek(br#"{"model":"a","stream":null}"#).unwrap().streams());
    }

    #[test]
    fn clamps_only_what_exceeds_the_budget() {
        let within = json!({"model": "a", "max_tokens": 10});
        assert_eq!(clamp(&within, Api::Chat, 16), within);
        let over = json!({"model": "a", "max_tokens": 100, "max_completion_tokens": 8, "messages": []});
        let out = clamp(&over, Api::Chat, 16);
        assert_eq!((out["max_tokens"].as_u64(), out["max_completion_tokens"].as_u64()), (Some(16), Some(8)));
        assert_eq!(out["messages"], json!([]));
        let over = json!({"model": "a", "max_completion_tokens": 99});
        assert_eq!(clamp(&over, Api::Chat, 16)["max_completion_tokens"], 16);
        // completions know only max_tokens
        let c = json!({"model": "a", "prompt": "x", "max_tokens": 99});
        assert_eq!(clamp(&c, Api::Completions, 16)["max_tokens"], 16);
        // null names the key but no limit: set, never duplicated
        let null = json!({"model": "a", "max_tokens": null});
        let bytes = serde_json::to_vec(&null).unwrap();
        let out = clamp_tokens(&bytes, &peek(&bytes).unwrap(), Api::Chat, 16).unwrap().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("max_tokens").count(), 1, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["max_tokens"], 16);
    }

    #[test]
    fn an_adapter_request_selects_that_adapter_alone() {
        let body = json!({"model": "pirate", "lora": [{"id": 0, "scale": 9.0}], "max_tokens": 4});
        let out = select_adapter(&serde_json::to_vec(&body).unwrap(), 2, 0.5).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["lora"], json!([{"id": 2, "scale": 0.5}]));
        assert_eq!((v["model"].as_str(), v["max_tokens"].as_u64()), (Some("pirate"), Some(4)));
        assert!(select_adapter(b"[1]", 0, 1.0).is_err());
    }

    #[test]
    fn adds_a_limit_when_none_is_named() {
        let none = json!({"model": "a", "messages": [{"role": "user", "content": "{"}]});
        let out = clamp(&none, Api::Chat, 16);
        assert_eq!(out["max_tokens"], 16);
        assert_eq!(out["messages"], none["messages"]);
        let bytes = b"  {\"model\":\"a\"}";
        let p = peek(bytes).unwrap();
        let out = clamp_tokens(bytes, &p, Api::Chat, 7).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"model": "a", "max_tokens": 7}));
    }
}
