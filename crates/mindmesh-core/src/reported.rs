//! Persona-reported metrics: what a persona says of itself at `GET <metrics_path>` (the
//! contract's is `/mindmesh/metrics`), e.g.
//!
//! ```json
//! {"cache_hit_rate": 0.8, "kv_cache_usage": 0.3, "adapters": ["a", "b"], "counters": {"tokens_cached": 123}}
//! ```
//!
//! Every field is optional and unknown ones are ignored (a server may say more than this
//! contract reads). The persona is an outsider: its answer is parsed here, sans I/O, and
//! refused whole — never half-trusted — when it is not JSON, too large, out of range (a rate
//! outside 0..=1), or holds more or longer names than the bounds below. The node reads the
//! body with a size cap and a timeout (`ProcessHost::fetch_metrics`), then calls [`parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Largest answer read: more is refused unread.
pub const MAX_METRICS_BODY_BYTES: usize = 16 * 1024;
/// Most adapters one report may list.
pub const MAX_REPORTED_ADAPTERS: usize = 32;
/// Most free-form counters one report may hold.
pub const MAX_REPORTED_COUNTERS: usize = 32;
/// Longest adapter or counter name.
pub const MAX_REPORTED_NAME_BYTES: usize = 64;

/// What a persona reported of itself, checked. Stored with its samples (bounded: at most
/// ~4.5 KB encoded, see the limits above).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedMetrics {
    /// Share of prompt tokens served from its cache, 0..=1.
    pub cache_hit_rate: Option<f32>,
    /// Share of its KV cache in use, 0..=1 (near 1: requests start to queue or be evicted).
    pub kv_cache_usage: Option<f32>,
    /// The adapters (LoRA) it has loaded now.
    pub adapters: Vec<String>,
    /// Free-form counters, by name.
    pub counters: BTreeMap<String, u64>,
}

/// The JSON as it arrives, before any check.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    cache_hit_rate: Option<f64>,
    #[serde(default)]
    kv_cache_usage: Option<f64>,
    #[serde(default)]
    adapters: Vec<String>,
    #[serde(default)]
    counters: BTreeMap<String, u64>,
}

/// Parse and check a persona's answer; any problem refuses the whole report, naming the field.
pub fn parse(body: &[u8]) -> Result<ReportedMetrics> {
    if body.len() > MAX_METRICS_BODY_BYTES {
        return Err(CoreError::invalid("", format!("{} bytes, more than {MAX_METRICS_BODY_BYTES}", body.len())));
    }
    let b: Body =
        serde_json::from_slice(body).map_err(|e| CoreError::invalid("", format!("not a metrics object: {e}")))?;
    let r = ReportedMetrics {
        cache_hit_rate: share("cache_hit_rate", b.cache_hit_rate)?,
        kv_cache_usage: share("kv_cache_usage", b.kv_cache_usage)?,
        adapters: b.adapters,
        counters: b.counters,
    };
    r.validate()?;
    Ok(r)
}

/// A share within 0..=1, finite.
fn share(field: &str, v: Option<f64>) -> Result<Option<f32>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(Some(x as f32)),
        Some(x) => Err(CoreError::invalid(field, format!("{x} is not a share within 0..=1"))),
    }
}

/// A name a persona reports: short, printable, no spaces (it becomes a label on a screen).
fn name(field: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_REPORTED_NAME_BYTES {
        return Err(CoreError::invalid(field, format!("names are 1..={MAX_REPORTED_NAME_BYTES} bytes")));
    }
    if !s.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(CoreError::invalid(field, "names are printable ASCII without spaces"));
    }
    Ok(())
}

impl ReportedMetrics {
    /// The bounds [`parse`] enforces; stored and gossiped copies are held to them too.
    pub fn validate(&self) -> Result<()> {
        share("cache_hit_rate", self.cache_hit_rate.map(f64::from))?;
        share("kv_cache_usage", self.kv_cache_usage.map(f64::from))?;
        if self.adapters.len() > MAX_REPORTED_ADAPTERS {
            return Err(CoreError::invalid("adapters", format!("at most {MAX_REPORTED_ADAPTERS}")));
        }
        for a in &self.adapters {
            name("adapters", a)?;
        }
        if self.counters.len() > MAX_REPORTED_COUNTERS {
            return Err(CoreError::invalid("counters", format!("at most {MAX_REPORTED_COUNTERS}")));
        }
        for k in self.counters.keys() {
            name("counters", k)?;
        }
        Ok(())
    }

