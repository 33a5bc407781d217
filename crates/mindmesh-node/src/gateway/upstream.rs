//! A lean HTTP/1.1 client for the personas of this host: one request on a pooled keep-alive
//! connection, its answer read by the task that serves the caller. A general client (reqwest,
//! hyper's pooled client) drives each connection from a task of its own and hands requests and
//! body frames over channels — several task wake-ups per request, which on a busy 2-core host
//! cost more than the persona's own work. Here the caller's connection task writes the request
//! and reads the answer itself: no extra task, no channel, no URL parsing.
//!
//! It speaks what OpenAI-compatible servers answer with: a `Content-Length` body, a chunked one
//! (SSE streams) or one that ends when the connection closes. A connection goes back to its
//! persona's pool only after a complete answer on a connection the server keeps open.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::{Buf, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line.
const MAX_LINE_BYTES: usize = 4096;
const READ_CHUNK: usize = 16 * 1024;

/// One open connection to a persona process.
pub struct Conn {
    stream: TcpStream,
    port: u16,
}

/// Idle connections to one persona. A plain mutex around a short `Vec`, held for a push or a
/// pop and never across an await: the cheapest correct pool there is.
pub struct Pool {
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Pool {
    pub fn new(max_idle: usize) -> Self {
        Pool { idle: Mutex::new(Vec::new()), max_idle }
    }

    /// An idle connection to `port` that the server has not closed; connections to another
    /// port (a process since replaced) are dropped on the way.
    fn checkout(&self, port: u16) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.port != port {
                idle.retain(|c| c.port == port);
                continue;
            }
            // a closed (or misbehaving, talkative) connection reads as ready
            let mut probe = [0u8; 1];
            if matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }
}

#[derive(Debug)]
pub enum UpstreamError {
    /// Nobody listens (or not in time): the process is gone or not serving yet.
    Connect(io::Error),
    /// The connection failed or the answer was not HTTP.
    Io(io::Error),
    Protocol(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect: {e}"),
            UpstreamError::Io(e) => write!(f, "{e}"),
            UpstreamError::Protocol(e) => write!(f, "bad answer: {e}"),
        }
    }
}

/// The head of a persona's answer.
pub struct Head {
    pub status: StatusCode,
    /// Without the fields of one connection (framing, keep-alive): the caller's connection
    /// has its own.
    pub headers: HeaderMap,
}

/// Send `POST path` with a JSON body to the persona on `port`, and read its answer's head.
/// A reused connection that fails before any byte of an answer (the server closed it while
/// idle) is replaced by a new one once.
pub async fn send(
    pool: Arc<Pool>,
    port: u16,
    path: &str,
    body: &[u8],
    connect_timeout: Duration,
) -> Result<(Head, UpstreamBody), UpstreamError> {
    let request = request_bytes(port, path, body);
    let (mut conn, mut reused) = match pool.checkout(port) {
        Some(c) => (c, true),
        None => (connect(port, connect_timeout).await?, false),
    };
    loop {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match exchange(&mut conn.stream, &request, &mut buf).await {
            Ok(Some(parsed)) => {
                let body = UpstreamBody::new(conn, buf, parsed.framing, parsed.keep_alive, pool);
                return Ok((Head { status: parsed.status, headers: parsed.headers }, body));
            }
            Ok(None) | Err(UpstreamError::Io(_)) if reused => {
                reused = false;
                conn = connect(port, connect_timeout).await?;
            }
            Ok(None) => return Err(UpstreamError::Io(io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(e),
        }
    }
}

async fn connect(port: u16, timeout: Duration) -> Result<Conn, UpstreamError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
        Err(_) => return Err(UpstreamError::Connect(io::ErrorKind::TimedOut.into())),
    };
    stream.set_nodelay(true).map_err(UpstreamError::Io)?;
    Ok(Conn { stream, port })
}

fn request_bytes(port: u16, path: &str, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut r = Vec::with_capacity(160 + body.len());
    // writing into a Vec cannot fail
    let _ = write!(
        r,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: mindmesh-gateway\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    r.extend_from_slice(body);
    r
}

struct Parsed {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Write the request, read until a final (non-1xx) head is complete. `Ok(None)`: the
/// connection closed before any byte of an answer.
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut BytesMut) -> Result<Option<Parsed>, UpstreamError> {
    stream.write_all(request).await.map_err(UpstreamError::Io)?;
    loop {
        if let Some((len, parsed)) = parse_head(buf)? {
            buf.advance(len);
            if parsed.status.is_informational() {
                continue;
            }
            return Ok(Some(parsed));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(UpstreamError::Protocol(format!("response head longer than {MAX_HEAD_BYTES} bytes")));
        }
        buf.reserve(READ_CHUNK);
        let n = stream.read_buf(buf).await.map_err(UpstreamError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(UpstreamError::Protocol("connection closed inside the response head".into()))
            };
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(usize, Parsed)>, UpstreamError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| UpstreamError::Protocol(format!("status {code}")))?;
    let mut keep_alive = resp.version == Some(1);
    let (mut length, mut chunked) = (None, false);
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|_| UpstreamError::Protocol("bad content-length".into()))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.rsplit(',').next().is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let has = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
            keep_alive = if has("close") { false } else { keep_alive || has("keep-alive") };
        } else if !is_hop_by_hop(h.name) {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
            else {
                continue;
            };
            headers.append(name, value);
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked(Chunk::Size),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => {
            keep_alive = false;
            Framing::UntilClose
        }
    };
    Ok(Some((len, Parsed { status, headers, framing, keep_alive })))
}

