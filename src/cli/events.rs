//! `mindmesh events [--follow]`: the node's event log.

use std::process::ExitCode;

use mindmesh_core::event::Event;
use mindmesh_node::api::types::{EventsPage, NodeStatus};

use super::client::{Client, seg};
use super::when;

pub use super::log_args::LogArgs as EventsArgs;

/// Column widths: a followed log prints line by line, so the table cannot measure its rows.
const HEADER: [&str; 6] = ["SEQ", "TIME", "AGO", "PERSONA", "KIND", "DETAIL"];

pub async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let filter = args.persona.as_deref().map(|p| format!("&persona={}", seg(p))).unwrap_or_default();
    // find where the log ends, then start `last` events before it
    let status: NodeStatus = client.get("/api/v1/status").await?;
    let mut after = status.last_event_seq.saturating_sub(args.last);
    if !args.json {
        print_line(HEADER.map(String::from));
    }
    loop {
        let wait = if args.follow { "&wait_ms=25000" } else { "" };
        let page: EventsPage = client.get(&format!("/api/v1/events?after={after}&limit=1000{filter}{wait}")).await?;
        for e in &page.events {
            print_event(e, args.json)?;
        }
        after = page.last_seq.max(after);
        if page.events.is_empty() && !args.follow {
            break;
        }
        if !args.follow && page.events.len() < 1000 {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(e: &Event, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        print_line([
            e.seq.to_string(),
            when::local_ms(e.ts_ms),
            when::ago(e.ts_ms, when::now_ms()),
            e.persona.clone(),
            e.kind.as_str().to_owned(),
            e.detail.clone(),
        ]);
    }
    Ok(())
}

fn print_line(cells: [String; 6]) {
    let [seq, time, ago, persona, kind, detail] = cells;
    let line = format!("{seq:>6}  {time:<23}  {ago:<10}  {persona:<20} {kind:<14} {detail}");
    println!("{}", line.trim_end());
}
