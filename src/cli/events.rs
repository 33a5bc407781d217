//! `mindmesh events [--follow]`: the node's event log.

use std::process::ExitCode;

use mindmesh_core::event::Event;
use mindmesh_node::api::types::{EventsPage, NodeStatus};

use super::client::{ApiArgs, Client, seg};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// Only this persona's events.
    #[arg(long)]
    pub persona: Option<String>,
    /// How many of the latest events to show first.
    #[arg(long, default_value_t = 50)]
    pub last: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: EventsArgs, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(api)?;
    let filter = args.persona.as_deref().map(|p| format!("&persona={}", seg(p))).unwrap_or_default();
    // find where the log ends, then start `last` events before it
    let status: NodeStatus = client.get("/api/v1/status").await?;
    let mut after = status.last_event_seq.saturating_sub(args.last);
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
        println!(
            "{:>6}  {}  {:<20} {:<14} {}",
            e.seq,
            super::table::time_of_day(e.ts_ms),
            e.persona,
            e.kind.as_str(),
            e.detail
        );
    }
    Ok(())
}
