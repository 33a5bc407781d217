//! `mindmesh top`: a live terminal view of the mesh — its nodes and every node's personas,
//! sorted by CPU, memory or latency, with phase changes and decisions as they happen.
//!
//! Split in two so the screen is testable without a terminal: [`Top`] holds what was polled
//! (one `status` for nodes and personas, the newest decisions, each persona's last latency
//! sample) and turns differences between polls into activity lines; [`draw`] is a pure
//! function from that state to a ratatui buffer. The loop around them polls the node's API and
//! reads keys (`c`, `m`, `l` sort; `q` quits).

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use mindmesh_node::api::types::{DecisionsPage, MeshNodeView, NodeStatus, PersonaView, SeriesPage};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, Widget};

use super::client::{ApiArgs, Client, seg};
use super::{duration, when};

/// Activity lines kept (the screen shows the newest that fit).
const MAX_ACTIVITY: usize = 200;
/// Personas whose latency is asked each refresh: one small request each.
const MAX_LATENCY_LOOKUPS: usize = 64;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// How often to refresh, with a unit (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = duration::parse_positive)]
    pub interval: Duration,
    /// The order to start with; `c`, `m` and `l` switch it while running.
    #[arg(long, value_enum, default_value_t = Sort::Cpu)]
    pub sort: Sort,
}

/// What the rows are sorted by, largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    /// CPU percent.
    Cpu,
    /// Resident memory.
    Memory,
    /// Latency p99 of the last sample (nodes: by CPU).
    Latency,
}

impl Sort {
    fn label(self) -> &'static str {
        match self {
            Sort::Cpu => "cpu",
            Sort::Memory => "memory",
            Sort::Latency => "latency",
        }
    }
}

/// A persona's latency from its newest sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50_ms: Option<f32>,
    pub p99_ms: Option<f32>,
}

/// What the screen shows: the last poll and what changed between polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub api: String,
    pub sort: Sort,
    /// The node asked (it answers for the whole mesh).
    pub node: String,
    pub leader: Option<String>,
    pub nodes: Vec<MeshNodeView>,
    pub personas: Vec<PersonaView>,
    pub latency: BTreeMap<String, Latency>,
    /// Newest last.
    pub activity: VecDeque<String>,
    /// The last error of a poll (the screen keeps the previous figures).
    pub error: Option<String>,
    last_decision: Option<u64>,
}

impl Top {
    pub fn new(api: &str, sort: Sort) -> Top {
        Top {
            api: api.to_owned(),
            sort,
            node: String::new(),
            leader: None,
            nodes: Vec::new(),
            personas: Vec::new(),
            latency: BTreeMap::new(),
            activity: VecDeque::new(),
            error: None,
            last_decision: None,
        }
    }

    fn note(&mut self, line: String) {
        if self.activity.len() >= MAX_ACTIVITY {
            self.activity.pop_front();
        }
        self.activity.push_back(line);
    }

    /// Take a new status: phase changes against the previous one become activity lines.
    pub fn status(&mut self, s: NodeStatus, now_ms: u64) {
        let first = self.node.is_empty();
        let before: BTreeMap<&str, (&str, String)> = self
            .personas
            .iter()
            .map(|p| (p.name.as_str(), (p.node.as_deref().unwrap_or("-"), p.phase.to_string())))
            .collect();
        let mut lines = Vec::new();
        for p in &s.personas {
            let (node, phase) = (p.node.as_deref().unwrap_or("-"), p.phase.to_string());
            match before.get(p.name.as_str()) {
                _ if first => {}
                None => lines.push(format!("{} {}: new, {phase} on {node}", when::local(now_ms), p.name)),
                Some((n, ph)) if *ph != phase || *n != node => {
                    let moved = if *n != node { format!(" ({n} → {node})") } else { String::new() };
                    let why = p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                    lines.push(format!("{} {}: {ph} → {phase}{moved}{why}", when::local(now_ms), p.name));
                }
                Some(_) => {}
            }
        }
        for name in before.keys().filter(|n| !s.personas.iter().any(|p| p.name == **n)) {
            lines.push(format!("{} {name}: removed", when::local(now_ms)));
        }
        for l in lines {
            self.note(l);
        }
        self.node = s.node;
        self.leader = s.mesh.as_ref().and_then(|m| m.leader.clone());
        self.nodes = s.mesh.map(|m| m.nodes).unwrap_or_default();
        self.personas = s.personas;
        self.latency.retain(|n, _| self.personas.iter().any(|p| &p.name == n));
        self.error = None;
    }

