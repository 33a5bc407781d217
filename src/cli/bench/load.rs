//! A small HTTP/1.1 load generator: N connections kept alive, each sending one request after
//! another for a fixed time, latency taken per request. Written against raw sockets so that
//! the generator costs as little CPU as possible and exactly the same whatever it measures
//! (a persona directly or through the gateway).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted: a bench answer is a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What to send, and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
}

impl Target {
    pub fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Target {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n{body}",
            body.len()
        );
        Target { addr, request: request.into_bytes() }
    }
}

/// One run's results.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of each successful request in µs, sorted.
    pub latencies_us: Vec<u32>,
}

impl Run {
    pub fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((q * self.latencies_us.len() as f64).ceil() as usize).clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// `concurrency` connections, each a loop of requests, spread over `threads` OS threads with a
/// single-threaded runtime each (its own, so the generator's cost does not depend on the
/// caller's runtime); requests that start during `warmup` are not counted.
pub async fn run(
    target: &Target,
    concurrency: usize,
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let threads = threads.clamp(1, concurrency.max(1));
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        // connections dealt out as evenly as they go
        let n = concurrency / threads + usize::from(i < concurrency % threads);
        let t = target.clone();
        handles.push(std::thread::spawn(move || -> anyhow::Result<Run> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let mut workers = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let t = t.clone();
                    workers.spawn(async move { worker(t, measure_from, end).await });
                }
                let mut run = Run::default();
                while let Some(r) = workers.join_next().await {
                    let w = r.context("load worker panicked")??;
                    run.ok += w.ok;
                    run.errors += w.errors;
                    run.latencies_us.extend(w.latencies_us);
                }
                Ok(run)
            })
        }));
    }
    let joined = tokio::task::spawn_blocking(move || handles.into_iter().map(|h| h.join()).collect::<Vec<_>>())
        .await
        .context("load threads")?;
    let mut run = Run::default();
    for r in joined {
        let w = r.map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        run.ok += w.ok;
        run.errors += w.errors;
        run.latencies_us.extend(w.latencies_us);
    }
    run.elapsed = duration;
    run.latencies_us.sort_unstable();
    Ok(run)
}

async fn worker(t: Target, measure_from: Instant, end: Instant) -> anyhow::Result<Run> {
    let mut out = Run { latencies_us: Vec::with_capacity(65_536), ..Run::default() };
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(t.addr).await.with_context(|| format!("connect {}", t.addr))?;
                s.set_nodelay(true)?;
                conn.insert(s)
            }
        };
        let result = exchange(stream, &t.request, &mut buf).await;
        let counted = sent >= measure_from;
        match result {
            Ok((status, keep_alive)) => {
                if counted {
                    if status == 200 {
                        out.ok += 1;
                        out.latencies_us.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    } else {
                        out.errors += 1;
                    }
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                if counted {
                    out.errors += 1;
                }
                tracing::debug!(error = %e, "request failed; reconnecting");
                conn = None;
            }
        }
    }
    Ok(out)
}

/// Send one request and read its whole response; returns the status and whether the
/// connection stays open.
async fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    s.write_all(request).await?;
    buf.clear();
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).context("no status line")?;
    let (mut length, mut chunked, mut keep_alive) = (None, false, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut pos = head_end;
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                read_more(s, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end])?.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
            pos = line_end + 2;
            while buf.len() < pos + size + 2 {
                read_more(s, buf).await?;
            }
            pos += size + 2;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        while buf.len() < head_end + n {
            read_more(s, buf).await?;
        }
    } else {
        bail!("response without a length on a kept-alive connection");
    }
    Ok((status, keep_alive))
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    if buf.len() >= MAX_RESPONSE_BYTES {
        bail!("response larger than {MAX_RESPONSE_BYTES} bytes");
    }
    let before = buf.len();
    buf.reserve(8192);
    let n = s.read_buf(buf).await?;
    if n == 0 || buf.len() == before {
        bail!("connection closed mid-response");
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