    /// Merge the reports of consecutive samples: shares averaged over the samples that have
    /// them, adapters and counters (cumulative) from the last report.
    pub fn rollup<'a>(reports: impl Iterator<Item = Option<&'a ReportedMetrics>> + Clone) -> Option<ReportedMetrics> {
        let last = reports.clone().flatten().last()?;
        let mean = |f: &dyn Fn(&ReportedMetrics) -> Option<f32>| {
            let v: Vec<f32> = reports.clone().flatten().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
        };
        Some(ReportedMetrics {
            cache_hit_rate: mean(&|r| r.cache_hit_rate),
            kv_cache_usage: mean(&|r| r.kv_cache_usage),
            adapters: last.adapters.clone(),
            counters: last.counters.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_report_parses_and_unknown_fields_are_ignored() {
        let r = parse(
            br#"{"cache_hit_rate": 0.8, "kv_cache_usage": 0.3, "adapters": ["a", "b"],
                 "counters": {"tokens_cached": 123}, "vendor_extra": {"x": [1, 2]}}"#,
        )
        .unwrap();
        assert_eq!(r.cache_hit_rate, Some(0.8));
        assert_eq!(r.kv_cache_usage, Some(0.3));
        assert_eq!(r.adapters, ["a", "b"]);
        assert_eq!(r.counters.get("tokens_cached"), Some(&123));
        assert_eq!(parse(b"{}").unwrap(), ReportedMetrics::default());
    }

    #[test]
    fn garbage_out_of_range_and_oversize_are_refused_naming_the_field() {
        let field = |b: &[u8]| parse(b).unwrap_err().field().unwrap_or_default().to_owned();
        for garbage in [&b"not json"[..], b"[1,2]", b"", b"{\"cache_hit_rate\": \"high\"}", b"\xff\xfe"] {
            assert!(parse(garbage).is_err(), "{garbage:?}");
        }
        assert_eq!(field(br#"{"cache_hit_rate": 1.5}"#), "cache_hit_rate");
        assert_eq!(field(br#"{"kv_cache_usage": -0.1}"#), "kv_cache_usage");
        // counters are whole and non-negative
        assert!(parse(br#"{"counters": {"a": -1}}"#).is_err());
        assert!(parse(br#"{"counters": {"a": 1.5}}"#).is_err());
        let many: Vec<String> = (0..=MAX_REPORTED_COUNTERS).map(|i| format!("\"c{i}\": {i}")).collect();
        assert_eq!(field(format!("{{\"counters\": {{{}}}}}", many.join(",")).as_bytes()), "counters");
        let long = "x".repeat(MAX_REPORTED_NAME_BYTES + 1);
        assert_eq!(field(format!("{{\"adapters\": [\"{long}\"]}}").as_bytes()), "adapters");
        assert_eq!(field(br#"{"adapters": ["two words"]}"#), "adapters");
        assert_eq!(field(br#"{"adapters": [""]}"#), "adapters");
        let adapters: Vec<String> = (0..=MAX_REPORTED_ADAPTERS).map(|i| format!("\"a{i}\"")).collect();
        assert_eq!(field(format!("{{\"adapters\": [{}]}}", adapters.join(",")).as_bytes()), "adapters");
        let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_METRICS_BODY_BYTES));
        assert!(parse(huge.as_bytes()).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn the_largest_report_stays_small_encoded() {
        let r = ReportedMetrics {
            cache_hit_rate: Some(1.0),
            kv_cache_usage: Some(1.0),
            adapters: (0..MAX_REPORTED_ADAPTERS).map(|i| format!("{i:0>64}")).collect(),
            counters: (0..MAX_REPORTED_COUNTERS).map(|i| (format!("{i:0>64}"), u64::MAX)).collect(),
        };
        r.validate().unwrap();
        assert!(crate::wire::encode(1, &r).unwrap().len() < 5 * 1024);
    }

    #[test]
    fn rollup_averages_shares_and_keeps_the_last_counters() {
        let a = ReportedMetrics { cache_hit_rate: Some(0.2), counters: [("n".into(), 1)].into(), ..Default::default() };
        let b = ReportedMetrics {
            cache_hit_rate: Some(0.6),
            kv_cache_usage: Some(0.5),
            counters: [("n".into(), 5)].into(),
            ..Default::default()
        };
        let r = ReportedMetrics::rollup([Some(&a), None, Some(&b)].into_iter()).unwrap();
        assert!((r.cache_hit_rate.unwrap() - 0.4).abs() < 1e-6);
        assert_eq!((r.kv_cache_usage, r.counters.get("n")), (Some(0.5), Some(&5)));
        assert!(ReportedMetrics::rollup([None, None].into_iter()).is_none());
    }
}