fn is_hop_by_hop(name: &str) -> bool {
    ["keep-alive", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

/// The framing of a body over the bytes read so far: no I/O, so the fuzz target drives it
/// exactly as [`UpstreamBody`] does.
struct Decoder {
    buf: BytesMut,
    framing: Framing,
}

/// What the buffered bytes gave.
enum Decoded {
    /// The next piece of the body (never empty).
    Data(Bytes),
    /// Read more from the connection first.
    NeedMore,
    /// The body is complete.
    End,
}

impl Decoder {
    fn decode(&mut self) -> io::Result<Decoded> {
        loop {
            match self.framing {
                Framing::Done => return Ok(Decoded::End),
                Framing::Length(0) => self.framing = Framing::Done,
                Framing::Length(left) => {
                    if self.buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (self.buf.len() as u64).min(left) as usize;
                    let data = self.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.framing = if left == 0 { Framing::Done } else { Framing::Length(left) };
                    return Ok(Decoded::Data(data));
                }
                Framing::UntilClose => {
                    if self.buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(self.buf.split().freeze()));
                }
                Framing::Chunked(state) => match self.step_chunked(state)? {
                    Step::Data(d) => return Ok(Decoded::Data(d)),
                    Step::Again => {}
                    Step::NeedMore => return Ok(Decoded::NeedMore),
                },
            }
        }
    }

    /// The connection ended: that completes a body framed by the close, and cuts any other short.
    fn eof(&mut self) -> io::Result<()> {
        match self.framing {
            Framing::UntilClose | Framing::Done => {
                self.framing = Framing::Done;
                Ok(())
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Advance the chunked decoder over what is buffered.
    fn step_chunked(&mut self, state: Chunk) -> io::Result<Step> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        match state {
            Chunk::Size => {
                let Some(line) = self.take_line()? else { return Ok(Step::NeedMore) };
                let text = std::str::from_utf8(&line).map_err(|_| bad("chunk size is not text"))?;
                let hex = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                self.framing = Framing::Chunked(if size == 0 { Chunk::Trailer } else { Chunk::Data(size) });
                Ok(Step::Again)
            }
            Chunk::Data(left) => {
                if self.buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (self.buf.len() as u64).min(left) as usize;
                let data = self.buf.split_to(n).freeze();
                let left = left - n as u64;
                self.framing = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                Ok(Step::Data(data))
            }
            Chunk::DataEnd => {
                let Some(line) = self.take_line()? else { return Ok(Step::NeedMore) };
                if !line.is_empty() {
                    return Err(bad("chunk data longer than its size"));
                }
                self.framing = Framing::Chunked(Chunk::Size);
                Ok(Step::Again)
            }
            Chunk::Trailer => {
                let Some(line) = self.take_line()? else { return Ok(Step::NeedMore) };
                if line.is_empty() {
                    self.framing = Framing::Done;
                }
                Ok(Step::Again)
            }
        }
    }

    /// A CRLF-ended line from the buffer, without its CRLF.
    fn take_line(&mut self) -> io::Result<Option<BytesMut>> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                let mut line = self.buf.split_to(i + 2);
                line.truncate(i);
                Ok(Some(line))
            }
            None if self.buf.len() > MAX_LINE_BYTES => {
                Err(io::Error::new(io::ErrorKind::InvalidData, "chunk line too long"))
            }
            None => Ok(None),
        }
    }
}

/// The body of a persona's answer, read off its connection as the caller's server polls it.
pub struct UpstreamBody {
    conn: Option<Conn>,
    dec: Decoder,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl UpstreamBody {
    fn new(conn: Conn, buf: BytesMut, framing: Framing, keep_alive: bool, pool: Arc<Pool>) -> Self {
        let mut b = UpstreamBody { conn: Some(conn), dec: Decoder { buf, framing }, keep_alive, pool };
        if b.dec.framing == Framing::Length(0) {
            b.finish();
        }
        b
    }

    /// The whole answer is read: the connection may serve the next request.
    fn finish(&mut self) {
        self.dec.framing = Framing::Done;
        if let Some(c) = self.conn.take()
            && self.keep_alive
            && self.dec.buf.is_empty()
        {
            self.pool.checkin(c);
        }
    }

    /// Read more from the connection; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = &self.conn else { return Poll::Ready(Ok(0)) };
        self.dec.buf.reserve(READ_CHUNK);
        loop {
            match conn.stream.try_read_buf(&mut self.dec.buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(conn.stream.poll_read_ready(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.dec.decode()? {
                Decoded::Data(d) => {
                    // a body that ends with this piece frees its connection at once
                    if self.dec.framing == Framing::Done {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(d)));
                }
                Decoded::End => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        self.dec.eof()?;
                        self.finish();
                        return Poll::Ready(None);
                    }
                }
            }
        }
    }
}

