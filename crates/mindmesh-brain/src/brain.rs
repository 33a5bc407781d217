//! [`Brain`]: one analysis per cycle — features, then the analyst (LLM, built-in or naive),
//! then the guardrails — with the state that must outlive a cycle (history digests,
//! hysteresis streaks, cooldowns, the LLM's answer format). The node's leader loop owns one
//! and calls [`Brain::analyse`] every `cycle_s`.

use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::config::{AnalystChoice, BrainConfig, LlmResponseFormat};
use mindmesh_core::{AnalystKind, Decision};
use serde::Serialize;

use crate::analyst::{builtin, naive};
use crate::anomaly::{self, PersonaHealth};
use crate::error::BrainError;
use crate::features::{self, FeatureCache, FeatureSet, MeshFeatures, NodeFeatures};
use crate::guardrails::{self, Condition, GuardChange, GuardState};
use crate::llm::openai::OpenAiClient;
use crate::llm::{ChatRequest, LlmClient, answer, prompt};
use crate::view::MeshView;

/// Which analyst a brain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Builtin,
    Llm,
    /// The fixed-threshold baseline, scored raw (no guardrails): it exists to show what
    /// thresholds alone do.
    Naive,
}

/// The LLM cycle fell back to the built-in analyst, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    /// `timeout`, `http`, `invalid`, `client`.
    pub kind: &'static str,
    pub reason: String,
}

/// One LLM call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmCallStats {
    pub outcome: &'static str,
    pub latency_ms: u64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// False when the server reported no usage and the counts are estimates.
    pub tokens_reported: bool,
    pub prompt_chars: usize,
    pub personas_in_prompt: usize,
    /// Personas the answer left out (decided by the built-in analyst).
    pub missing: usize,
    pub response_format: LlmResponseFormat,
}

/// Everything one cycle produced.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle: u64,
    pub now_ms: u64,
    pub analyst_requested: Mode,
    pub analyst_used: AnalystKind,
    /// One per persona of the view, in view order.
    pub decisions: Vec<Decision>,
    pub health: Vec<PersonaHealth>,
    /// 0–100.
    pub system_health: u8,
    pub fallback: Option<Fallback>,
    pub llm: Option<LlmCallStats>,
    pub guardrails: Vec<GuardChange>,
    pub mesh: MeshFeatures,
    pub nodes: Vec<NodeFeatures>,
    /// Only when asked for ([`Brain::keep_features`]): they are large.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSet>,
}

pub struct Brain {
    config: BrainConfig,
    mode: Mode,
    llm: Option<Arc<dyn LlmClient>>,
    /// Why the configured LLM client could not be built.
    llm_unavailable: Option<String>,
    format: LlmResponseFormat,
    cache: FeatureCache,
    guard: GuardState,
    cycle: u64,
    keep_features: bool,
}

impl std::fmt::Debug for Brain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brain").field("mode", &self.mode).field("cycle", &self.cycle).finish_non_exhaustive()
    }
}

impl Brain {
    fn with(config: BrainConfig, mode: Mode, llm: Option<Arc<dyn LlmClient>>, llm_unavailable: Option<String>) -> Self {
        let format = config.llm.response_format;
        Brain {
            config,
            mode,
            llm,
            llm_unavailable,
            format,
            cache: FeatureCache::default(),
            guard: GuardState::default(),
            cycle: 0,
            keep_features: false,
        }
    }

    /// The analyst the config names. An LLM client that cannot be built leaves the brain in
    /// LLM mode, falling back to the built-in analyst every cycle with the reason recorded.
    pub fn from_config(config: BrainConfig) -> Self {
        match config.analyst {
            AnalystChoice::Builtin => Brain::with(config, Mode::Builtin, None, None),
            AnalystChoice::Llm => match OpenAiClient::new(&config.llm) {
                Ok(c) => Brain::with(config, Mode::Llm, Some(Arc::new(c)), None),
                Err(e) => {
                    tracing::warn!(error = %e, "LLM client unavailable; the built-in analyst decides");
                    Brain::with(config, Mode::Llm, None, Some(e.to_string()))
                }
            },
        }
    }

