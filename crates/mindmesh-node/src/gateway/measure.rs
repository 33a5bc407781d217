//! Measuring one request end to end: a [`Record`] from arrival to the last byte (however the
//! request ends, it is counted exactly once), and the [`MeteredBody`] that passes a persona's
//! answer through frame by frame — no buffering, so SSE tokens leave as they arrive — while it
//! notes the first byte, the tokens, the end, and cuts the answer at its deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use mindmesh_core::clock::Clock;
use mindmesh_core::metrics::ErrorKind;

use super::error::sse_timeout_event;
use super::gate::{Gate, Permit};
use super::meter::Outcome;
use super::upstream::UpstreamBody;

/// One request, from its arrival at the gateway.
pub struct Record {
    gate: Arc<Gate>,
    clock: Arc<dyn Clock>,
    arrived: Instant,
    /// To the first byte of the answer's body.
    ttft: Option<Duration>,
    stream: bool,
    tokens_out: u64,
    done: bool,
}

impl Record {
    pub fn begin(gate: Arc<Gate>, clock: Arc<dyn Clock>, arrived: Instant) -> Self {
        gate.meter.begin(clock.now_ms());
        Record { gate, clock, arrived, ttft: None, stream: false, tokens_out: 0, done: false }
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The request failed with `kind` (its latency is not counted: percentiles describe
    /// answers, the error rate describes failures).
    pub fn fail(mut self, kind: ErrorKind) {
        self.finish(Some(kind), false);
    }

    fn finish(&mut self, error: Option<ErrorKind>, answered: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let o = Outcome {
            latency: (answered && error.is_none()).then(|| self.arrived.elapsed()),
            ttft: self.ttft,
            stream: self.stream,
            tokens_out: self.tokens_out,
            error,
        };
        self.gate.meter.end(self.clock.now_ms(), &o);
    }
}

impl Drop for Record {
    /// The caller went away before the answer ended: counted, neither as an answer nor an error.
    fn drop(&mut self) {
        self.finish(None, false);
    }
}

/// A persona's answer on its way to the caller.
pub struct MeteredBody {
    inner: UpstreamBody,
    permit: Option<Permit>,
    record: Record,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit_ms: u64,
    sse: bool,
    scan: TokenScan,
    done: bool,
}

impl MeteredBody {
    pub fn new(
        inner: UpstreamBody,
        permit: Permit,
        record: Record,
        deadline: tokio::time::Instant,
        limit_ms: u64,
        sse: bool,
    ) -> Self {
        let mut record = record;
        record.stream = sse;
        MeteredBody {
            inner,
            permit: Some(permit),
            record,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            limit_ms,
            sse,
            scan: TokenScan::default(),
            done: false,
        }
    }

    fn end(&mut self, error: Option<ErrorKind>) {
        self.done = true;
        self.record.tokens_out = self.scan.tokens();
        self.record.finish(error, true);
        // the slot is free as soon as the persona is done, whatever the caller still reads
        self.permit = None;
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.end(Some(ErrorKind::Timeout));
            let persona = Arc::clone(&this.record.gate().name);
            return Poll::Ready(Some(if this.sse {
                Ok(Frame::data(sse_timeout_event(&persona, this.limit_ms)))
            } else {
                Err(format!("persona {persona:?} did not finish within {} ms", this.limit_ms).into())
            }));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    // every answer's first byte: a plain answer's is (nearly) its last, which
                    // is what its caller waits for before seeing any token
                    if this.record.ttft.is_none() {
                        this.record.ttft = Some(this.record.arrived.elapsed());
                    }
                    this.scan.scan(data, this.sse);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Some(ErrorKind::Other));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // an SSE answer may gain a timeout event, so its length is never promised
        if self.sse { SizeHint::default() } else { self.inner.size_hint() }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // a server that stops polling once it has every byte it was promised
        if !self.done && self.inner.is_end_stream() {
            self.end(None);
        }
    }
}

/// Counts the tokens of an answer as it passes: `usage.completion_tokens` when the persona
/// reports it, else (streams without usage) the chunks that carry text.
#[derive(Default)]
struct TokenScan {
    usage: Option<u64>,
    text_chunks: u64,
    /// The end of the previous frame, so a key split across frames is still found.
    tail: Vec<u8>,
}

const USAGE_KEY: &[u8] = b"\"completion_tokens\":";
const TAIL_BYTES: usize = 48;

impl TokenScan {
    fn tokens(&self) -> u64 {
        self.usage.unwrap_or(self.text_chunks)
    }

    fn scan(&mut self, data: &[u8], sse: bool) {
        if !self.tail.is_empty() {
            let mut joint = std::mem::take(&mut self.tail);
            joint.extend_from_slice(&data[..data.len().min(TAIL_BYTES)]);
            self.find_usage(&joint);
        }
        self.find_usage(data);
        if sse {
            self.text_chunks += count_text(data, b"\"content\":\"") + count_text(data, b"\"text\":\"");
        }
        self.tail.clear();
        self.tail.extend_from_slice(&data[data.len().saturating_sub(TAIL_BYTES)..]);
    }

    fn find_usage(&mut self, hay: &[u8]) {
        let mut from = 0;
        while let Some(i) = find(&hay[from..], USAGE_KEY) {
            let rest = &hay[from + i + USAGE_KEY.len()..];
            let digits: Vec<u8> = rest
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if let Some(n) = std::str::from_utf8(&digits).ok().and_then(|s| s.parse().ok()) {
                self.usage = Some(n);
            }
            from += i + USAGE_KEY.len();
        }
    }
}

/// Occurrences of `key` followed by a non-empty string.
fn count_text(hay: &[u8], key: &[u8]) -> u64 {
    let mut n = 0;
    let mut from = 0;
    while let Some(i) = find(&hay[from..], key) {
        let after = from + i + key.len();
        if hay.get(after).is_some_and(|&b| b != b'"') {
            n += 1;
        }
        from = after;
    }
    n
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..hay.len() - needle.len() + 1].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_even_across_frames() {
        let mut s = TokenScan::default();
        s.scan(br#"{"id":"x","usage":{"prompt_tokens":3,"completion_"#, false);
        s.scan(br#"tokens":12,"total_tokens":15}}"#, false);
        assert_eq!(s.tokens(), 12);
        let mut s = TokenScan::default();
        s.scan(br#"{"usage":{"completion_tokens": 7}}"#, false);
        assert_eq!(s.tokens(), 7);
    }

    #[test]
    fn streamed_text_chunks_count_without_usage() {
        let mut s = TokenScan::default();
        s.scan(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n", true);
        s.scan(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: {\"choices\":[{\"delta\":{}}]}\n\n",
            true,
        );
        s.scan(b"data: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\ndata: [DONE]\n\n", true);
        assert_eq!(s.tokens(), 2);
        s.scan(b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":5}}\n\n", true);
        assert_eq!(s.tokens(), 5, "usage wins when reported");
    }

    #[test]
    fn find_finds() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xxa", b"a"), Some(2));
    }
}