/// A persona's whole answer, as a socket might deliver it: the first byte sets the size of the
/// pieces it arrives in, the rest is what the persona sent. The head is read as [`send`] reads
/// it, then the body decoded to its end. Any answer must be refused or decoded to an end,
/// never panic or loop, and give no more body than was sent. For the fuzz target and its
/// corpus replay.
pub(crate) fn fuzz_answer(data: &[u8]) {
    let Some((&piece, data)) = data.split_first() else { return };
    let mut pieces = data.chunks(usize::from(piece).max(1));
    let mut buf = BytesMut::new();
    let parsed = loop {
        match parse_head(&buf) {
            Err(_) => return,
            Ok(Some((len, parsed))) => {
                assert!(len > 0 && len <= buf.len(), "a head is made of the bytes read");
                buf.advance(len);
                if !parsed.status.is_informational() {
                    break parsed;
                }
            }
            Ok(None) if buf.len() >= MAX_HEAD_BYTES => return,
            Ok(None) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return,
            },
        }
    };
    let mut dec = Decoder { buf, framing: parsed.framing };
    let mut body = 0;
    loop {
        match dec.decode() {
            Err(_) => return,
            Ok(Decoded::Data(d)) => {
                assert!(!d.is_empty(), "an empty piece of body would spin its reader");
                body += d.len();
                assert!(body <= data.len(), "more body than bytes sent");
            }
            Ok(Decoded::End) => return,
            Ok(Decoded::NeedMore) => match pieces.next() {
                Some(p) => dec.buf.extend_from_slice(p),
                None => {
                    let _ = dec.eof();
                    return;
                }
            },
        }
    }
}

enum Step {
    Data(Bytes),
    Again,
    NeedMore,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.get_mut().poll_data(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.dec.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.dec.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Read a whole (small) body, at most `max` bytes of it.
pub async fn read_to_end(body: &mut UpstreamBody, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data[..data.len().min(max.saturating_sub(out.len()))]);
            if out.len() >= max {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot upstream on loopback that answers each request with `answer`.
    async fn server(answers: Vec<&'static [u8]>) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for a in answers {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(a).await.unwrap();
            }
        });
        port
    }

    async fn collect(mut b: UpstreamBody) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert!(b.is_end_stream());
        frames
    }

    #[tokio::test]
    async fn length_and_chunked_answers_on_one_kept_connection() {
        let port = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nX-Id: 1\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n\
              6\r\ndata: \r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
        ])
        .await;
        let pool = Arc::new(Pool::new(4));
        let (head, body) = send(pool.clone(), port, "/v1/x", b"{}", Duration::from_secs(1)).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["x-id"], "1");
        assert!(head.headers.get("content-length").is_none(), "framing is the caller's server's business");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(collect(body).await, vec![Bytes::from_static(b"hello")]);
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "kept for the next request");
        let (head, body) = send(pool.clone(), port, "/v1/x", b"{}", Duration::from_secs(1)).await.unwrap();
        assert_eq!(head.headers["content-type"], "text/event-stream");
        assert_eq!(collect(body).await, vec![Bytes::from_static(b"data: "), Bytes::from_static(b"abc")]);
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn until_close_and_refused() {
        let port = server(vec![b"HTTP/1.1 500 Internal\r\nConnection: close\r\n\r\n{\"error\":1}"]).await;
        let pool = Arc::new(Pool::new(4));
        let (head, mut body) = send(pool.clone(), port, "/", b"", Duration::from_secs(1)).await.unwrap();
        assert_eq!(head.status, 500);
        // the test server closes after its last answer
        assert_eq!(read_to_end(&mut body, 1024).await.unwrap(), b"{\"error\":1}");
        assert!(pool.idle.lock().unwrap().is_empty(), "a closing connection is not kept");
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        match send(pool, free, "/", b"", Duration::from_secs(1)).await {
            Err(UpstreamError::Connect(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("expected a refused connection, got {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            // first connection: one answer, then closed while idle
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na").await.unwrap();
            drop(s);
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb").await.unwrap();
        });
        let pool = Arc::new(Pool::new(4));
        let (_, body) = send(pool.clone(), port, "/", b"", Duration::from_secs(1)).await.unwrap();
        assert_eq!(collect(body).await, vec![Bytes::from_static(b"a")]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, body) = send(pool.clone(), port, "/", b"", Duration::from_secs(1)).await.unwrap();
        assert_eq!(collect(body).await, vec![Bytes::from_static(b"b")]);
    }
}