    /// Take the newest decisions: each new one becomes an activity line (the first poll only
    /// sets where to start, so the screen opens on what happens from now).
    pub fn decisions(&mut self, page: DecisionsPage) {
        let Some(last) = self.last_decision else {
            self.last_decision = Some(page.last_seq);
            return;
        };
        for d in page.decisions.iter().filter(|d| d.seq > last) {
            let by = if d.by.is_empty() { d.analyst.as_str() } else { d.by.as_str() };
            self.note(format!(
                "{} decision #{} {} {} by {by}: {} [{}]",
                when::local(d.decided_at_ms),
                d.seq,
                d.action,
                d.persona,
                d.reason,
                d.verdict
            ));
        }
        self.last_decision = Some(page.last_seq.max(last));
    }

    /// The personas in the chosen order, largest first; ties by name.
    pub fn sorted_personas(&self) -> Vec<&PersonaView> {
        let mut v: Vec<&PersonaView> = self.personas.iter().collect();
        let lat = |p: &PersonaView| self.latency.get(&p.name).and_then(|l| l.p99_ms).unwrap_or(-1.0);
        v.sort_by(|a, b| {
            let order = match self.sort {
                Sort::Cpu => b.cpu_percent.total_cmp(&a.cpu_percent),
                Sort::Memory => b.rss_bytes.cmp(&a.rss_bytes),
                Sort::Latency => lat(b).total_cmp(&lat(a)),
            };
            order.then_with(|| a.name.cmp(&b.name))
        });
        v
    }

