//! `mindmesh logs NAME [-f] [--tail N] [--since DURATION] [--stdout|--stderr] [--json]`: a
//! persona's output, read through any node (it forwards to the node that runs the persona).
//! Follow mode asks for one page after another, each waiting on the node for new lines, and
//! carries on at the new node when the persona moves.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use mindmesh_node::api::types::LogsPage;
use mindmesh_supervisor::logs::format::format_ts;

use super::client::{ApiArgs, Client, seg};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The persona.
    pub name: String,
    /// Keep printing lines as the persona writes them (Ctrl-C stops).
    #[arg(long, short)]
    pub follow: bool,
    /// Begin with the last N lines (default: every line kept).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only lines written in the last DURATION, e.g. 30s, 10m, 2h, 1d, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = super::duration::parse)]
    pub since: Option<Duration>,
    /// Only what the persona wrote to stdout.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only what the persona wrote to stderr.
    #[arg(long)]
    pub stderr: bool,
    /// Prefix each line with its time (UTC) and stream.
    #[arg(long, short = 't')]
    pub timestamps: bool,
    /// Read the files a given node kept (the persona ran there before it moved).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// One JSON object per line: ts_ms, stream, text, node.
    #[arg(long)]
    pub json: bool,
}

/// How long follow mode keeps retrying a node that does not answer (restarting, the persona
/// moving) before it gives up.
const RETRY_FOR: Duration = Duration::from_secs(60);

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let mut fixed = String::from("limit=1000");
    if let Some(n) = &args.node {
        fixed.push_str(&format!("&node={}", seg(n)));
    }
    if args.stdout {
        fixed.push_str("&stream=stdout");
    } else if args.stderr {
        fixed.push_str("&stream=stderr");
    }
    if let Some(d) = args.since {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        fixed.push_str(&format!("&since_ms={}", now.saturating_sub(d.as_millis() as u64)));
    }
    let mut cursor: Option<String> = None;
    let mut failing_since: Option<Instant> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let mut query = fixed.clone();
        match &cursor {
            Some(c) => query.push_str(&format!("&cursor={}", seg(c))),
            None => {
                if let Some(n) = args.tail {
                    query.push_str(&format!("&tail={n}"));
                }
            }
        }
        if args.follow {
            query.push_str("&wait_ms=25000");
        }
        let path = format!("/api/v1/personas/{}/logs?{query}", seg(&args.name));
        let page: LogsPage = match client.get(&path).await {
            Ok(p) => {
                failing_since = None;
                p
            }
            // the first page fails loudly (a typo, no such persona); a follower rides out a
            // node restart or a move
            Err(e) if args.follow && cursor.is_some() => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > RETRY_FOR {
                    return Err(e.context(format!("no answer for {}s", RETRY_FOR.as_secs())));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if page.skipped {
            eprintln!("(some lines were rotated away before they could be read)");
        }
        for line in &page.lines {
            let written = if args.json {
                let v = serde_json::json!({"ts_ms": line.ts_ms, "stream": line.stream, "text": line.text, "node": page.node});
                writeln!(out, "{v}")
            } else if args.timestamps {
                writeln!(out, "{} {} {}", format_ts(line.ts_ms), line.stream.as_str(), line.text)
            } else {
                writeln!(out, "{}", line.text)
            };
            if let Err(e) = written {
                // a reader that went away (`| head`) ends the command, not an error
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(e).context("writing the lines");
            }
        }
        if out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        cursor = Some(page.cursor);
        if page.at_end && !args.follow {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
