//! `[brain]`: which analyst the leader runs, how often, the LLM endpoint and the guardrails.
//!
//! ```toml
//! [brain]
//! analyst = "llm"          # or "builtin" (the default)
//! cycle_s = 10
//! [brain.llm]
//! base_url = "http://127.0.0.1:8080/v1"
//! model = "qwen2.5-7b-instruct"
//! timeout_ms = 20000
//! [brain.guardrails]
//! cooldown_s = 600
//! ```
//!
//! `MINDMESH_LLM_BASE_URL`, `MINDMESH_LLM_MODEL`, `MINDMESH_LLM_API_KEY` and
//! `MINDMESH_LLM_TIMEOUT_MS` override the file; this crate reads no environment itself, the
//! caller passes a lookup to [`BrainConfig::apply_env`].

use serde::{Deserialize, Serialize};

use super::at_least;
use crate::error::{CoreError, Result};

/// Which analyst decides each cycle. Guardrails run after either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnalystChoice {
    /// The embedded statistical analyst: no network, always available.
    #[default]
    Builtin,
    /// An OpenAI-compatible endpoint; falls back to the built-in analyst for any cycle where it
    /// times out, errs or answers something invalid.
    Llm,
}

impl AnalystChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalystChoice::Builtin => "builtin",
            AnalystChoice::Llm => "llm",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainConfig {
    pub analyst: AnalystChoice,
    /// Seconds between two analyses by the leader.
    pub cycle_s: u64,
    /// The leader commits the changes its decisions ask for; false: decisions are only
    /// recorded (an advisory brain, for trying an analyst out on a live mesh).
    pub act: bool,
    /// Points of the history the brain reads: gossip (every second) rolled into points this
    /// long, kept this long.
    pub history_resolution_s: u64,
    pub history_window_s: u64,
    /// How many times faster than real time the brain's sense of time runs (history stamps,
    /// cooldowns, "an hour of steady growth"): 1 in production; tests and demos compress
    /// hours into minutes with e.g. 120.
    pub time_speed: f64,
    pub llm: LlmConfig,
    pub guardrails: GuardrailConfig,
}

impl Default for BrainConfig {
    fn default() -> Self {
        BrainConfig {
            analyst: AnalystChoice::default(),
            cycle_s: 10,
            act: true,
            history_resolution_s: 10,
            history_window_s: 6 * 3600,
            time_speed: 1.0,
            llm: LlmConfig::default(),
            guardrails: GuardrailConfig::default(),
        }
    }
}

/// How the answer's shape is requested from the server. Validation is strict either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LlmResponseFormat {
    /// `response_format: {type: json_schema}` (OpenAI, llama.cpp, vLLM, recent Ollama).
    #[default]
    JsonSchema,
    /// `response_format: {type: json_object}` for servers without schema support.
    JsonObject,
    /// Nothing: the prompt alone asks for JSON.
    None,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// OpenAI-compatible API base, including `/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as a bearer token; local servers usually ignore it.
    pub api_key: Option<String>,
    /// Whole request, connect to last byte; past it the cycle falls back to the built-in analyst.
    pub timeout_ms: u64,
    /// Upper bound on the answer; the request asks for less when the mesh is small.
    pub max_completion_tokens: u32,
    pub temperature: f32,
    /// Fixed for reproducible answers where the server honours it.
    pub seed: Option<i64>,
    pub response_format: LlmResponseFormat,
    /// Most personas described in one prompt (the least healthy first); the rest are decided
    /// by the built-in analyst, so a huge mesh cannot blow the context window.
    pub max_prompt_personas: usize,
}

impl std::fmt::Debug for LlmConfig {
    // never print the key into logs
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_completion_tokens", &self.max_completion_tokens)
            .field("temperature", &self.temperature)
            .field("seed", &self.seed)
            .field("response_format", &self.response_format)
            .field("max_prompt_personas", &self.max_prompt_personas)
            .finish()
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: None,
            timeout_ms: 30_000,
            max_completion_tokens: 4096,
            temperature: 0.0,
            seed: Some(7),
            response_format: LlmResponseFormat::default(),
            max_prompt_personas: 150,
        }
    }
}

