//! `POST /v1/chat/completions` and `POST /v1/completions`: whole answers or SSE streams (one
//! chunk per token, then a finish chunk, an optional usage chunk and `data: [DONE]`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::demo_persona::faults::{choose_fault, compute, delay, inject, invalid_request};
use crate::demo_persona::http::tag;
use crate::demo_persona::openai::{
    ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, CompletionRequest, Delta, Envelope, TextChoice,
    TextCompletion, Usage,
};
use crate::demo_persona::state::{AppState, InFlight};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Text,
}

/// What both endpoints need from a parsed request.
struct Ask<'a> {
    model: Option<String>,
    prompt_tokens: u64,
    requested_tokens: Option<u64>,
    stream: bool,
    include_usage: bool,
    user_message: Option<&'a str>,
}

pub async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let number = state.count_request();
    let busy = state.enter();
    let mut req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return tag(&state, bad_json(&e)),
    };
    if req.messages.is_empty() {
        return tag(&state, invalid_request("'messages' must contain at least one message", Some("messages")));
    }
    let model = req.model.take();
    let ask = Ask {
        model,
        prompt_tokens: req.prompt_tokens(),
        requested_tokens: req.requested_tokens(),
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        user_message: req.last_user_message(),
    };
    tag(&state, answer(&state, Api::Chat, number, ask, busy).await)
}

pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let number = state.count_request();
    let busy = state.enter();
    let mut req: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return tag(&state, bad_json(&e)),
    };
    let model = req.model.take();
    let ask = Ask {
        model,
        prompt_tokens: req.prompt.as_ref().map_or(0, |p| p.tokens()),
        requested_tokens: req.max_tokens,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        user_message: req.prompt.as_ref().and_then(|p| p.as_text()),
    };
    tag(&state, answer(&state, Api::Text, number, ask, busy).await)
}

fn bad_json(e: &serde_json::Error) -> Response {
    invalid_request(&format!("We could not parse the JSON body of your request: {e}"), None)
}

async fn answer(state: &Arc<AppState>, api: Api, number: u64, ask: Ask<'_>, busy: InFlight) -> Response {
    let max = state.text.max_tokens();
    let (tokens, finish_reason) = match ask.requested_tokens {
        Some(0) => return invalid_request("max_tokens must be at least 1", Some("max_tokens")),
        Some(r) if r < u64::from(max) => (r as u32, "length"),
        _ => (max, "stop"),
    };
    if let Some(kind) = choose_fault(state) {
        return inject(state, kind).await;
    }
    if let Some(m) = ask.user_message {
        state.remember(m);
    }
    delay(state).await;
    compute(state).await;

    let prefix = if api == Api::Chat { "chatcmpl" } else { "cmpl" };
    let id = format!("{prefix}-{:x}-{number}", state.pid);
    let model = ask.model.unwrap_or_else(|| state.flags.persona_id.clone());
    let created = crate::demo_persona::state::unix_ms() / 1000;
    let usage = Usage::new(ask.prompt_tokens, u64::from(tokens));

    if ask.stream {
        let job = StreamJob {
            state: Arc::clone(state),
            api,
            id,
            model,
            created,
            tokens,
            next: 0,
            finish_reason,
            usage,
            include_usage: ask.include_usage,
            stage: Stage::Tokens,
            _busy: busy,
        };
        let stream = futures::stream::unfold(job, |mut job| async move {
            let frame = job.step().await?;
            Some((Ok::<_, Infallible>(frame), job))
        });
        return (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            Body::from_stream(stream),
        )
            .into_response();
    }

    let token_delay_ms = state.flags.token_delay_ms.saturating_mul(u64::from(tokens));
    if token_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(token_delay_ms)).await;
    }
    let env = Envelope { id: &id, created, model: &model };
    let content = state.text.prefix(tokens);
    let body = match api {
        Api::Chat => serde_json::to_vec(&ChatCompletion::new(env, content, finish_reason, usage)),
        Api::Text => {
            let choice = [TextChoice { text: content, index: 0, logprobs: None, finish_reason: Some(finish_reason) }];
            serde_json::to_vec(&TextCompletion::new(env, &choice, Some(usage)))
        }
    };
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.unwrap_or_default()).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Tokens,
    Finish,
    Usage,
    Done,
    End,
}

/// One streamed answer, advanced one SSE frame per poll.
struct StreamJob {
    state: Arc<AppState>,
    api: Api,
    id: String,
    model: String,
    created: u64,
    tokens: u32,
    next: u32,
    finish_reason: &'static str,
    usage: Usage,
    include_usage: bool,
    stage: Stage,
    /// Held until the stream is done (or dropped by a caller that left).
    _busy: InFlight,
}

impl StreamJob {
    async fn step(&mut self) -> Option<Bytes> {
        let env = Envelope { id: &self.id, created: self.created, model: &self.model };
        match self.stage {
            Stage::Tokens => {
                let delay_ms = self.state.flags.token_delay_ms;
                if delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                let i = self.next;
                self.next += 1;
                if self.next >= self.tokens {
                    self.stage = Stage::Finish;
                }
                let token = self.state.text.token(i);
                Some(match self.api {
                    Api::Chat => {
                        let role = (i == 0).then_some("assistant");
                        let delta = Delta { role, content: Some(token) };
                        let c = [ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }];
                        frame(&ChatChunk::new(env, &c, None))
                    }
                    Api::Text => {
                        let c = [TextChoice { text: token, index: 0, logprobs: None, finish_reason: None }];
                        frame(&TextCompletion::new(env, &c, None))
                    }
                })
            }
            Stage::Finish => {
                self.stage = if self.include_usage { Stage::Usage } else { Stage::Done };
                let finish = Some(self.finish_reason);
                Some(match self.api {
                    Api::Chat => {
                        let c =
                            [ChunkChoice { index: 0, delta: Delta::default(), logprobs: None, finish_reason: finish }];
                        frame(&ChatChunk::new(env, &c, None))
                    }
                    Api::Text => {
                        let c = [TextChoice { text: "", index: 0, logprobs: None, finish_reason: finish }];
                        frame(&TextCompletion::new(env, &c, None))
                    }
                })
            }
            Stage::Usage => {
                self.stage = Stage::Done;
                Some(match self.api {
                    Api::Chat => frame(&ChatChunk::new(env, &[], Some(self.usage))),
                    Api::Text => frame(&TextCompletion::new(env, &[], Some(self.usage))),
                })
            }
            Stage::Done => {
                self.stage = Stage::End;
                Some(Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Stage::End => None,
        }
    }
}

/// One SSE event: `data: <json>` and a blank line.
fn frame<T: Serialize>(v: &T) -> Bytes {
    let mut buf = Vec::with_capacity(320);
    buf.extend_from_slice(b"data: ");
    // serialising plain structs into a Vec cannot fail
    let _ = serde_json::to_writer(&mut buf, v);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}
