//! `mindmesh decisions [--follow]`: the mesh's decision log, from any node.

use std::process::ExitCode;

use mindmesh_node::api::types::{DecisionView, DecisionsPage};

use super::client::{ApiArgs, Client, seg};
use super::when;

#[derive(Debug, clap::Args)]
pub struct DecisionsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Keep printing decisions as the leader commits them.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the decisions about this persona (a name the mesh has never heard of is an error).
    #[arg(long)]
    pub persona: Option<String>,
    /// How many of the latest decisions to show first.
    #[arg(long, default_value_t = 50)]
    pub last: u64,
    /// One JSON object per line (times in epoch milliseconds).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DecisionsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let filter = args.persona.as_deref().map(|p| format!("&persona={}", seg(p))).unwrap_or_default();
    // the newest seq, then start `last` before it
    let mut newest = 0;
    let mut after = 0;
    loop {
        let page: DecisionsPage = client.get(&format!("/api/v1/decisions?after={after}&limit=1000")).await?;
        if page.decisions.is_empty() {
            break;
        }
        newest = page.last_seq;
        after = page.last_seq;
    }
    let mut after = newest.saturating_sub(args.last);
    let mut header = !args.json;
    loop {
        let wait = if args.follow { "&wait_ms=25000" } else { "" };
        let page: DecisionsPage =
            client.get(&format!("/api/v1/decisions?after={after}&limit=1000{filter}{wait}")).await?;
        if header && (!page.decisions.is_empty() || !args.follow) {
            println!(
                "{:>6}  {:<19}  {:<10} {:<20} {:<11} {:<8} {:<5} {:<22} REASON",
                "SEQ", "TIME", "AGO", "PERSONA", "ACTION", "ANALYST", "CONF", "EXECUTED"
            );
            header = false;
        }
        for d in &page.decisions {
            print_decision(d, args.json)?;
        }
        after = page.last_seq.max(after);
        if !args.follow && page.decisions.len() < 1000 {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_decision(d: &DecisionView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(d)?);
        return Ok(());
    }
    let executed = match (&d.executed_by, d.executed_ok) {
        (Some(n), Some(true)) => format!("yes, by {n}"),
        (Some(n), _) => format!("FAILED on {n}"),
        _ if matches!(d.action.as_str(), "continue" | "investigate") => "-".to_owned(),
        _ => "not yet".to_owned(),
    };
    let action = match &d.target {
        Some(t) => format!("{} {t}", d.action),
        None => d.action.clone(),
    };
    // an unchanged watch is one line: how many cycles said it, and when the last did
    let repeated = match d.last_seen_ms {
        Some(t) if d.count > 1 => format!(" [{}x, last {}]", d.count, when::ago(t, when::now_ms())),
        _ => String::new(),
    };
    println!(
        "{:>6}  {:<19}  {:<10} {:<20} {:<11} {:<8} {:<5.2} {:<22} {}{repeated}",
        d.seq,
        when::local(d.decided_at_ms),
        when::ago(d.decided_at_ms, when::now_ms()),
        d.persona,
        action,
        d.analyst,
        d.confidence,
        executed,
        d.reason
    );
    Ok(())
}
