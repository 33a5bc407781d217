//! `mindmesh decisions [--follow]`: the mesh's decision log, from any node — who asked what,
//! why, and what became of it. Following, a row's outcome is printed again when it lands.

use std::process::ExitCode;

use mindmesh_node::api::types::{DecisionView, DecisionsPage};

use super::client::{Client, seg};
use super::when;

pub use super::log_args::LogArgs as DecisionsArgs;

pub async fn run(args: DecisionsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let filter = args.persona.as_deref().map(|p| format!("&persona={}", seg(p))).unwrap_or_default();
    // the newest seq, then start `last` before it
    let mut newest = 0;
    let mut after = 0;
    let mut updated_after;
    loop {
        let page: DecisionsPage = client.get(&format!("/api/v1/decisions?after={after}&limit=1000")).await?;
        updated_after = page.last_index;
        if page.decisions.is_empty() {
            break;
        }
        newest = page.last_seq;
        after = page.last_seq;
    }
    let mut after = newest.saturating_sub(args.last);
    let mut header = !args.json;
    loop {
        // following, ask also for the rows already shown whose outcome has landed since
        let follow = if args.follow { format!("&wait_ms=25000&updated_after={updated_after}") } else { String::new() };
        let page: DecisionsPage =
            client.get(&format!("/api/v1/decisions?after={after}&limit=1000{filter}{follow}")).await?;
        if header && (!page.decisions.is_empty() || !args.follow) {
            println!(
                "{:>6}  {:<19}  {:<10} {:<20} {:<14} {:<22} {:<5} {:<26} REASON",
                "SEQ", "TIME", "AGO", "PERSONA", "ACTION", "BY", "CONF", "OUTCOME"
            );
            header = false;
        }
        for d in &page.updated {
            // a row already printed: its outcome landed (JSON: the whole row again, same seq)
            if args.json {
                println!("{}", serde_json::to_string(d)?);
            } else {
                println!("{:>6}  ↳ {}", d.seq, outcome(d));
            }
        }
        for d in &page.decisions {
            print_decision(d, args.json)?;
        }
        after = page.last_seq.max(after);
        updated_after = page.last_index.max(updated_after);
        if !args.follow && page.decisions.len() < 1000 {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `executed by node-a`, `FAILED on node-a: …`, `refused: …`, `superseded by 12`, `pending`.
fn outcome(d: &DecisionView) -> String {
    let node = d.executed_by.as_deref().unwrap_or("?");
    let detail = d.outcome.as_deref().unwrap_or("");
    match d.verdict.as_str() {
        "executed" => format!("executed by {node}"),
        "failed" => format!("FAILED on {node}: {detail}"),
        "refused" => format!("refused: {detail}"),
        "superseded" => match d.superseded_by {
            Some(seq) => format!("superseded by {seq}"),
            None => "superseded (stale plan)".to_owned(),
        },
        "recorded" => "-".to_owned(),
        "" => "?".to_owned(),
        other => other.to_owned(),
    }
}

fn print_decision(d: &DecisionView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(d)?);
        return Ok(());
    }
    let action = match &d.target {
        Some(t) => format!("{} {t}", d.action),
        None => d.action.clone(),
    };
    // an unchanged watch is one line: how many cycles said it, and when the last did
    let repeated = match d.last_seen_ms {
        Some(t) if d.count > 1 => format!(" [{}x, last {}]", d.count, when::ago(t, when::now_ms())),
        _ => String::new(),
    };
    let by = if d.by.is_empty() { d.analyst.as_str() } else { d.by.as_str() };
    // a budget change's before and after, from the record's fields (the brain's reason says
    // them too; an operator's or a throttle's may not)
    let change = match (&d.budget_before, &d.budget_after) {
        (Some(b), Some(a)) => {
            let c = mindmesh_brain::budget::describe_change(b, a);
            if c.is_empty() || d.reason.contains(&c) { String::new() } else { format!("[{c}] ") }
        }
        _ => String::new(),
    };
    println!(
        "{:>6}  {:<19}  {:<10} {:<20} {:<14} {:<22} {:<5.2} {:<26} {change}{}{repeated}",
        d.seq,
        when::local(d.decided_at_ms),
        when::ago(d.decided_at_ms, when::now_ms()),
        d.persona,
        action,
        by,
        d.confidence,
        outcome(d),
        d.reason
    );
    Ok(())
}