    fn sorted_nodes(&self) -> Vec<&MeshNodeView> {
        let mut v: Vec<&MeshNodeView> = self.nodes.iter().collect();
        v.sort_by(|a, b| {
            let order = match self.sort {
                Sort::Memory => b.memory_used_bytes.cmp(&a.memory_used_bytes),
                Sort::Cpu | Sort::Latency => b.cpu_percent.unwrap_or(-1.0).total_cmp(&a.cpu_percent.unwrap_or(-1.0)),
            };
            order.then_with(|| a.name.cmp(&b.name))
        });
        v
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(v: Option<f32>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The whole screen into `buf` over `area`: a pure function of `top`.
pub fn draw(top: &Top, area: Rect, buf: &mut Buffer) {
    let nodes = top.sorted_nodes();
    let personas = top.sorted_personas();
    let [head, nodes_area, personas_area, activity_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(nodes.len().max(1) as u16 + 3),
        Constraint::Min(4),
        Constraint::Length(8),
    ])
    .areas(area);

    let status = match &top.error {
        Some(e) => format!("  ! {e}"),
        None => String::new(),
    };
    Paragraph::new(Line::from(format!(
        "mindmesh top — {} · {} node(s), {} persona(s), leader {} · sort: {} (c cpu, m memory, l latency, q quit){status}",
        top.api,
        top.nodes.len(),
        top.personas.len(),
        top.leader.as_deref().unwrap_or("-"),
        top.sort.label(),
    )))
    .render(head, buf);

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = nodes.iter().map(|n| {
        Row::new(vec![
            n.name.clone(),
            n.role.clone(),
            if n.healthy { "yes".into() } else { "no".into() },
            n.cpu_percent.map_or_else(|| "-".into(), |c| format!("{c:.1}")),
            n.memory_used_bytes.map_or_else(|| "-".into(), mb),
            n.personas.to_string(),
            if n.draining { "draining".into() } else { String::new() },
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(["NODE", "ROLE", "HEALTHY", "CPU_%", "MEM_MB", "PERSONAS", ""]).style(bold))
    .block(Block::bordered().title(" nodes "))
    .render(nodes_area, buf);

    let rows = personas.iter().map(|p| {
        let l = top.latency.get(&p.name).copied().unwrap_or_default();
        Row::new(vec![
            p.name.clone(),
            p.node.clone().unwrap_or_else(|| "-".into()),
            p.phase.to_string(),
            p.pid.map_or_else(|| "-".into(), |v| v.to_string()),
            format!("{:.1}", p.cpu_percent),
            mb(p.rss_bytes),
            ms(l.p50_ms),
            ms(l.p99_ms),
            p.restarts.to_string(),
            p.health.to_string(),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(["PERSONA", "NODE", "PHASE", "PID", "CPU_%", "RSS_MB", "P50_MS", "P99_MS", "RESTARTS", "HEALTH"])
            .style(bold),
    )
    .block(Block::bordered().title(format!(" personas by {} ", top.sort.label())))
    .render(personas_area, buf);

    let shown = activity_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> =
        top.activity.iter().skip(top.activity.len().saturating_sub(shown)).map(|l| Line::from(l.as_str())).collect();
    Paragraph::new(lines).block(Block::bordered().title(" phase changes and decisions ")).render(activity_area, buf);
}

/// One poll of the node: status (nodes and every persona of the mesh), new decisions, and
/// the latest latency sample of each persona (bounded).
async fn poll(client: &Client, top: &mut Top) -> anyhow::Result<()> {
    let status: NodeStatus = client.get("/api/v1/status").await?;
    top.status(status, when::now_ms());
    let after = top.last_decision.map_or(String::new(), |s| format!("after={s}&"));
    let page: DecisionsPage = client.get(&format!("/api/v1/decisions?{after}limit=100")).await?;
    top.decisions(page);
    let names: Vec<String> = top.personas.iter().take(MAX_LATENCY_LOOKUPS).map(|p| p.name.clone()).collect();
    let paths: Vec<String> = names.iter().map(|n| format!("/api/v1/personas/{}/series?max_points=1", seg(n))).collect();
    let asks = paths.iter().map(|p| client.get::<SeriesPage>(p));
    for (name, page) in names.iter().zip(futures::future::join_all(asks).await) {
        // a persona gone between the two requests, or one with no sample yet, has no latency
        if let Some(s) = page.ok().and_then(|p| p.samples.last().cloned()) {
            top.latency.insert(name.clone(), Latency { p50_ms: s.latency_p50_ms, p99_ms: s.latency_p99_ms });
        }
    }
    Ok(())
}

pub async fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        std::io::stdout().is_terminal(),
        "mindmesh top draws on a terminal; for scripts use `mindmesh status --json` or `persona list --json`"
    );
    let client = Client::new(&args.api)?;
    let mut top = Top::new(&args.api.api, args.sort);
    // the first poll fails loudly, before the screen is taken (a wrong --api, no node)
    poll(&client, &mut top).await?;

    // keys are read on a thread of their own: crossterm's read blocks
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<(KeyCode, KeyModifiers)>(16);
    let mut terminal = ratatui::try_init()?;
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        while !keys_tx.is_closed() {
            if event::poll(Duration::from_millis(100))?
                && let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
                && keys_tx.blocking_send((k.code, k.modifiers)).is_err()
            {
                break;
            }
        }
        Ok(())
    });
    let result = async {
        let mut tick = tokio::time::interval(args.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            terminal.draw(|f| draw(&top, f.area(), f.buffer_mut()))?;
            tokio::select! {
                key = keys.recv() => match key {
                    Some((KeyCode::Char('q') | KeyCode::Esc, _)) | None => break,
                    Some((KeyCode::Char('c'), KeyModifiers::CONTROL)) => break,
                    Some((KeyCode::Char('c'), _)) => top.sort = Sort::Cpu,
                    Some((KeyCode::Char('m'), _)) => top.sort = Sort::Memory,
                    Some((KeyCode::Char('l'), _)) => top.sort = Sort::Latency,
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    if let Err(e) = poll(&client, &mut top).await {
                        top.error = Some(format!("{e:#}"));
                    }
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    ratatui::restore();
    drop(keys);
    let _ = reader.join();
    result?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::{Health, Phase};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn persona(name: &str, node: &str, cpu: f32, rss_mb: u64, phase: Phase) -> PersonaView {
        PersonaView {
            name: name.into(),
            node: Some(node.into()),
            epoch: 1,
            phase,
            pid: Some(100),
            health: Health::Healthy,
            rss_bytes: rss_mb << 20,
            cpu_percent: cpu,
            throttle_multiplier: 1.0,
            ..PersonaView::default()
        }
    }

    fn node(name: &str, cpu: f32) -> MeshNodeView {
        MeshNodeView {
            name: name.into(),
            id: 1,
            address: String::new(),
            p2p: Vec::new(),
            role: "follower".into(),
            last_seen_ms: None,
            healthy: true,
            personas: 1,
            cpu_percent: Some(cpu),
            memory_used_bytes: Some(1 << 30),
            draining: false,
        }
    }

    fn status(personas: Vec<PersonaView>) -> NodeStatus {
        serde_json::from_value(serde_json::json!({
            "node": "a", "version": "0", "uptime_s": 1, "api": "", "data_dir": "", "limits": "",
            "host": null, "phases": {}, "personas": personas, "last_event_seq": 0,
            "mesh": {"node_id": 1, "role": "leader", "term": 1, "leader": "a", "leader_id": 1,
                     "leader_contact_age_ms": 0, "nodes": [node("a", 5.0), node("b", 50.0)], "listen": []}
        }))
        .expect("a status")
    }

    /// The screen as text, one string per row.
    fn screen(top: &Top) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(140, 30)).unwrap();
        t.draw(|f| draw(top, f.area(), f.buffer_mut())).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>())
            .collect()
    }

    fn row_of(rows: &[String], needle: &str) -> usize {
        rows.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not on screen:\n{}", rows.join("\n")))
    }

    #[test]
    fn rows_follow_the_chosen_order() {
        let mut top = Top::new("http://x", Sort::Cpu);
        top.status(
            status(vec![
                persona("hungry", "b", 90.0, 10, Phase::Running),
                persona("leaky", "a", 1.0, 900, Phase::Running),
                persona("slow", "b", 2.0, 20, Phase::Running),
            ]),
            0,
        );
        top.latency.insert("slow".into(), Latency { p50_ms: Some(800.0), p99_ms: Some(2500.0) });
        let rows = screen(&top);
        assert!(row_of(&rows, "hungry") < row_of(&rows, "slow") && row_of(&rows, "slow") < row_of(&rows, "leaky"));
        assert!(row_of(&rows, "personas by cpu") < row_of(&rows, "hungry"));
        // nodes by CPU too: b (50 %) above a (5 %)
        assert!(row_of(&rows, "│b ") < row_of(&rows, "│a "), "{rows:#?}");
        top.sort = Sort::Memory;
        let rows = screen(&top);
        assert!(row_of(&rows, "leaky") < row_of(&rows, "slow") && row_of(&rows, "slow") < row_of(&rows, "hungry"));
        top.sort = Sort::Latency;
        let rows = screen(&top);
        assert!(row_of(&rows, "slow") < row_of(&rows, "hungry"));
        assert!(rows[row_of(&rows, "slow")].contains("2500"), "{rows:#?}");
    }

    #[test]
    fn phase_changes_and_decisions_become_activity_lines() {
        let mut top = Top::new("http://x", Sort::Cpu);
        top.status(status(vec![persona("chat", "a", 1.0, 10, Phase::Running)]), 0);
        top.decisions(serde_json::from_value(serde_json::json!({"decisions": [], "last_seq": 4})).unwrap());
        assert!(top.activity.is_empty(), "the first poll is the starting point: {:?}", top.activity);
        let mut hib = persona("chat", "a", 0.0, 0, Phase::Hibernating);
        hib.reason = Some("idle".into());
        top.status(status(vec![hib, persona("new", "b", 1.0, 1, Phase::Starting)]), 0);
        let d = serde_json::json!({"decisions": [{
            "seq": 5, "persona": "chat", "action": "hibernate", "target": null, "reason": "idle 15 min",
            "confidence": 0.9, "analyst": "builtin", "cycle": 3, "decided_at_ms": 0, "verdict": "executed",
            "superseded_by": null, "executed_by": "a", "executed_at_ms": 0, "executed_ok": true, "outcome": null
        }], "last_seq": 5});
        top.decisions(serde_json::from_value(d).unwrap());
        let all: Vec<&String> = top.activity.iter().collect();
        assert!(all.iter().any(|l| l.contains("chat: running → hibernating: idle")), "{all:?}");
        assert!(all.iter().any(|l| l.contains("new: new, starting on b")), "{all:?}");
        assert!(all.iter().any(|l| l.contains("decision #5 hibernate chat") && l.contains("[executed]")), "{all:?}");
        let rows = screen(&top);
        row_of(&rows, "decision #5 hibernate chat");
        // bounded
        for i in 0..(MAX_ACTIVITY + 10) {
            top.note(format!("line {i}"));
        }
        assert_eq!(top.activity.len(), MAX_ACTIVITY);
    }
}