    pub fn builtin(config: BrainConfig) -> Self {
        Brain::with(config, Mode::Builtin, None, None)
    }

    /// The LLM analyst through `client` (the real one or a twin).
    pub fn with_llm(config: BrainConfig, client: Arc<dyn LlmClient>) -> Self {
        Brain::with(config, Mode::Llm, Some(client), None)
    }

    pub fn naive(config: BrainConfig) -> Self {
        Brain::with(config, Mode::Naive, None, None)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn config(&self) -> &BrainConfig {
        &self.config
    }

    pub fn cycle(&self) -> u64 {
        self.cycle
    }

    /// Put the features into each report (for `brain explain` and debugging).
    pub fn keep_features(&mut self, keep: bool) {
        self.keep_features = keep;
    }

    /// Samples folded into the history digests so far (cost accounting for benches).
    pub fn folded_samples(&self) -> u64 {
        self.cache.folded()
    }

    fn stale_after_ms(&self) -> u64 {
        mindmesh_core::bounds::s_to_ms(self.config.guardrails.stale_after_s)
    }

    fn features(&mut self, view: &MeshView, now_ms: u64) -> (FeatureSet, Vec<Condition>) {
        let stale = self.stale_after_ms();
        let set = features::extract(view, now_ms, stale, &mut self.cache);
        let conditions: Vec<Condition> = set.personas.iter().map(|f| guardrails::condition(f, &set)).collect();
        self.guard.observe(&set, &conditions);
        (set, conditions)
    }

    /// Observe a view without deciding: fills the digests and the hysteresis streaks. A new
    /// leader primes with its recent history so persistence is not counted from zero, and
    /// `brain eval` primes with the samples before a scenario's end.
    pub fn prime(&mut self, view: &MeshView, now_ms: u64) {
        let _ = self.features(view, now_ms);
    }

    /// One cycle as of `now_ms`: decisions for every persona of `view`, anomalies, health.
    pub async fn analyse(&mut self, view: &MeshView, now_ms: u64) -> CycleReport {
        self.cycle += 1;
        let (set, conditions) = self.features(view, now_ms);
        let health: Vec<PersonaHealth> = set
            .personas
            .iter()
            .map(|f| {
                let anomalies = anomaly::detect(f, &set);
                PersonaHealth {
                    persona: f.id.clone(),
                    score: anomaly::score(&anomalies),
                    confidence: anomaly::confidence(f),
                    anomalies,
                }
            })
            .collect();
        let system_health = anomaly::system_health(&set, &health);
        let (proposals, used, fallback, llm) = match self.mode {
            Mode::Naive => (naive::decide(view, now_ms), AnalystKind::Naive, None, None),
            Mode::Builtin => (builtin::decide(&set, view), AnalystKind::Builtin, None, None),
            Mode::Llm => self.ask_llm(&set, view, &health).await,
        };
        let mut proposals = proposals;
        if used == AnalystKind::Llm {
            // the spec's maintenance schedule is the operator's policy, not the analyst's
            // judgement: honoured whoever analysed (the built-in analyst applies it itself)
            crate::analyst::maintenance::schedule(&set, view, &mut proposals);
        }
        let (mut decisions, guard_changes) = if self.mode == Mode::Naive {
            (proposals, Vec::new())
        } else {
            guardrails::apply(&self.config.guardrails, &mut self.guard, &set, view, &conditions, proposals, now_ms)
        };
        for d in &mut decisions {
            d.cycle = self.cycle;
        }
        for d in decisions.iter().filter(|d| d.action != mindmesh_core::Action::Continue) {
            tracing::debug!(cycle = self.cycle, persona = %d.persona, action = %d.action, confidence = d.confidence, reason = %d.reason, "decision");
        }
        CycleReport {
            cycle: self.cycle,
            now_ms,
            analyst_requested: self.mode,
            analyst_used: used,
            decisions,
            health,
            system_health,
            fallback,
            llm,
            guardrails: guard_changes,
            mesh: set.mesh.clone(),
            nodes: set.nodes.clone(),
            features: if self.keep_features { Some(set) } else { None },
        }
    }

    async fn ask_llm(
        &mut self,
        set: &FeatureSet,
        view: &MeshView,
        health: &[PersonaHealth],
    ) -> (Vec<Decision>, AnalystKind, Option<Fallback>, Option<LlmCallStats>) {
        let builtin = builtin::decide(set, view);
        let fall_back = |builtin: Vec<Decision>, kind: &'static str, reason: String| {
            tracing::warn!(kind, reason = %reason, "LLM cycle falls back to the built-in analyst");
            let decisions = builtin
                .into_iter()
                .map(|mut d| {
                    d.reason = format!("llm fallback ({kind}), builtin: {}", d.reason);
                    d
                })
                .collect();
            (decisions, AnalystKind::Builtin, Some(Fallback { kind, reason }))
        };
        let Some(client) = self.llm.clone() else {
            let why = self.llm_unavailable.clone().unwrap_or_else(|| "no LLM client".into());
            let (d, k, f) = fall_back(builtin, "client", why);
            return (d, k, f, None);
        };
        let cfg = &self.config.llm;
        let p = prompt::build(set, view, health, cfg.max_prompt_personas, cfg.max_completion_tokens);
        let req = ChatRequest {
            model: cfg.model.clone(),
            system: p.system.clone(),
            user: p.user.clone(),
            schema: p.schema.clone(),
            format: self.format,
            max_completion_tokens: p.max_completion_tokens,
            temperature: cfg.temperature,
            seed: cfg.seed,
        };
        let timeout_ms = cfg.timeout_ms;
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(Duration::from_millis(timeout_ms), client.chat(&req)).await {
            Err(_) => Err(BrainError::LlmTimeout(timeout_ms)),
            Ok(r) => r,
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let mut stats = LlmCallStats {
            outcome: "ok",
            latency_ms,
            prompt_tokens: p.estimated_tokens(),
            completion_tokens: 0,
            tokens_reported: false,
            prompt_chars: p.system.len() + p.user.len(),
            personas_in_prompt: p.included.len(),
            missing: 0,
            response_format: self.format,
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                stats.outcome = e.kind();
                self.maybe_downgrade_format(&e);
                let (d, k, f) = fall_back(builtin, e.kind(), e.to_string());
                return (d, k, f, Some(stats));
            }
        };
        if let (Some(pt), Some(ct)) = (response.prompt_tokens, response.completion_tokens) {
            stats.prompt_tokens = pt;
            stats.completion_tokens = ct;
            stats.tokens_reported = true;
        } else {
            stats.completion_tokens = (response.content.len() / 4) as u32;
        }
        match answer::parse(&response.content, &p.included, view) {
            Err(e) => {
                stats.outcome = e.kind();
                let (d, k, f) = fall_back(builtin, e.kind(), e.to_string());
                (d, k, f, Some(stats))
            }
            Ok(mut plan) => {
                let included: std::collections::HashSet<usize> = p.included.iter().copied().collect();
                let decisions = builtin
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut b)| match plan.remove(&i) {
                        Some(d) => d,
                        None => {
                            if included.contains(&i) {
                                stats.missing += 1;
                                b.reason = format!("llm gave no decision, builtin: {}", b.reason);
                            }
                            b
                        }
                    })
                    .collect();
                (decisions, AnalystKind::Llm, None, Some(stats))
            }
        }
    }

    /// A server that rejects the structured-output request gets plainer ones from now on.
    fn maybe_downgrade_format(&mut self, e: &BrainError) {
        if let BrainError::LlmTransport(msg) = e {
            let m = msg.to_ascii_lowercase();
            if (m.contains("response_format") || m.contains("json_schema") || m.contains("json schema"))
                && (m.contains("400") || m.contains("422") || m.contains("unsupported") || m.contains("invalid"))
            {
                let next = match self.format {
                    LlmResponseFormat::JsonSchema => LlmResponseFormat::JsonObject,
                    _ => LlmResponseFormat::None,
                };
                tracing::warn!(from = ?self.format, to = ?next, "LLM server rejected the response format; asking more plainly");
                self.format = next;
            }
        }
    }
}