/// Rules applied after any analyst. Each one that changes a decision says so in its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailConfig {
    /// After a disruptive action on a persona, no other disruptive action on it for this long.
    pub cooldown_s: u64,
    /// A condition must be seen in this many consecutive cycles before a disruptive action
    /// (crash loops and permanent errors are exempt).
    pub hysteresis_cycles: u32,
    /// Most disruptive actions in one cycle.
    pub max_disruptive_per_cycle: usize,
    /// Largest share of the mesh that may be disrupted (already down + new actions) at once.
    pub max_disrupted_share: f64,
    /// Data older than this (or than three sample intervals, whichever is longer) is stale
    /// and never acted on.
    pub stale_after_s: u64,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        GuardrailConfig {
            cooldown_s: 600,
            hysteresis_cycles: 3,
            max_disruptive_per_cycle: 3,
            max_disrupted_share: 0.34,
            stale_after_s: 60,
        }
    }
}

/// Most points of history the leader keeps per persona (`history_window_s /
/// history_resolution_s`).
pub const MAX_HISTORY_POINTS: u64 = 20_000;

pub const ENV_LLM_BASE_URL: &str = "MINDMESH_LLM_BASE_URL";
pub const ENV_LLM_MODEL: &str = "MINDMESH_LLM_MODEL";
pub const ENV_LLM_API_KEY: &str = "MINDMESH_LLM_API_KEY";
pub const ENV_LLM_TIMEOUT_MS: &str = "MINDMESH_LLM_TIMEOUT_MS";

impl BrainConfig {
    /// Apply the `MINDMESH_LLM_*` overrides found by `lookup` (e.g. `|k| std::env::var(k).ok()`),
    /// then validate. Empty values are ignored.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<()> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get(ENV_LLM_BASE_URL) {
            self.llm.base_url = v.trim().to_owned();
        }
        if let Some(v) = get(ENV_LLM_MODEL) {
            self.llm.model = v.trim().to_owned();
        }
        if let Some(v) = get(ENV_LLM_API_KEY) {
            self.llm.api_key = Some(v.trim().to_owned());
        }
        if let Some(v) = get(ENV_LLM_TIMEOUT_MS) {
            self.llm.timeout_ms = v.trim().parse().map_err(|_| {
                CoreError::invalid(ENV_LLM_TIMEOUT_MS, format!("{v:?} is not a number of milliseconds"))
            })?;
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<()> {
        at_least("cycle_s", self.cycle_s, 1)?;
        if self.cycle_s > 3600 {
            return Err(CoreError::invalid("cycle_s", "must be at most 3600"));
        }
        crate::bounds::within("history_resolution_s", self.history_resolution_s, 1, 3600)?;
        crate::bounds::at_most("history_window_s", self.history_window_s, crate::bounds::MAX_WINDOW_S)?;
        // the leader keeps this many points of every persona in memory
        if self.history_window_s / self.history_resolution_s > MAX_HISTORY_POINTS {
            return Err(CoreError::invalid(
                "history_window_s",
                format!("at most {MAX_HISTORY_POINTS} points of history_resolution_s"),
            ));
        }
        if !self.time_speed.is_finite() || !(1.0..=3600.0).contains(&self.time_speed) {
            return Err(CoreError::invalid("time_speed", "must be within 1..=3600"));
        }
        if self.history_window_s < self.history_resolution_s * 10 {
            return Err(CoreError::invalid("history_window_s", "must hold at least 10 points of history_resolution_s"));
        }
        self.llm.validate().map_err(|e| e.within("llm"))?;
        self.guardrails.validate().map_err(|e| e.within("guardrails"))
    }
}

