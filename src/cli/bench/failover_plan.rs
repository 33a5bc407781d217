//! `mindmesh bench failover-plan`: the leader's failover planner on a large registry (1,000
//! nodes × 100,000 personas by default) with 1, 10 and 100 nodes lost. Pure CPU, no network:
//! it times the plan, the registry applying it (as every replica does), both in the form the
//! leader commits now (decisions with their moves, a thousand to an entry) and in the old one
//! (the decisions, then one reassignment), and a tick on which nothing changed — which used to
//! replan everything and now compares two numbers.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use mindmesh_core::PersonaSpec;
use mindmesh_core::failover::{self, FailoverPlan, Replan};
use mindmesh_core::registry::{ApplyCtx, Capacity, Command, NodeId, NodeInfo, Proposal, ProposalId, Registry};
use mindmesh_core::spec::Importance;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct FailoverPlanArgs {
    /// Nodes in the registry (the personas are spread evenly over them).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub nodes: u64,
    /// Personas in the registry.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub personas: u64,
    /// Lost-node counts to plan for, each on its own copy of the registry.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub lost: Vec<u64>,
    /// Print one JSON object per case instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Case {
    nodes: u64,
    personas: u64,
    lost: u64,
    homeless: usize,
    moves: usize,
    plan_ms: f64,
    apply_ms: f64,
    entries: usize,
    apply_old_form_ms: f64,
    entries_old_form: usize,
    idle_tick_replan_ms: f64,
    idle_tick_on_change_us: f64,
}

struct Log {
    registry: Registry,
    index: u64,
}

impl Log {
    fn apply(&mut self, command: Command) {
        self.index += 1;
        let p = Proposal { id: ProposalId { node: 1, nonce: self.index }, command };
        let outcome = self.registry.apply(&p, ApplyCtx { index: self.index, term: 1 });
        debug_assert!(!outcome.is_rejected(), "{outcome:?}");
    }
}

fn build(nodes: u64, personas: u64) -> Log {
    let mut log = Log { registry: Registry::new(), index: 0 };
    // room for everything twice over: a failover of a tenth of the mesh fits
    let per_node = personas.div_ceil(nodes.max(1));
    for id in 1..=nodes {
        log.apply(Command::AddNode(NodeInfo {
            id,
            name: format!("node-{id:04}"),
            addrs: vec![],
            capacity: Capacity { memory_mb: per_node * 2 * 64, cpu_percent: (per_node * 2 * 10) as f64 },
            labels: Default::default(),
            api: String::new(),
        }));
    }
    for i in 0..personas {
        let mut spec = PersonaSpec::new(&format!("persona-{i:06}"), "/usr/bin/true");
        spec.requests.memory_mb = 64;
        spec.requests.cpu_percent = 10.0;
        spec.importance = match i % 10 {
            0 => Importance::System,
            1..=5 => Importance::UserFacing,
            _ => Importance::Background,
        };
        log.apply(Command::put_persona(spec, Some(1 + i % nodes.max(1))));
    }
    log
}

/// The commands as the leader committed them before `Decide`: the decisions, then one
/// reassignment with every move, then the migrations.
fn old_form(plan: &FailoverPlan, at_ms: u64) -> Vec<Command> {
    let mut cmds: Vec<Command> = plan
        .decisions
        .chunks(mindmesh_core::registry::MAX_DECISIONS_PER_COMMAND)
        .map(|c| Command::RecordDecisions { decisions: c.to_vec(), at_ms })
        .collect();
    if !plan.moves.is_empty() {
        cmds.push(Command::Reassign { moves: plan.moves.clone() });
    }
    cmds.extend(plan.migrations.iter().map(|(name, to)| Command::Migrate { name: name.clone(), to: *to }));
    cmds
}

fn timed_apply(base: &Log, cmds: Vec<Command>) -> (f64, usize, Log) {
    let mut log = Log { registry: base.registry.clone(), index: base.index };
    let n = cmds.len();
    let t = Instant::now();
    for c in cmds {
        log.apply(c);
    }
    (t.elapsed().as_secs_f64() * 1e3, n, log)
}

pub async fn run(args: FailoverPlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.nodes > 0 && args.personas > 0, "--nodes and --personas must be positive");
    let t = Instant::now();
    let base = build(args.nodes, args.personas);
    if !args.json {
        println!(
            "registry: {} nodes, {} personas, built in {:.1} s{}",
            args.nodes,
            args.personas,
            t.elapsed().as_secs_f64(),
            if cfg!(debug_assertions) { " (DEBUG BUILD: use --release for figures)" } else { "" }
        );
        println!(
            "{:>5} {:>8} {:>7} {:>9} {:>9} {:>7} {:>13} {:>11} {:>16} {:>17}",
            "LOST",
            "HOMELESS",
            "MOVES",
            "PLAN ms",
            "APPLY ms",
            "ENTRIES",
            "OLD APPLY ms",
            "OLD ENTRIES",
            "IDLE REPLAN ms",
            "IDLE ON-CHANGE µs"
        );
    }
    for &lost_n in &args.lost {
        let lost: BTreeSet<NodeId> = (1..=lost_n.min(args.nodes)).collect();
        let homeless = base.registry.personas.values().filter(|p| p.node.is_some_and(|n| lost.contains(&n))).count();
        let t = Instant::now();
        let plan = failover::plan(&base.registry, &lost, |_| 5000);
        let plan_ms = t.elapsed().as_secs_f64() * 1e3;
        let (apply_ms, entries, after) = timed_apply(&base, plan.commands(1));
        let (apply_old_form_ms, entries_old_form, _) = timed_apply(&base, old_form(&plan, 1));
        // a tick after the plan committed, nothing changed since: the old loop planned again
        // from scratch; now it compares the registry's placement index and the lost set
        let mut replan = Replan::default();
        replan.needed(&after.registry, &lost);
        let t = Instant::now();
        let again = failover::plan(&after.registry, &lost, |_| 5000);
        let idle_tick_replan_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let needed = replan.needed(&after.registry, &lost);
        let idle_tick_on_change_us = t.elapsed().as_secs_f64() * 1e6;
        anyhow::ensure!(!needed, "an unchanged registry asked for a new plan");
        anyhow::ensure!(again.moves.len() <= plan.moves.len(), "a second plan moved more than the first");
        let case = Case {
            nodes: args.nodes,
            personas: args.personas,
            lost: lost_n,
            homeless,
            moves: plan.moves.len(),
            plan_ms,
            apply_ms,
            entries,
            apply_old_form_ms,
            entries_old_form,
            idle_tick_replan_ms,
            idle_tick_on_change_us,
        };
        if args.json {
            println!("{}", serde_json::to_string(&case)?);
        } else {
            println!(
                "{:>5} {:>8} {:>7} {:>9.1} {:>9.1} {:>7} {:>13.1} {:>11} {:>16.1} {:>17.1}",
                case.lost,
                case.homeless,
                case.moves,
                case.plan_ms,
                case.apply_ms,
                case.entries,
                case.apply_old_form_ms,
                case.entries_old_form,
                case.idle_tick_replan_ms,
                case.idle_tick_on_change_us
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