impl LlmConfig {
    pub fn validate(&self) -> Result<()> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CoreError::invalid("base_url", format!("{url:?} must start with http:// or https://")));
        }
        if self.model.trim().is_empty() {
            return Err(CoreError::invalid("model", "must not be empty"));
        }
        crate::bounds::within("timeout_ms", self.timeout_ms, 100, crate::bounds::MAX_TIMER_MS)?;
        crate::bounds::within(
            "max_completion_tokens",
            u64::from(self.max_completion_tokens),
            64,
            u64::from(crate::bounds::MAX_TOKENS),
        )?;
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return Err(CoreError::invalid("temperature", "must be within 0..=2"));
        }
        crate::bounds::within("max_prompt_personas", self.max_prompt_personas as u64, 1, crate::bounds::MAX_COUNT)?;
        Ok(())
    }
}

impl GuardrailConfig {
    pub fn validate(&self) -> Result<()> {
        at_least("hysteresis_cycles", u64::from(self.hysteresis_cycles), 1)?;
        if self.hysteresis_cycles > 100 {
            return Err(CoreError::invalid("hysteresis_cycles", "must be at most 100"));
        }
        crate::bounds::at_most("cooldown_s", self.cooldown_s, crate::bounds::MAX_WINDOW_S)?;
        crate::bounds::within(
            "max_disruptive_per_cycle",
            self.max_disruptive_per_cycle as u64,
            1,
            crate::bounds::MAX_COUNT,
        )?;
        let s = self.max_disrupted_share;
        if !s.is_finite() || s <= 0.0 || s > 1.0 {
            return Err(CoreError::invalid("max_disrupted_share", "must be > 0 and <= 1"));
        }
        crate::bounds::within("stale_after_s", self.stale_after_s, 1, crate::bounds::MAX_WINDOW_S)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn defaults_and_section_parse() {
        let cfg = NodeConfig::from_toml_str(
            "[brain]\nanalyst = \"llm\"\ncycle_s = 5\n[brain.llm]\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\n",
        )
        .unwrap();
        assert_eq!(cfg.brain.analyst, AnalystChoice::Llm);
        assert_eq!(cfg.brain.cycle_s, 5);
        assert_eq!(cfg.brain.llm.timeout_ms, 30_000);
        assert_eq!(cfg.brain.guardrails.hysteresis_cycles, 3);
        assert_eq!(NodeConfig::default().brain.cycle_s, 10);
    }

    #[test]
    fn env_overrides_the_file_and_bad_values_name_the_variable() {
        let mut b = BrainConfig::default();
        b.apply_env(|k| match k {
            ENV_LLM_BASE_URL => Some("http://10.0.0.1:11434/v1".into()),
            ENV_LLM_MODEL => Some("llama3".into()),
            ENV_LLM_API_KEY => Some("sk-test".into()),
            ENV_LLM_TIMEOUT_MS => Some("1500".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(b.llm.base_url, "http://10.0.0.1:11434/v1");
        assert_eq!(b.llm.model, "llama3");
        assert_eq!(b.llm.api_key.as_deref(), Some("sk-test"));
        assert_eq!(b.llm.timeout_ms, 1500);
        assert!(!format!("{:?}", b.llm).contains("sk-test"));
        let e = BrainConfig::default().apply_env(|k| (k == ENV_LLM_TIMEOUT_MS).then(|| "soon".into())).unwrap_err();
        assert_eq!(e.field(), Some(ENV_LLM_TIMEOUT_MS));
    }

    #[test]
    fn errors_name_the_field() {
        let e = NodeConfig::from_toml_str("[brain.llm]\nbase_url = \"ftp://x\"").unwrap_err();
        assert_eq!(e.field(), Some("brain.llm.base_url"));
        let e = NodeConfig::from_toml_str("[brain.guardrails]\nmax_disrupted_share = 1.5").unwrap_err();
        assert_eq!(e.field(), Some("brain.guardrails.max_disrupted_share"));
        let e = NodeConfig::from_toml_str("[brain]\ncycle_s = 0").unwrap_err();
        assert_eq!(e.field(), Some("brain.cycle_s"));
    }
}
